"""The cohort's records as columns, cut at as_of: the input of the cohort run.

`CohortFrames` is what the store's `read_cohort` returns (and `cohort_frames` builds
from records in memory). `CohortRecords` turns the frames into numpy columns with
patients numbered in mrn order and sites numbered in (mrn, site, side) order, so the
cohort's output is sorted by construction, and sorts findings and bone scans by site
and day once, so that per-site questions become reductions over runs of rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from tracker.staging import cohort_columns as col
from tracker.staging.cohort_columns import Bools, Coded, Floats, Ints, Texts
from tracker.staging.records import (
    BoneScan,
    Course,
    Finding,
    Injury,
    Lab,
    PatientRecords,
    Procedure,
    RangeOfMotion,
)
from tracker.vocab import CORTEX_MODALITIES, Phase, ProcedureKind


@dataclass(frozen=True)
class CohortFrames:
    """Every row assessment needs, one frame per kind, keyed by `mrn`.

    Date columns are datetime64; missing values are NaN/None. The store's
    `read_cohort` reads them; `cohort_frames` builds them from records.
    """

    patients: pd.DataFrame  # mrn
    injuries: pd.DataFrame  # mrn, kind, date
    findings: pd.DataFrame  # mrn, date, modality, site, side, ho, soft_tissue, ..., size_mm
    bone_scans: pd.DataFrame  # mrn, date, site, side, phase, ratio
    courses: pd.DataFrame  # mrn, agent, intent, start_date, end_date, planned_weeks
    procedures: pd.DataFrame  # mrn, kind, date, site, side
    labs: pd.DataFrame  # mrn, date, analyte, value, ref_high, unit
    # mrn, date, site, side, movement, degrees (model-spec v2, section 10); none when
    # the reader leaves it out
    range_of_motion: pd.DataFrame = field(default_factory=lambda: _empty(RangeOfMotion))


def _empty(record: Any) -> pd.DataFrame:
    frame = pd.DataFrame(columns=["mrn", *(f.name for f in fields(record))])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


_RECORDS: dict[str, Any] = {
    "injuries": Injury,
    "findings": Finding,
    "bone_scans": BoneScan,
    "courses": Course,
    "procedures": Procedure,
    "labs": Lab,
    "range_of_motion": RangeOfMotion,
}


def cohort_frames(patients: Iterable[PatientRecords]) -> CohortFrames:
    """The frames `read_cohort` gives, built from records in memory (tests, tools)."""
    patients = list(patients)
    frames: dict[str, pd.DataFrame] = {}
    for kind, record in _RECORDS.items():
        rows = [{"mrn": p.mrn, **asdict(r)} for p in patients for r in getattr(p, kind)]
        frame = pd.DataFrame(rows, columns=["mrn", *(f.name for f in fields(record))])
        for column in ("date", "start_date", "end_date"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column])
        if "brooker" in frame:
            frame["brooker"] = pd.array(frame["brooker"].tolist(), dtype="Int64")
        frames[kind] = frame
    return CohortFrames(patients=pd.DataFrame({"mrn": [p.mrn for p in patients]}), **frames)


class CohortRecords:
    """The records dated on or before as_of (`today`, a day number) as columns.

    Only patients with a site (a finding or bone-scan measurement) take part;
    `findings` and `scans` are a site's evidence (after its latest resection),
    `all_findings` and `all_scans` everything recorded by as_of.
    """

    def __init__(self, frames: CohortFrames, today: int) -> None:
        self.today = today

        def cut(frame: pd.DataFrame, column: str = "date") -> pd.DataFrame:
            kept = col.days(frame[column]) <= today
            return frame if kept.all() else frame[kept]

        findings, scans = cut(frames.findings), cut(frames.bone_scans)
        procedures = cut(frames.procedures)
        resection = procedures["kind"].eq(ProcedureKind.resection.value).to_numpy(bool)
        procedures = procedures[resection]
        injuries, courses, labs = (
            cut(frames.injuries),
            cut(frames.courses, "start_date"),
            cut(frames.labs),
        )
        motion = cut(frames.range_of_motion)
        placed = (findings, scans, procedures, motion)
        patient, self.mrns = col.ranked(
            [f["mrn"] for f in (*placed[:3], injuries, courses, labs, motion)], defining=2
        )
        site, site_names = col.ranked([f["site"] for f in placed], defining=2)
        side, side_names = col.ranked([f["side"] for f in placed], defining=2)
        sites, sides = len(site_names), len(side_names)
        keys = [
            np.where((p < 0) | (s < 0) | (d < 0), -1, (p * sites + s) * sides + d)
            for p, s, d in zip([*patient[:3], patient[6]], site, side, strict=True)
        ]
        site_keys, site_ids = col.dense_ranks(np.concatenate(keys[:2]))
        self.size = len(site_keys)
        self.patient: Ints = site_keys // (sites * sides)
        self.site: Texts = site_names[site_keys // sides % sites]
        self.side: Texts = side_names[site_keys % sides]

        found = np.clip(np.searchsorted(site_keys, keys[2]), 0, max(self.size - 1, 0))
        known = (keys[2] >= 0) & (site_keys[found] == keys[2]) if self.size else keys[2] < -1
        # A resection starts its site afresh (model-spec section 3).
        self.resected: Ints = col.reduce_at(
            np.maximum, self.size, found[known], col.days(procedures["date"])[known], col.NO_DAY
        )

        split = len(findings)
        self.all_findings = Findings(findings, site_ids[:split], patient[0])
        self.all_scans = Scans(scans, site_ids[split:], patient[1])
        self.findings = self.all_findings.subset(self.all_findings.after(self.resected))
        self.scans = self.all_scans.subset(self.all_scans.after(self.resected))

        # injuries, courses and labs of patients without a site play no part
        self.injuries, self.injury_patient = _of_patients(injuries, patient[3])
        self.courses, self.course_patient = _of_patients(courses, patient[4])
        self.labs, self.lab_patient = _of_patients(labs, patient[5])

        # range of motion at a site that exists (it never makes one), after the site's
        # latest resection (model-spec v2, sections 6 and 10)
        at = np.clip(np.searchsorted(site_keys, keys[3]), 0, max(self.size - 1, 0))
        placed_rom = (keys[3] >= 0) & (site_keys[at] == keys[3]) if self.size else keys[3] < -1
        self.motion = Motion(motion[placed_rom], at[placed_rom])
        self.motion = self.motion.subset(self.motion.after(self.resected))

    @property
    def patients(self) -> int:
        return len(self.mrns)


def _of_patients(frame: pd.DataFrame, patient: Ints) -> tuple[pd.DataFrame, Ints]:
    kept = patient >= 0
    return (frame if kept.all() else frame[kept]), patient[kept]


class _Columns:
    """Rows as columns, sorted by site and day; `subset` keeps the order."""

    site: Ints
    day: Ints

    def after(self, resected: Ints) -> Bools:
        """The rows dated after their site's latest resection (model-spec section 3)."""
        kept: Bools = self.day > resected[self.site]
        return kept

    def subset(self, rows: Bools) -> Any:
        copy = object.__new__(type(self))
        for name, value in vars(self).items():
            setattr(copy, name, value[rows] if isinstance(value, np.ndarray) else value)
            if isinstance(value, Coded):
                setattr(copy, name, value.take(rows))
        return copy

    def _sort(self, site: Ints, day: Ints) -> Ints:
        """The order of the rows by site, then day (stable)."""
        if len(day) == 0:
            return np.arange(0, dtype=np.int64)
        return np.argsort(site * (int(day.max()) - int(day.min()) + 1) + day, kind="stable")


class Findings(_Columns):
    """Site findings, each with the stage it shows (model-spec section 3)."""

    def __init__(self, frame: pd.DataFrame, site: Ints, patient: Ints) -> None:
        day = col.days(frame["date"])
        order = self._sort(site, day)
        self.site, self.patient, self.day = site[order], patient[order], day[order]

        def coded(name: str) -> Coded:
            return Coded.of(frame[name]).take(order)

        self.modality, self.ho, self.soft_tissue = (
            coded("modality"),
            coded("ho"),
            coded("soft_tissue"),
        )
        self.calcification, self.cortex = coded("calcification"), coded("cortex")
        self.uptake, self.della_valle = coded("uptake"), coded("della_valle")
        self.brooker: Floats = col.numbers(frame["brooker"])[order]
        # the four rules of model-spec section 3, the first that matches
        self.sees_cortex: Bools = self.modality.isin(*CORTEX_MODALITIES)
        mature = self.cortex.isin("well_defined") & self.sees_cortex
        mineralising = (
            ((self.calcification.codes >= 0) & ~self.calcification.isin("none"))
            | (self.brooker >= 1)
            | self.della_valle.isin("b", "c")
            | self.cortex.isin("partial", "well_defined")
        )
        early = self.ho.isin("present", "indeterminate") | self.uptake.isin("increased")
        self.stage: Ints = np.select([mature, mineralising, early], [3, 2, 1], 0)


class Motion(_Columns):
    """Range-of-motion measurements at sites (model-spec v2, section 10)."""

    def __init__(self, frame: pd.DataFrame, site: Ints) -> None:
        day = col.days(frame["date"])
        order = self._sort(site, day)
        self.site, self.day = site[order], day[order]
        self.movement: Coded = Coded.of(frame["movement"]).take(order)
        self.degrees: Floats = col.numbers(frame["degrees"])[order]


class Scans(_Columns):
    """Bone-scan measurements; each shows stage early at its site."""

    def __init__(self, frame: pd.DataFrame, site: Ints, patient: Ints) -> None:
        day = col.days(frame["date"])
        order = self._sort(site, day)
        self.site, self.patient, self.day = site[order], patient[order], day[order]
        delayed = frame["phase"].eq(Phase.delayed.value).to_numpy(bool, na_value=False)
        self.delayed: Bools = delayed[order]
        self.ratio: Floats = col.numbers(frame["ratio"])[order]
