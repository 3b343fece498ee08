"""Small readable builders for patient timelines.

    records = (
        Timeline("A001")
        .injury("spinal_cord_injury", "2023-01-10")
        .radiograph("2025-05-20", "hip", "right", cortex="well_defined")
        .delayed_scan("2024-03-01", 6.1)
        .alp("2025-05-30", 95)
        .records()
    )

Dates are ISO strings; the default site is the right hip.

`assess_both_paths` assesses records the way every example test should: through
`assess_patient` and through the cohort run, which must agree to the word
(model-spec section 8), so a boundary timeline checks both paths at once.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from tracker.protocol import Protocol
from tracker.staging.assess import PatientAssessment, assess_patient, to_json
from tracker.staging.cohort import assess_cohort, cohort_as_json_sites, cohort_frames
from tracker.staging.records import (
    BoneScan,
    Course,
    Finding,
    Injury,
    Lab,
    PatientRecords,
    Procedure,
)


def day(text: str | date) -> date:
    return text if isinstance(text, date) else date.fromisoformat(text)


class Timeline:
    def __init__(self, mrn: str = "A001") -> None:
        self.mrn = mrn
        self.injuries: list[Injury] = []
        self.findings: list[Finding] = []
        self.bone_scans: list[BoneScan] = []
        self.courses: list[Course] = []
        self.procedures: list[Procedure] = []
        self.labs: list[Lab] = []

    def injury(self, kind: str, on: str) -> Timeline:
        self.injuries.append(Injury(kind, day(on)))
        return self

    def finding(
        self,
        on: str,
        modality: str,
        site: str = "hip",
        side: str = "right",
        ho: str = "present",
        **fields: Any,
    ) -> Timeline:
        self.findings.append(Finding(day(on), modality, site, side, ho, **fields))
        return self

    def radiograph(
        self, on: str, site: str = "hip", side: str = "right", **fields: Any
    ) -> Timeline:
        return self.finding(on, "radiograph", site, side, **fields)

    def ct(self, on: str, site: str = "hip", side: str = "right", **fields: Any) -> Timeline:
        return self.finding(on, "ct", site, side, **fields)

    def ultrasound(
        self, on: str, site: str = "hip", side: str = "right", **fields: Any
    ) -> Timeline:
        return self.finding(on, "ultrasound", site, side, **fields)

    def scan(
        self, on: str, phase: str, ratio: float | None, site: str = "hip", side: str = "right"
    ) -> Timeline:
        self.bone_scans.append(BoneScan(day(on), site, side, phase, ratio))
        return self

    def delayed_scan(
        self, on: str, ratio: float, site: str = "hip", side: str = "right"
    ) -> Timeline:
        return self.scan(on, "delayed", ratio, site, side)

    def delayed_scans(
        self, *points: tuple[str, float], site: str = "hip", side: str = "right"
    ) -> Timeline:
        for on, ratio in points:
            self.delayed_scan(on, ratio, site, side)
        return self

    def course(
        self,
        start: str,
        end: str | None = None,
        *,
        agent: str = "etidronate",
        intent: str = "treatment",
        planned_weeks: int | None = None,
    ) -> Timeline:
        ended = None if end is None else day(end)
        self.courses.append(Course(agent, intent, day(start), ended, planned_weeks))
        return self

    def resection(self, on: str, site: str = "hip", side: str = "right") -> Timeline:
        self.procedures.append(Procedure("resection", day(on), site, side))
        return self

    def alp(
        self,
        on: str,
        value: float,
        ref_high: float | None = 130.0,
        analyte: str = "alp",
        unit: str | None = "U/L",
    ) -> Timeline:
        self.labs.append(Lab(day(on), analyte, value, ref_high, unit))
        return self

    def records(self) -> PatientRecords:
        return PatientRecords(
            mrn=self.mrn,
            injuries=tuple(self.injuries),
            findings=tuple(self.findings),
            bone_scans=tuple(self.bone_scans),
            courses=tuple(self.courses),
            procedures=tuple(self.procedures),
            labs=tuple(self.labs),
        )


def mature_hip(mrn: str = "A001") -> Timeline:
    """A right hip that meets every criterion on 2025-06-15: the spec's example."""
    return (
        Timeline(mrn)
        .injury("spinal_cord_injury", "2023-01-10")
        .radiograph("2023-03-01", calcification="peripheral", brooker=2)
        .radiograph("2025-05-20", cortex="well_defined", trabeculae="yes", brooker=3)
        .delayed_scans(("2024-03-01", 6.10), ("2024-09-01", 3.40), ("2025-05-01", 2.55))
        .alp("2025-05-30", 95)
    )


AS_OF = day("2025-06-15")


DEFAULT_PROTOCOL = Protocol()


def decoy() -> PatientRecords:
    """Another patient in the same cohort run, so that the cohort path must keep
    patients apart (their labs, injuries, first HO and sites)."""
    return (
        Timeline("A000")
        .injury("fop", "2020-01-01")
        .radiograph("2021-01-01", "knee", "left", cortex="well_defined", brooker=4)
        .delayed_scans(("2021-01-01", 9.0), ("2021-03-01", 8.0), ("2025-06-01", 1.1))
        .alp("2025-06-01", 900, ref_high=None)
        .resection("2021-06-01", "knee", "left")
        .records()
    )


def assess_both_paths(
    records: PatientRecords, as_of: date, protocol: Protocol = DEFAULT_PROTOCOL
) -> PatientAssessment:
    """`assess_patient`'s answer, after checking that the cohort run (`assess_cohort`,
    read back by `cohort_as_json_sites`) gives every site exactly the same, evidence
    texts and provenance included, with another patient in the same run."""
    alone = assess_patient(records, as_of, protocol)
    expected = to_json(alone)
    patients = [decoy(), records] if records.mrn != "A000" else [records]
    frame = assess_cohort(cohort_frames(patients), as_of, protocol)
    cohort = cohort_as_json_sites(frame)
    assert cohort.get(records.mrn, []) == expected["sites"], "the cohort run disagrees"
    decoyed = to_json(assess_patient(patients[0], as_of, protocol))["sites"]
    assert cohort.get(patients[0].mrn, []) == decoyed
    mine = frame[frame["mrn"] == records.mrn]
    provenance = {"as_of", "model_version", "protocol_fingerprint"}
    for row in mine[sorted(provenance)].to_dict("records"):
        assert row == {key: expected[key] for key in provenance}
    return alone


def site_of(assessment: Any, site: str = "hip", side: str = "right") -> Any:
    """The SiteAssessment for (site, side); fails loudly if the site is missing."""
    matches = [s for s in assessment.sites if s.site == site and s.side == side]
    assert len(matches) == 1, f"expected one {side} {site}, got {assessment.sites}"
    return matches[0]


def criterion(site_assessment: Any, name: str) -> Any:
    return next(c for c in site_assessment.criteria if c.name == name)
