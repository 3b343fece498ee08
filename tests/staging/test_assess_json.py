"""The `assess --json` structure (model-spec section 8) from a whole timeline."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from datetime import date
from typing import Any

from builders import AS_OF, Timeline, assess_both_paths, mature_hip

from tracker.protocol import Protocol
from tracker.staging import PatientRecords, to_json
from tracker.staging.assess import MODEL_VERSION
from tracker.staging.records import BoneScan, Course, Finding, Injury, Lab, Procedure

assess_patient = assess_both_paths  # every timeline here: both paths, one answer
FINGERPRINT = Protocol().fingerprint


def test_the_spec_example_patient_prints_exactly_the_spec_structure() -> None:
    timeline = mature_hip().delayed_scan("2025-05-01", 2.45)  # same day: averaged to 2.50
    output = to_json(assess_patient(timeline.records(), AS_OF))
    assert output == {
        "mrn": "A001",
        "as_of": "2025-06-15",
        "model_version": 2,
        "protocol_fingerprint": FINGERPRINT,
        "sites": [
            {
                "site": "hip",
                "side": "right",
                "stage": "mature",
                "brooker": 3,
                "della_valle": None,
                "activity": "declining",
                "latest_ratio": 2.5,
                "readiness": "ready",
                "criteria": [
                    {
                        "name": "radiographic_maturity",
                        "status": "met",
                        "level": "required",
                        "evidence": "radiograph 2025-05-20: well-defined cortex",
                    },
                    {
                        "name": "scan_stabilised",
                        "status": "met",
                        "level": "required",
                        "evidence": "delayed-phase ratio 6.10 (2024-03-01) -> 2.50 (2025-05-01); "
                        "at or below Kim threshold 3.0",
                    },
                    {
                        "name": "alp_normal",
                        "status": "met",
                        "level": "required_if_known",
                        "evidence": "alp 95 U/L on 2025-05-30 "
                        "(at or below its reference upper limit 130)",
                    },
                    {
                        "name": "time_since_injury",
                        "status": "met",
                        "level": "advisory",
                        "evidence": "spinal_cord_injury 2023-01-10: 29 months since injury, "
                        "12 advised",
                    },
                    {
                        "name": "not_genetic_ho",
                        "status": "met",
                        "level": "required",
                        "evidence": "no fop recorded",
                    },
                ],
                "flags": ["grade_increase"],
                "forecast": None,
            }
        ],
    }
    assert list(output) == ["mrn", "as_of", "model_version", "protocol_fingerprint", "sites"]
    assert list(output["sites"][0]) == [
        "site", "side", "stage", "brooker", "della_valle", "activity", "latest_ratio",
        "readiness", "criteria", "flags", "forecast",
    ]  # fmt: skip
    assert list(output["sites"][0]["criteria"][0]) == ["name", "status", "level", "evidence"]


def test_output_is_plain_json_with_plain_strings() -> None:
    output = to_json(assess_patient(busy_patient(), AS_OF))
    assert json.loads(json.dumps(output)) == output
    for site in output["sites"]:
        assert type(site["stage"]) is str and type(site["readiness"]) is str
        assert all(type(c["status"]) is str and type(c["level"]) is str for c in site["criteria"])


def test_forecast_prints_as_iso_dates() -> None:
    timeline = Timeline().radiograph("2024-01-10", calcification="zonal")
    timeline.delayed_scans(
        ("2024-01-01", 6.5), ("2024-03-01", 5.2), ("2024-05-01", 4.2), ("2024-07-01", 3.5)
    )
    site = to_json(assess_patient(timeline.records(), date(2024, 7, 15)))["sites"][0]
    assert list(site["forecast"]) == ["date", "low", "high", "passed"]
    assert all(date.fromisoformat(site["forecast"][key]) for key in ("date", "low", "high"))
    assert site["forecast"]["passed"] is False


def test_provenance_names_the_model_and_the_protocol_that_made_the_call() -> None:
    records = mature_hip().records()
    default = to_json(assess_patient(records, AS_OF))
    assert (default["model_version"], MODEL_VERSION) == (2, 2)
    assert default["protocol_fingerprint"] == Protocol().fingerprint
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", default["protocol_fingerprint"])
    clinic = Protocol(readiness=replace(Protocol().readiness, alp_window_days=60))
    other = to_json(assess_patient(records, AS_OF, clinic))
    assert other["protocol_fingerprint"] == clinic.fingerprint != default["protocol_fingerprint"]
    assert other["sites"] == default["sites"]  # same answers, yet told apart


def test_sites_are_sorted_by_site_then_side() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01", "knee", "right")
        .radiograph("2024-01-01", "hip", "right")
        .delayed_scan("2024-01-01", 2.0, "hip", "left")
        .ultrasound("2024-01-01", "elbow", "right", ho="absent")
        .radiograph("2024-01-01", "jaw", "midline")
    )
    sites = to_json(assess_patient(timeline.records(), AS_OF))["sites"]
    assert [(s["site"], s["side"]) for s in sites] == [
        ("elbow", "right"),
        ("hip", "left"),
        ("hip", "right"),
        ("jaw", "midline"),
        ("knee", "right"),
    ]


def test_patient_without_imaging_has_no_sites() -> None:
    records = Timeline().injury("spinal_cord_injury", "2025-01-01").alp("2025-02-01", 200).records()
    assert to_json(assess_patient(records, AS_OF)) == {
        "mrn": "A001",
        "as_of": "2025-06-15",
        "model_version": 2,
        "protocol_fingerprint": FINGERPRINT,
        "sites": [],
    }


def busy_patient() -> PatientRecords:
    return (
        mature_hip()
        .injury("traumatic_brain_injury", "2022-11-01")
        .ultrasound("2023-04-01", "knee", "left")
        .radiograph("2023-06-01", "knee", "left", calcification="zonal", della_valle="a")
        .radiograph("2024-02-01", "knee", "left", della_valle="b")
        .course("2023-06-10", "2023-09-10")
        .delayed_scans(
            ("2024-01-01", 4.6), ("2024-06-01", 3.9), ("2025-01-01", 3.1), site="knee", side="left"
        )
        .delayed_scan("2025-01-01", 3.2, "knee", "left")
        .radiograph("2023-05-01", "elbow", "right", cortex="well_defined")
        .resection("2024-01-01", "elbow", "right")
        .ultrasound("2024-06-01", "elbow", "right")
        .alp("2025-06-01", 100, analyte="bone_alp", ref_high=20)
        .records()
    )


def shuffled(records: PatientRecords, seed: int) -> PatientRecords:
    rng = random.Random(seed)

    def mix(items: tuple[Any, ...]) -> tuple[Any, ...]:
        mixed = list(items)
        rng.shuffle(mixed)
        return tuple(mixed)

    return replace(
        records,
        injuries=mix(records.injuries),
        findings=mix(records.findings),
        bone_scans=mix(records.bone_scans),
        courses=mix(records.courses),
        procedures=mix(records.procedures),
        labs=mix(records.labs),
    )


def test_rows_in_any_order_give_identical_output() -> None:
    expected = to_json(assess_patient(busy_patient(), AS_OF))
    for seed in range(5):
        assert to_json(assess_patient(shuffled(busy_patient(), seed), AS_OF)) == expected


def test_records_dated_after_as_of_change_nothing_anywhere() -> None:
    expected = to_json(assess_patient(busy_patient(), AS_OF))
    later = date(2025, 6, 16)
    records = busy_patient()
    records = replace(
        records,
        injuries=(*records.injuries, Injury("fop", later)),
        findings=(*records.findings, Finding(later, "ct", "hip", "right", "present", brooker=4)),
        bone_scans=(*records.bone_scans, BoneScan(later, "knee", "left", "delayed", 9.0)),
        courses=(*records.courses, Course("radiotherapy", "treatment", later)),
        procedures=(*records.procedures, Procedure("resection", later, "hip", "right")),
        labs=(*records.labs, Lab(later, "alp", 900.0, 130.0, "U/L")),
    )
    assert to_json(assess_patient(records, AS_OF)) == expected


def test_busy_patient_walkthrough() -> None:
    sites = {(s.site, s.side): s for s in assess_patient(busy_patient(), AS_OF).sites}
    elbow, hip, knee = sites["elbow", "right"], sites["hip", "right"], sites["knee", "left"]
    # elbow: resected 2024-01-01; only a fresh early ultrasound counts, a regrowth
    assert (elbow.stage, elbow.readiness, elbow.flags) == ("early", "not_ready", ("recurrence",))
    # hip: ready by scans and film, but an elevated bone ALP today blocks it
    assert (hip.stage, hip.readiness) == ("mature", "not_ready")
    assert next(c for c in hip.criteria if c.name == "alp_normal").evidence == (
        "bone_alp 100 U/L on 2025-06-01 (above its reference upper limit 20)"
    )
    # knee: a new site after the TBI, upgraded to Della Valle b months after the course
    assert knee.stage == "mineralising"
    assert knee.flags == ("grade_increase", "new_site", "progression_after_treatment")
    assert knee.latest_ratio == (3.1 + 3.2) / 2  # same-day values averaged
    assert to_json(assess_patient(busy_patient(), AS_OF))["sites"][2]["latest_ratio"] == 3.15
    # r1 = 4.6 asks for 2.0; 3.15 is still above it and falling, but three ratios
    # from the peak are too few for a forecast (four are needed)
    assert knee.activity == "declining"
    assert knee.forecast is None
