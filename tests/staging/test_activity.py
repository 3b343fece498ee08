"""Activity from serial delayed-phase uptake ratios (model-spec section 4).

Timelines go through both the one-patient path and the cohort run
(`assess_both_paths`), which must agree at every boundary."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from builders import AS_OF, Timeline, assess_both_paths, site_of

from tracker.staging import classify_activity
from tracker.staging.activity import Activity

T = 0.10


def activity_of(timeline: Timeline) -> str:
    return site_of(assess_both_paths(timeline.records(), AS_OF)).activity


def test_a_site_without_delayed_phase_scans_has_no_activity() -> None:
    assert (
        activity_of(Timeline().radiograph("2025-01-01").scan("2025-01-01", "flow", 2.0)) == "none"
    )


def test_one_delayed_phase_scan_is_a_single_scan() -> None:
    assert activity_of(Timeline().delayed_scan("2025-01-01", 4.0)) == "single_scan"


def test_same_day_ratios_are_averaged_into_one_value() -> None:
    timeline = Timeline().delayed_scans(("2025-01-01", 4.0), ("2025-01-01", 3.0))
    hip = site_of(assess_both_paths(timeline.records(), AS_OF))
    assert (hip.activity, hip.latest_ratio) == ("single_scan", 3.5)


def test_a_same_day_repeat_changes_the_trend_by_its_average_not_its_first_value() -> None:
    # 2.0 then (2.0 + 2.6) / 2 = 2.3: +15%, rising (the day's first value alone, 2.0,
    # would be flat; the highest alone, 2.6, would be +30%)
    timeline = Timeline().delayed_scans(
        ("2025-01-01", 2.0), ("2025-03-01", 2.6), ("2025-03-01", 2.0)
    )
    hip = site_of(assess_both_paths(timeline.records(), AS_OF))
    assert (hip.activity, hip.latest_ratio) == ("rising", 2.3)
    # 4.0 then (1.8 + 2.6) / 2 = 2.2, then 2.2: within tolerance of the average only
    timeline = Timeline().delayed_scans(
        ("2025-01-01", 4.0),
        ("2025-02-01", 2.6),
        ("2025-02-01", 1.8),
        ("2025-03-01", 2.2),
        ("2025-04-01", 2.2),
    )
    assert activity_of(timeline) == "plateau"


def test_blood_pool_and_flow_phases_do_not_enter_the_series() -> None:
    timeline = (
        Timeline()
        .delayed_scan("2025-01-01", 3.0)
        .scan("2025-03-01", "blood_pool", 9.0)
        .scan("2025-03-01", "flow", 9.0)
    )
    assert activity_of(timeline) == "single_scan"


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ([2.0, 2.21], Activity.rising),
        ([2.0, 2.2], Activity.indeterminate),  # exactly +10%: not rising
        ([3.0, 3.3], Activity.indeterminate),
        ([1.0, 1.1], Activity.indeterminate),
        ([5.0, 2.0, 2.2], Activity.declining),  # exactly +10% after a fall: below the peak
        ([2.0, 2.0, 2.2], Activity.plateau),  # exactly +10% still counts toward plateau
        ([2.2, 2.0, 2.2], Activity.plateau),  # exactly -10% then +10%
        ([2.0, 2.0, 1.8], Activity.plateau),
        ([2.0, 2.0, 2.0], Activity.plateau),
        ([2.0, 2.0, 2.21], Activity.rising),
        ([4.0, 2.0, 2.21], Activity.rising),  # rising wins over a bigger earlier fall
        ([3.0, 2.0], Activity.declining),  # d_n < -t
        ([2.0, 1.9], Activity.declining),  # small fall, but below the maximum
        ([4.0, 3.0, 2.9], Activity.declining),  # last change small, earlier one large
        ([2.0, 2.1], Activity.indeterminate),  # small rise to a new maximum, n = 2
        ([1.0, 2.0, 2.1], Activity.indeterminate),  # small rise to a new maximum, n = 3
    ],
)
def test_activity_rules_in_order(ratios: list[float], expected: Activity) -> None:
    assert classify_activity(ratios, T) == expected
    # the same series as recorded scans, through both paths
    timeline = Timeline()
    for months, ratio in enumerate(ratios):
        timeline.delayed_scan((date(2024, 1, 1) + timedelta(days=60 * months)).isoformat(), ratio)
    assert activity_of(timeline) == expected


def test_plateau_needs_three_scans() -> None:
    assert classify_activity([2.0, 2.0], T) == Activity.indeterminate


def test_tolerance_comes_from_the_protocol() -> None:
    assert classify_activity([2.0, 2.3], 0.10) == Activity.rising
    assert classify_activity([2.0, 2.3], 0.20) == Activity.indeterminate


def test_scans_before_a_resection_do_not_enter_the_series() -> None:
    timeline = (
        Timeline()
        .delayed_scans(("2023-01-01", 9.0), ("2023-06-01", 7.0))
        .resection("2023-09-01")
        .delayed_scans(("2024-01-01", 3.0), ("2024-06-01", 4.0))
    )
    assert activity_of(timeline) == "rising"


def test_scans_dated_after_as_of_do_not_count() -> None:
    timeline = Timeline().delayed_scans(("2025-01-01", 3.0), ("2025-06-16", 9.0))
    assert activity_of(timeline) == "single_scan"
