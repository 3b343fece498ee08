"""Readiness for resection: the five criteria and their verdict (model-spec section 5).

Most tests start from `mature_hip()`, a right hip that meets every criterion on
2025-06-15, change one thing, and check the one criterion and the verdict it moves.
Every timeline goes through both the one-patient path and the cohort run
(`assess_both_paths`), which must agree at every boundary.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from builders import AS_OF, Timeline, assess_both_paths, criterion, day, mature_hip, site_of

from tracker.errors import ProtocolError
from tracker.protocol import (
    CriterionLevels,
    DefaultUpperLimits,
    Level,
    Protocol,
    ReadinessRules,
    UnitLimits,
    parse_protocol,
)
from tracker.staging import SiteAssessment
from tracker.staging.readiness import add_months, whole_months_between

DEFAULTS = Protocol()


def hip(timeline: Timeline, as_of: date = AS_OF, protocol: Protocol = DEFAULTS) -> SiteAssessment:
    return site_of(assess_both_paths(timeline.records(), as_of, protocol))


def status(timeline: Timeline, name: str, as_of: date = AS_OF) -> str:
    return criterion(hip(timeline, as_of), name).status


def scans(*ratios: float, last: str = "2025-05-01") -> Timeline:
    """A mature hip with delayed-phase ratios every 60 days, the last on `last`."""
    end = day(last)
    timeline = (
        Timeline()
        .injury("spinal_cord_injury", "2023-01-10")
        .radiograph("2024-01-05", cortex="well_defined")
        .alp("2025-05-30", 95)
    )
    for back, ratio in enumerate(reversed(ratios)):
        timeline.delayed_scan(date.fromordinal(end.toordinal() - 60 * back).isoformat(), ratio)
    return timeline


def test_the_spec_example_hip_is_ready_with_checkable_evidence() -> None:
    site = hip(mature_hip())
    assert site.readiness == "ready"
    assert [(c.name, c.status, c.level, c.evidence) for c in site.criteria] == [
        ("radiographic_maturity", "met", "required", "radiograph 2025-05-20: well-defined cortex"),
        (
            "scan_stabilised",
            "met",
            "required",
            "delayed-phase ratio 6.10 (2024-03-01) -> 2.55 (2025-05-01); "
            "at or below Kim threshold 3.0",
        ),
        (
            "alp_normal",
            "met",
            "required_if_known",
            "alp 95 U/L on 2025-05-30 (at or below its reference upper limit 130)",
        ),
        (
            "time_since_injury",
            "met",
            "advisory",
            "spinal_cord_injury 2023-01-10: 29 months since injury, 12 advised",
        ),
        ("not_genetic_ho", "met", "required", "no fop recorded"),
    ]


# --- radiographic_maturity ---


def test_maturity_is_unknown_without_radiograph_ct_or_mri() -> None:
    timeline = (
        Timeline().ultrasound("2024-02-01").delayed_scans(("2024-03-01", 6.1), ("2025-05-01", 2.5))
    )
    site = hip(timeline)
    assert criterion(site, "radiographic_maturity").status == "unknown"
    assert criterion(site, "radiographic_maturity").evidence == (
        "no radiograph, ct or mri of this site"
    )
    assert site.readiness == "insufficient_data"


def test_partial_cortex_on_the_latest_radiograph_is_not_mature() -> None:
    timeline = mature_hip()
    timeline.findings = [f for f in timeline.findings if f.cortex != "well_defined"]
    timeline.radiograph("2025-05-20", cortex="partial")
    site = hip(timeline)
    assert criterion(site, "radiographic_maturity").status == "unmet"
    assert criterion(site, "radiographic_maturity").evidence == (
        "radiograph 2025-05-20: partial cortex; stage mineralising, not mature"
    )
    assert site.readiness == "not_ready"


def test_mature_site_stays_mature_after_a_later_film_without_cortex() -> None:
    timeline = mature_hip().radiograph("2025-06-01", calcification="zonal")
    assert status(timeline, "radiographic_maturity") == "met"


# --- scan_stabilised ---


def test_one_delayed_phase_scan_cannot_show_stabilisation() -> None:
    site = hip(scans(2.0))
    assert criterion(site, "scan_stabilised").status == "unknown"
    assert site.readiness == "insufficient_data"


def test_latest_scan_exactly_180_days_old_still_counts() -> None:
    last = add_days(AS_OF, -180)
    assert status(scans(6.1, 2.5, last=last), "scan_stabilised") == "met"


def test_latest_scan_181_days_old_is_too_old_to_judge() -> None:
    site = hip(scans(6.1, 2.5, last=add_days(AS_OF, -181)))
    assert criterion(site, "scan_stabilised").status == "unknown"
    assert "181 days old; limit 180" in criterion(site, "scan_stabilised").evidence
    assert site.readiness == "insufficient_data"


def test_rising_scan_blocks_readiness_even_below_kim_threshold() -> None:
    site = hip(scans(6.0, 1.5, 1.8))
    assert criterion(site, "scan_stabilised").status == "unmet"
    assert "rising +20% since" in criterion(site, "scan_stabilised").evidence
    assert site.readiness == "not_ready"


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ((5.1, 3.0), "met"),  # r1 above 5.0: final exactly 3.0 is stabilised
        ((5.1, 3.01), "unmet"),
        ((5.0, 3.0), "unmet"),  # r1 exactly 5.0 is in the lower band: needs 2.0
        ((5.0, 2.0), "met"),  # exactly at the lower band's threshold
        ((4.0, 2.01), "unmet"),
        ((3.01, 2.0), "met"),
        ((3.0, 1.0), "unmet"),  # r1 exactly 3.0: no Kim threshold, only a plateau counts
        ((3.0, 1.0, 1.0, 1.05), "met"),  # ... which it then reaches
        ((2.5, 2.4, 2.45), "met"),  # plateau well above any threshold
        ((6.0, 3.0, 3.0, 3.3), "met"),  # exactly +10% is not rising and counts as plateau
    ],
)
def test_kim_thresholds_and_plateau(ratios: tuple[float, ...], expected: str) -> None:
    assert status(scans(*ratios), "scan_stabilised") == expected


def test_kim_band_uses_the_same_day_average_of_the_first_scan() -> None:
    timeline = scans(2.9).delayed_scans(("2025-01-01", 4.9), ("2025-01-01", 5.3))
    # r1 = 5.1 (high band, threshold 3.0), rn = 2.9
    assert status(timeline, "scan_stabilised") == "met"


def test_kim_band_restarts_from_the_first_scan_after_a_resection() -> None:
    timeline = (
        scans(2.9)
        .delayed_scans(("2023-01-01", 8.0), ("2023-06-01", 7.0))
        .resection("2023-09-01")
        .delayed_scan("2024-12-01", 4.5)
        .radiograph("2025-02-01", cortex="well_defined")
    )
    # r1 after resection = 4.5 (lower band, threshold 2.0): 2.9 is not enough
    assert status(timeline, "scan_stabilised") == "unmet"


def test_kim_thresholds_come_from_the_protocol() -> None:
    stricter = Protocol(readiness=ReadinessRules(kim_high_final=2.5))
    site = hip(scans(6.1, 2.55), protocol=stricter)
    assert criterion(site, "scan_stabilised").status == "unmet"
    assert "above Kim threshold 2.5" in criterion(site, "scan_stabilised").evidence


# --- alp_normal ---


def test_alp_exactly_at_the_reference_limit_is_normal() -> None:
    assert status(mature_hip().alp("2025-06-01", 130), "alp_normal") == "met"


def test_alp_above_the_reference_limit_blocks_readiness() -> None:
    site = hip(mature_hip().alp("2025-06-01", 131))
    assert criterion(site, "alp_normal").status == "unmet"
    assert criterion(site, "alp_normal").evidence == (
        "alp 131 U/L on 2025-06-01 (above its reference upper limit 130)"
    )
    assert site.readiness == "not_ready"


def test_alp_exactly_90_days_old_still_counts() -> None:
    timeline = mature_hip()
    timeline.labs = []
    timeline.alp(add_days(AS_OF, -90), 300)
    assert status(timeline, "alp_normal") == "unmet"


def test_alp_91_days_old_is_unknown_and_ignored_for_readiness() -> None:
    timeline = mature_hip()
    timeline.labs = []
    site = hip(timeline.alp(add_days(AS_OF, -91), 300))
    assert criterion(site, "alp_normal").status == "unknown"
    assert site.readiness == "ready"


def test_only_the_latest_alp_in_the_window_decides() -> None:
    timeline = mature_hip()
    timeline.labs = []
    timeline.alp("2025-04-01", 300).alp("2025-06-01", 100)
    assert status(timeline, "alp_normal") == "met"


def test_bone_alp_counts_and_crp_does_not() -> None:
    timeline = mature_hip().alp("2025-06-10", 40, ref_high=20, analyte="bone_alp")
    assert status(timeline, "alp_normal") == "unmet"
    timeline = mature_hip().alp("2025-06-10", 40, ref_high=5, analyte="crp")
    assert status(timeline, "alp_normal") == "met"


def test_elevated_bone_alp_on_the_same_day_as_normal_alp_is_not_normal() -> None:
    timeline = mature_hip().alp("2025-06-10", 90).alp("2025-06-10", 40, 20, "bone_alp")
    assert status(timeline, "alp_normal") == "unmet"


def latest_alp_only(*labs: tuple[str, float, float | None, str, str | None]) -> Timeline:
    """The mature hip with these results (date, value, ref_high, analyte, unit) only."""
    timeline = mature_hip()
    timeline.labs = []
    for on, value, ref_high, analyte, unit in labs:
        timeline.alp(on, value, ref_high=ref_high, analyte=analyte, unit=unit)
    return timeline


def test_alp_without_range_uses_protocol_limit() -> None:
    site = hip(latest_alp_only(("2025-06-01", 650, None, "alp", "U/L")))
    assert criterion(site, "alp_normal").status == "unmet"
    assert criterion(site, "alp_normal").evidence == (
        "alp 650 U/L on 2025-06-01 (above 130, the protocol's default upper limit for U/L)"
    )
    assert site.readiness == "not_ready"


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (130, "U/L", "met"),  # exactly at the default limit is not above it
        (130.5, "U/L", "unmet"),
        (2.17, "ukat/L", "met"),
        (2.18, "ukat/L", "unmet"),
    ],
)
def test_alp_without_range_is_judged_at_the_protocol_limit_for_its_unit(
    value: float, unit: str, expected: str
) -> None:
    site = hip(latest_alp_only(("2025-06-01", value, None, "alp", unit)))
    assert criterion(site, "alp_normal").status == expected
    limit = {"U/L": "130", "ukat/L": "2.17"}[unit]
    assert f"{limit}, the protocol's default upper limit for {unit}" in (
        criterion(site, "alp_normal").evidence
    )


def test_the_labs_own_range_beats_the_protocol_limit() -> None:
    site = hip(latest_alp_only(("2025-06-01", 125, 120, "alp", "U/L")))
    assert criterion(site, "alp_normal").status == "unmet"
    assert criterion(site, "alp_normal").evidence == (
        "alp 125 U/L on 2025-06-01 (above its reference upper limit 120)"
    )
    site = hip(latest_alp_only(("2025-06-01", 140, 150, "alp", "U/L")))
    assert criterion(site, "alp_normal").status == "met"


def test_bone_alp_without_range_is_unknown() -> None:
    site = hip(latest_alp_only(("2025-06-01", 400, None, "bone_alp", "ug/L")))
    assert criterion(site, "alp_normal").status == "unknown"
    assert criterion(site, "alp_normal").evidence == (
        "bone_alp 400 ug/L on 2025-06-01 (no reference range; the protocol has no default "
        "upper limit for bone_alp in ug/L)"
    )
    assert site.readiness == "ready"  # required_if_known: an unknown result is ignored


def test_alp_without_range_or_unit_is_unknown() -> None:
    site = hip(latest_alp_only(("2025-06-01", 400, None, "alp", None)))
    assert criterion(site, "alp_normal").status == "unknown"
    assert "no default upper limit for alp without a unit" in (
        criterion(site, "alp_normal").evidence
    )


def test_an_unjudged_result_does_not_hide_an_elevated_one_on_the_same_day() -> None:
    timeline = latest_alp_only(
        ("2025-06-01", 400, None, "bone_alp", "ug/L"), ("2025-06-01", 135, None, "alp", "U/L")
    )
    site = hip(timeline)
    assert criterion(site, "alp_normal").status == "unmet"
    assert criterion(site, "alp_normal").evidence.startswith("alp 135 U/L")
    timeline = latest_alp_only(
        ("2025-06-01", 400, None, "bone_alp", "ug/L"), ("2025-06-01", 95, None, "alp", "U/L")
    )
    assert status(timeline, "alp_normal") == "met"


def test_a_clinic_can_set_a_default_limit_for_bone_alp() -> None:
    clinic = parse_protocol('[readiness.default_upper_limits.bone_alp]\n"ug/L" = 20.5\n')
    assert clinic.readiness.default_upper_limits.alp == DefaultUpperLimits().alp  # kept
    site = hip(latest_alp_only(("2025-06-01", 21, None, "bone_alp", "ug/L")), protocol=clinic)
    assert criterion(site, "alp_normal").status == "unmet"
    assert criterion(site, "alp_normal").evidence == (
        "bone_alp 21 ug/L on 2025-06-01 (above 20.5, the protocol's default upper limit for ug/L)"
    )
    stricter = Protocol(
        readiness=ReadinessRules(
            default_upper_limits=DefaultUpperLimits(alp=UnitLimits((("U/L", 120.0),)))
        )
    )
    site = hip(latest_alp_only(("2025-06-01", 125, None, "alp", "U/L")), protocol=stricter)
    assert criterion(site, "alp_normal").status == "unmet"
    site = hip(latest_alp_only(("2025-06-01", 2.5, None, "alp", "ukat/L")), protocol=stricter)
    assert criterion(site, "alp_normal").status == "unknown"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[readiness.default_upper_limits.alp]\n"mg/dL" = 5', '.alp."mg/dL" is not a unit of alp'),
        ('[readiness.default_upper_limits.alp]\n"U/L" = 0', '.alp."U/L" must be a positive number'),
        ('[readiness.default_upper_limits.alp]\n"U/L" = "130"', 'alp."U/L" must be a positive'),
        ('[readiness.default_upper_limits.crp]\n"mg/L" = 5', "unknown key readiness.default_"),
        ("[readiness.default_upper_limits]\nalp = 130", "readiness.default_upper_limits.alp must"),
    ],
)
def test_default_upper_limits_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ProtocolError, match="^pasted: ") as refused:
        parse_protocol(text, where="pasted")
    assert message in str(refused.value)


def test_alp_after_as_of_is_ignored() -> None:
    assert status(mature_hip().alp("2025-06-16", 500), "alp_normal") == "met"


def test_unknown_alp_blocks_readiness_when_the_clinic_makes_it_required() -> None:
    timeline = mature_hip()
    timeline.labs = []
    protocol = Protocol(readiness=ReadinessRules(levels=CriterionLevels(alp_normal=Level.required)))
    assert hip(timeline, protocol=protocol).readiness == "insufficient_data"


# --- time_since_injury ---


def test_waiting_time_met_exactly_twelve_calendar_months_after_spinal_cord_injury() -> None:
    timeline = mature_hip()  # first evidence 2023-03-01
    timeline.injuries = []
    timeline.injury("spinal_cord_injury", "2022-06-15")
    site = hip(timeline, as_of=date(2023, 6, 15))
    assert criterion(site, "time_since_injury").status == "met"
    assert criterion(site, "time_since_injury").evidence == (
        "spinal_cord_injury 2022-06-15: 12 months since injury, 12 advised"
    )
    site = hip(timeline, as_of=date(2023, 6, 14))
    assert criterion(site, "time_since_injury").status == "unmet"
    assert criterion(site, "time_since_injury").evidence == (
        "spinal_cord_injury 2022-06-15: 11 months since injury, 12 advised"
    )


def quick_maturing_hip_after_brain_injury() -> Timeline:
    """Ready on 2024-06-01 by every gate, but only 6 months after a TBI (18 advised)."""
    return (
        Timeline()
        .injury("traumatic_brain_injury", "2023-12-01")
        .radiograph("2024-01-05", calcification="zonal")
        .delayed_scans(("2024-01-10", 6.1), ("2024-05-01", 2.5))
        .radiograph("2024-05-10", cortex="well_defined")
        .alp("2024-05-20", 90)
    )


def test_unmet_waiting_time_is_advice_not_a_gate() -> None:
    site = hip(quick_maturing_hip_after_brain_injury(), as_of=date(2024, 6, 1))
    assert criterion(site, "time_since_injury").status == "unmet"
    assert criterion(site, "time_since_injury").level == "advisory"
    assert site.readiness == "ready"


def test_waiting_months_end_on_the_last_day_of_a_short_month() -> None:
    assert add_months(date(2024, 8, 31), 6) == date(2025, 2, 28)
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert whole_months_between(date(2024, 8, 31), date(2025, 2, 27)) == 5
    assert whole_months_between(date(2024, 8, 31), date(2025, 2, 28)) == 6
    timeline = Timeline().injury("burn", "2024-08-31").radiograph("2024-10-01")
    assert status(timeline, "time_since_injury", as_of=date(2025, 2, 28)) == "met"
    assert status(timeline, "time_since_injury", as_of=date(2025, 2, 27)) == "unmet"


def test_every_injury_before_the_first_evidence_must_have_waited() -> None:
    timeline = (
        Timeline()
        .injury("spinal_cord_injury", "2023-01-10")
        .injury("traumatic_brain_injury", "2024-03-01")
        .radiograph("2024-04-01")
    )
    site = hip(timeline)  # TBI 15 months ago, 18 advised
    assert criterion(site, "time_since_injury").status == "unmet"
    assert criterion(site, "time_since_injury").evidence == (
        "spinal_cord_injury 2023-01-10: 29 months since injury, 12 advised; "
        "traumatic_brain_injury 2024-03-01: 15 months since injury, 18 advised"
    )


def test_an_injury_after_the_sites_first_evidence_did_not_cause_it() -> None:
    timeline = mature_hip().injury("traumatic_brain_injury", "2025-01-01")
    assert status(timeline, "time_since_injury") == "met"


def test_waiting_time_is_unknown_without_any_injury() -> None:
    timeline = mature_hip()
    timeline.injuries = []
    site = hip(timeline)
    assert criterion(site, "time_since_injury").status == "unknown"
    assert site.readiness == "ready"


def test_waiting_time_holds_vacuously_when_every_injury_came_after_the_first_evidence() -> None:
    timeline = Timeline().radiograph("2024-01-01").injury("burn", "2024-05-01")
    assert status(timeline, "time_since_injury") == "met"


def test_a_required_waiting_time_gates_readiness_when_the_clinic_says_so() -> None:
    protocol = Protocol(
        readiness=ReadinessRules(levels=CriterionLevels(time_since_injury=Level.required))
    )
    site = hip(quick_maturing_hip_after_brain_injury(), date(2024, 6, 1), protocol)
    assert site.readiness == "not_ready"


# --- not_genetic_ho and the verdict ---


def test_fop_is_never_ready_whatever_the_scans_say() -> None:
    site = hip(mature_hip().injury("fop", "2010-01-01"))
    assert criterion(site, "not_genetic_ho").status == "unmet"
    assert criterion(site, "not_genetic_ho").evidence.startswith("fop recorded 2010-01-01")
    assert site.readiness == "not_ready"


def test_fop_has_no_waiting_time_of_its_own() -> None:
    timeline = Timeline().injury("fop", "2010-01-01").radiograph("2024-01-01")
    site = hip(timeline)
    assert criterion(site, "time_since_injury").status == "met"
    assert "no injury with a waiting time" in criterion(site, "time_since_injury").evidence
    assert criterion(site, "not_genetic_ho").status == "unmet"


def test_site_without_ho_is_not_applicable_not_not_ready() -> None:
    timeline = Timeline().ultrasound("2025-01-01", ho="absent").alp("2025-06-01", 80)
    site = hip(timeline)
    assert (site.stage, site.readiness) == ("none", "not_applicable")
    # the criteria are still reported, with their evidence
    assert [(c.name, c.status) for c in site.criteria] == [
        ("radiographic_maturity", "unknown"),
        ("scan_stabilised", "unknown"),
        ("alp_normal", "met"),
        ("time_since_injury", "unknown"),
        ("not_genetic_ho", "met"),
    ]


def test_a_resected_site_without_new_evidence_is_not_applicable_even_with_fop() -> None:
    timeline = mature_hip().injury("fop", "2010-01-01").resection("2025-06-01")
    site = hip(timeline)
    assert (site.stage, site.readiness) == ("none", "not_applicable")
    assert criterion(site, "not_genetic_ho").status == "unmet"


def test_unmet_beats_unknown_in_the_verdict() -> None:
    timeline = Timeline().radiograph("2025-01-01", cortex="partial")  # unmet; scans unknown
    assert hip(timeline).readiness == "not_ready"


def test_criteria_are_listed_in_the_spec_table_order_with_protocol_levels() -> None:
    site = hip(mature_hip())
    assert [c.name for c in site.criteria] == [
        "radiographic_maturity",
        "scan_stabilised",
        "alp_normal",
        "time_since_injury",
        "not_genetic_ho",
    ]
    advisory = Protocol(
        readiness=replace(
            ReadinessRules(), levels=CriterionLevels(radiographic_maturity=Level.advisory)
        )
    )
    timeline = mature_hip()
    timeline.findings = [f for f in timeline.findings if f.cortex != "well_defined"]
    site = hip(timeline, protocol=advisory)
    assert criterion(site, "radiographic_maturity").level == "advisory"
    assert site.readiness == "ready"


def add_days(base: date, days: int) -> str:
    return date.fromordinal(base.toordinal() + days).isoformat()
