"""The core's helpers for trend figures agree with the assessment they illustrate."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from builders import AS_OF, Timeline, day, mature_hip

from tracker.protocol import Protocol
from tracker.staging import assess_patient, delayed_series
from tracker.staging.assess import forecast_applies
from tracker.staging.forecast import recovery_series
from tracker.staging.readiness import Status, time_since_injury, waiting_time_end
from tracker.staging.records import as_of_cut, site_evidence
from tracker.staging.stage import Stage, site_stage
from tracker.staging.trend import fitted_curve, site_episodes, stage_onsets

PROTOCOL = Protocol()
KEY = ("hip", "right")


def declining() -> Timeline:
    return (
        Timeline()
        .injury("spinal_cord_injury", "2023-01-10")
        .radiograph("2023-03-01", calcification="peripheral")
        .delayed_scans(
            ("2023-02-10", 7.0),
            ("2023-06-10", 5.8),
            ("2023-10-10", 4.9),
            ("2024-02-10", 4.2),
            ("2024-06-10", 3.7),
        )  # fmt: skip
    )


def test_fitted_curve_reaches_the_kim_threshold_on_the_forecast_day() -> None:
    as_of = date(2024, 12, 1)
    records = declining().records()
    site = assess_patient(records, as_of).sites[0]
    assert site.forecast is not None and forecast_applies(site.criteria, site.activity)
    series = delayed_series(site_evidence(as_of_cut(records, as_of), KEY).bone_scans)
    recovery = recovery_series(series, PROTOCOL.readiness)
    assert recovery is not None
    curve = fitted_curve(recovery)
    assert curve is not None and curve.threshold == 3.0 and curve.peak_date == day("2023-02-10")
    on = (site.forecast.date - curve.peak_date).days
    assert curve.ratio_at(on) <= 3.0 + 1e-9 < curve.ratio_at(on - 1)
    assert curve.a >= 0 and curve.b >= 0 and curve.k > 0


def test_a_stabilised_site_is_not_forecast() -> None:
    site = assess_patient(mature_hip().records(), AS_OF).sites[0]
    assert site.forecast is None and not forecast_applies(site.criteria, site.activity)


def test_stage_onsets_end_at_the_sites_stage_and_never_go_back() -> None:
    records = (
        mature_hip()
        .ultrasound("2023-02-01", vascularity="increased")
        .ultrasound("2025-06-01", vascularity="increased")  # cannot see the cortex: no demotion
        .records()
    )
    evidence = site_evidence(as_of_cut(records, AS_OF), KEY)
    onsets = stage_onsets(evidence, PROTOCOL.stage)
    assert [stage for stage, _ in onsets] == [Stage.early, Stage.mineralising, Stage.mature]
    assert [when for _, when in onsets] == [day("2023-02-01"), day("2023-03-01"), day("2025-05-20")]
    assert onsets[-1][0] == site_stage(evidence, PROTOCOL.stage)


def test_a_site_without_ho_has_no_stage_onsets() -> None:
    records = Timeline().ultrasound("2024-01-01", ho="absent").records()
    assert stage_onsets(site_evidence(as_of_cut(records, AS_OF), KEY), PROTOCOL.stage) == ()


def test_episodes_split_at_resections_and_the_last_is_what_counts_today() -> None:
    records = (
        mature_hip()
        .resection("2025-06-01")
        .radiograph("2025-06-01", ho="absent")  # the day of the resection: before it
        .radiograph("2025-09-01", calcification="peripheral")
        .records()
    )
    as_of = date(2025, 12, 1)
    cut = as_of_cut(records, as_of)
    before, after = site_episodes(cut, KEY)
    assert after == site_evidence(cut, KEY)
    assert before.resected_on is None and after.resected_on == day("2025-06-01")
    assert max(f.date for f in before.findings) == day("2025-06-01")
    assert [f.date for f in after.findings] == [day("2025-09-01")]
    assert (
        site_stage(before, PROTOCOL.stage) == Stage.mature
        and site_stage(after, PROTOCOL.stage) == Stage.mineralising
    )


@pytest.mark.parametrize("kind", ["spinal_cord_injury", "traumatic_brain_injury", "burn"])
def test_waiting_time_end_is_the_first_day_time_since_injury_is_met(kind: str) -> None:
    injuries = Timeline().injury(kind, "2024-01-31").injury("burn", "2024-03-15").records()
    first = day("2024-04-01")
    end = waiting_time_end(injuries.injuries, first, AS_OF, PROTOCOL.waiting_months)
    assert end is not None
    for offset in range(-3, 4):
        on = end + timedelta(days=offset)
        status, _ = time_since_injury(injuries.injuries, first, on, PROTOCOL.waiting_months)
        assert status == (Status.met if on >= end else Status.unmet)


def test_no_waiting_time_without_a_weighed_injury() -> None:
    fop = Timeline().injury("fop", "2019-06-15").records().injuries
    assert waiting_time_end(fop, day("2019-07-01"), AS_OF, PROTOCOL.waiting_months) is None
    assert waiting_time_end((), None, AS_OF, PROTOCOL.waiting_months) is None
