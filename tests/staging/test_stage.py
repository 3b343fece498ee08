"""Stage of a site (model-spec section 3): each finding's rule, then the site's.

Timelines go through both the one-patient path and the cohort run
(`assess_both_paths`), which must agree at every boundary."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from builders import AS_OF, Timeline, assess_both_paths, site_of

from tracker.errors import ProtocolError
from tracker.protocol import Protocol, StageRules, parse_protocol
from tracker.staging import BoneScan, Finding
from tracker.staging.stage import Stage, finding_stage, scan_stage

assess_patient = assess_both_paths  # every timeline here: both paths, one answer

ON = date(2025, 1, 1)


def finding(modality: str = "radiograph", ho: str = "present", **fields: Any) -> Finding:
    return Finding(ON, modality, "hip", "right", ho, **fields)


@pytest.mark.parametrize("modality", ["radiograph", "ct", "mri"])
def test_well_defined_cortex_on_cross_sectional_or_plain_film_is_mature(modality: str) -> None:
    assert finding_stage(finding(modality, cortex="well_defined")) == Stage.mature


@pytest.mark.parametrize("modality", ["ultrasound", "spect", "bone_scan", "pet"])
def test_well_defined_cortex_on_a_modality_that_cannot_judge_cortex_is_only_mineralising(
    modality: str,
) -> None:
    assert finding_stage(finding(modality, cortex="well_defined")) == Stage.mineralising


@pytest.mark.parametrize(
    "fields",
    [
        {"calcification": "present"},
        {"calcification": "peripheral"},
        {"calcification": "zonal"},
        {"calcification": "central"},
        {"calcification": "disorganised"},
        {"brooker": 1},
        {"brooker": 4},
        {"della_valle": "b"},
        {"della_valle": "c"},
        {"cortex": "partial"},
    ],
)
def test_any_sign_of_mineral_makes_a_finding_mineralising(fields: dict[str, Any]) -> None:
    assert finding_stage(finding(**fields)) == Stage.mineralising


def test_mineral_signs_count_even_when_the_reader_called_ho_absent() -> None:
    assert finding_stage(finding(ho="absent", calcification="zonal")) == Stage.mineralising


@pytest.mark.parametrize(
    "fields",
    [{"calcification": "none"}, {"brooker": 0}, {"della_valle": "a"}, {"cortex": "none"}, {}],
)
def test_grades_and_signs_of_no_mineral_leave_present_ho_early(fields: dict[str, Any]) -> None:
    assert finding_stage(finding(**fields)) == Stage.early


def test_indeterminate_ho_counts_as_early() -> None:
    assert finding_stage(finding("ultrasound", ho="indeterminate")) == Stage.early


def test_increased_uptake_counts_as_early_even_with_ho_absent() -> None:
    assert finding_stage(finding("spect", ho="absent", uptake="increased")) == Stage.early


def test_absent_ho_without_signs_is_stage_none() -> None:
    assert finding_stage(finding("ultrasound", ho="absent", vascularity="none")) == Stage.none


def test_a_bone_scan_measurement_above_normal_uptake_alone_makes_the_site_early() -> None:
    records = Timeline().scan("2025-01-10", "flow", 1.4).records()
    assert site_of(assess_patient(records, AS_OF)).stage == "early"


@pytest.mark.parametrize(
    ("phase", "ratio", "expected"),
    [
        ("delayed", 1.2, Stage.none),  # exactly at normal uptake: normal bone
        ("delayed", 1.19, Stage.none),
        ("delayed", 1.05, Stage.none),
        ("delayed", 1.21, Stage.early),
        ("flow", 1.2, Stage.none),
        ("blood_pool", 1.25, Stage.early),
        ("delayed", None, Stage.none),  # nothing measured shows no uptake above normal
    ],
)
def test_a_bone_scan_shows_ho_only_above_normal_uptake(
    phase: str, ratio: float | None, expected: Stage
) -> None:
    scan = BoneScan(date(2025, 1, 10), "hip", "right", phase, ratio)
    assert scan_stage(scan, StageRules()) == expected
    records = Timeline().scan("2025-01-10", phase, ratio).records()
    assert site_of(assess_patient(records, AS_OF)).stage == expected


def test_a_ratio_recorded_as_the_sum_of_floats_at_normal_uptake_is_at_it() -> None:
    # 0.1 * 12 is 1.2000000000000002 in binary floating point: still "at" 1.2
    records = Timeline().delayed_scan("2025-01-10", 0.1 * 12).records()
    assert site_of(assess_patient(records, AS_OF)).stage == "none"


def test_contralateral_normal_ratio_makes_no_site() -> None:
    records = (
        Timeline()
        .injury("spinal_cord_injury", "2024-10-01")
        .ultrasound("2024-12-01")  # HO at the right hip
        .delayed_scan("2025-01-10", 4.2)
        # the unaffected left hip, recorded for comparison weeks later
        .delayed_scan("2025-01-10", 1.05, "hip", "left")
        .radiograph("2025-01-10", "hip", "left", ho="absent")
        .records()
    )
    assessment = assess_patient(records, AS_OF)
    left = site_of(assessment, "hip", "left")
    assert (left.stage, left.readiness, left.flags) == ("none", "not_applicable", ())
    assert left.activity == "single_scan" and left.latest_ratio == 1.05
    assert site_of(assessment).stage == "early"


def test_normal_uptake_comes_from_the_protocol() -> None:
    records = Timeline().delayed_scan("2025-01-10", 1.4).records()
    clinic = Protocol(stage=StageRules(normal_uptake_ratio=1.5))
    assert site_of(assess_patient(records, AS_OF, clinic)).stage == "none"
    assert parse_protocol("[stage]\nnormal_uptake_ratio = 1.5") == clinic


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[stage]\nnormal_uptake_ratio = 0.9", "stage.normal_uptake_ratio must be a number of at"),
        ("[stage]\nnormal_uptake_ratio = '1.2'", "stage.normal_uptake_ratio must be a number"),
        ("[stage]\nnormal_uptake_ratio = nan", "stage.normal_uptake_ratio must be a number"),
        ("[stage]\nnormal_uptake_ratio = 2.0", "stage.normal_uptake_ratio must be below"),
        ("[stage]\nnormal_ratio = 1.2", "unknown key stage.normal_ratio; allowed: normal_uptake"),
    ],
)
def test_normal_uptake_out_of_range_is_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ProtocolError, match="^pasted: ") as refused:
        parse_protocol(text, where="pasted")
    assert message in str(refused.value)


def test_site_stage_is_the_most_advanced_stage_ever_seen_and_never_demoted() -> None:
    records = (
        Timeline()
        .ultrasound("2024-01-10")
        .radiograph("2024-03-01", calcification="zonal")
        .ct("2024-09-01", cortex="well_defined")
        .ultrasound("2025-02-01", ho="absent")  # cannot see the cortex: no demotion
        .records()
    )
    assessment = assess_patient(records, AS_OF)
    assert site_of(assessment).stage == "mature"
    assert assess_patient(records, date(2024, 6, 1)).sites[0].stage == "mineralising"
    assert assess_patient(records, date(2024, 2, 1)).sites[0].stage == "early"


def test_screening_ultrasound_without_ho_lists_the_site_at_stage_none_not_applicable() -> None:
    records = Timeline().ultrasound("2025-01-10", ho="absent").records()
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.stage, hip.readiness) == ("none", "not_applicable")


def test_findings_dated_after_as_of_never_count() -> None:
    records = (
        Timeline()
        .radiograph("2025-01-10", calcification="zonal", brooker=2)
        .radiograph("2025-06-16", cortex="well_defined", brooker=3)
        .records()
    )
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.stage, hip.brooker) == ("mineralising", 2)


def test_a_site_seen_only_after_as_of_does_not_appear() -> None:
    records = Timeline().radiograph("2025-07-01", "knee", "left").records()
    assert assess_patient(records, AS_OF).sites == ()


def test_brooker_and_della_valle_are_the_latest_recorded_grades_even_if_lower() -> None:
    records = (
        Timeline()
        .radiograph("2024-01-10", brooker=3, della_valle="c")
        .radiograph("2024-06-10", brooker=2)
        .ct("2024-09-10", cortex="partial")  # no grades recorded: keeps the latest known
        .records()
    )
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.brooker, hip.della_valle) == (2, "c")


def test_two_readings_on_the_latest_day_report_the_higher_grade() -> None:
    records = (
        Timeline()
        .radiograph("2024-06-10", brooker=2, della_valle="b")
        .ct("2024-06-10", brooker=3, della_valle="c")
        .records()
    )
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.brooker, hip.della_valle) == (3, "c")


def test_a_site_without_grades_reports_null_grades() -> None:
    hip = site_of(assess_patient(Timeline().ultrasound("2025-01-10").records(), AS_OF))
    assert (hip.brooker, hip.della_valle) == (None, None)


def test_resection_starts_the_site_afresh() -> None:
    records = (
        Timeline()
        .radiograph("2023-01-10", cortex="well_defined", brooker=4)
        .delayed_scans(("2023-01-01", 6.0), ("2023-06-01", 2.0))
        .resection("2024-01-15")
        .radiograph("2024-01-15", calcification="none", ho="absent")  # same day: still before
        .ultrasound("2024-03-01")
        .records()
    )
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.stage, hip.brooker, hip.activity, hip.latest_ratio) == ("early", None, "none", None)


def test_resected_site_with_no_new_evidence_still_appears_at_stage_none() -> None:
    records = (
        Timeline()
        .radiograph("2023-01-10", cortex="well_defined", brooker=4)
        .resection("2024-01-15")
        .records()
    )
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.stage, hip.readiness) == ("none", "not_applicable")
    assert "since resection 2024-01-15" in hip.criteria[0].evidence


def test_resection_after_as_of_or_on_the_other_side_changes_nothing() -> None:
    base = Timeline().radiograph("2024-01-10", cortex="well_defined", brooker=3)
    records = base.resection("2025-07-01").resection("2024-05-01", side="left").records()
    hip = site_of(assess_patient(records, AS_OF))
    assert (hip.stage, hip.brooker) == ("mature", 3)
