"""Forecast of the day a declining site stabilises (model-spec section 7).

Timelines go through both the one-patient path and the cohort run
(`assess_both_paths`), which must agree at every boundary."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from builders import Timeline, assess_both_paths, site_of

from tracker.protocol import ForecastRules, ReadinessRules
from tracker.staging import SiteAssessment, delayed_series
from tracker.staging.forecast import (
    MIN_POINTS,
    RecoverySeries,
    crossing_days,
    fit_recovery_curves,
    forecast_recoveries,
    forecast_recovery,
    recovery_series,
)

assess_patient = assess_both_paths  # every timeline here: both paths, one answer

PEAK = date(2024, 1, 1)
RULES = ForecastRules()


def curve(a: float, b: float, k: float, days: list[int]) -> list[float]:
    return [a + b * math.exp(-k * t) for t in days]


def exponential_hip(
    a: float, b: float, k: float, days: list[int], noise: tuple[float, ...] = ()
) -> Timeline:
    timeline = Timeline().radiograph("2023-12-20", calcification="zonal")
    errors = (list(noise) + [0.0] * len(days))[: len(days)]
    for t, ratio, error in zip(days, curve(a, b, k, days), errors, strict=True):
        timeline.delayed_scan((PEAK + timedelta(days=t)).isoformat(), ratio + error)
    return timeline


NOISE = (0.03, -0.03, 0.02, -0.02, 0.01)  # a few hundredths, as ratios are recorded


def point_forecast_days(series: RecoverySeries, proximity: float = 0.05) -> float:
    """Days from the peak to the fitted curve's crossing: the forecast's own centre,
    before the bootstrap interval (and its no-spread rule) is applied."""
    days = np.array([series.days], dtype=np.float64)
    ratios = np.array([[series.ratios]], dtype=np.float64)
    fits = fit_recovery_curves(days, ratios, np.ones_like(days))
    threshold = np.array([np.nan if series.threshold is None else series.threshold])
    return float(crossing_days(fits, threshold, proximity)[0, 0])


def on_day(days: float) -> date:
    return PEAK + timedelta(days=math.ceil(days))


def test_exponential_decline_is_forecast_on_the_day_it_meets_kim_threshold() -> None:
    # r1 = 6.5 > 5.0: threshold 3.0, met when 1.5 + 5 exp(-t/200) = 3.0
    timeline = exponential_hip(1.5, 5.0, 1 / 200, [0, 60, 120, 180], NOISE)
    hip = site_of(assess_patient(timeline.records(), PEAK + timedelta(days=190)))
    assert (hip.activity, hip.readiness) == ("declining", "not_ready")
    assert hip.forecast is not None
    truth = on_day(200 * math.log(5.0 / 1.5))
    assert abs((hip.forecast.date - truth).days) <= 3
    assert hip.forecast.low <= hip.forecast.date <= hip.forecast.high
    assert hip.forecast.low < hip.forecast.high
    assert hip.forecast.passed is False


@pytest.mark.parametrize("k", [1 / 45, 1 / 97, 1 / 300, 1 / 700])
def test_clean_exponential_recovers_the_day_for_slow_and_fast_decay(k: float) -> None:
    # r1 = 4.8: lower band, threshold 2.0
    days = [0, 30, 75, 140, 230]
    series = RecoverySeries(PEAK, tuple(days), tuple(curve(1.2, 3.6, k, days)), 2.0)
    assert abs(point_forecast_days(series) - math.log(3.6 / 0.8) / k) <= 3


def test_forecast_interval_never_zero_width() -> None:
    # A curve fitted exactly leaves no residuals to resample: no spread, no forecast
    # (a surgeon must never read "2027-01-23 to 2027-01-23" as certainty).
    clean = exponential_hip(1.5, 5.0, 1 / 200, [0, 60, 120, 180])
    hip = site_of(assess_patient(clean.records(), PEAK + timedelta(days=190)))
    assert criterion_status(hip) == "unmet" and hip.activity == "declining"
    assert hip.forecast is None
    # ... while every forecast that is given has a real interval around its day
    as_of = PEAK + timedelta(days=720)
    given = [f for f in forecast_recoveries(random_series(3, 40), as_of, RULES) if f]
    assert len(given) > 20
    assert all(f.low <= f.date <= f.high and f.low < f.high for f in given)


def test_forecast_needs_four_points() -> None:
    assert MIN_POINTS == 4
    # A fall that speeds up: no curve a + b exp(-kt) passes through all three points,
    # so three would already leave residuals to resample (and give a forecast).
    three = (
        Timeline()
        .radiograph("2023-12-20", calcification="zonal")
        .delayed_scans(("2024-01-01", 6.5), ("2024-03-01", 6.0), ("2024-05-01", 4.6))
    )
    hip = site_of(assess_patient(three.records(), date(2024, 5, 15)))
    assert criterion_status(hip) == "unmet" and hip.activity == "declining"
    assert hip.forecast is None
    four = three.delayed_scan("2024-07-01", 3.9)
    hip = site_of(assess_patient(four.records(), date(2024, 7, 15)))
    assert hip.forecast is not None
    # points before the peak do not count: a rise to the peak leaves three after it
    rise = (
        Timeline()
        .radiograph("2023-12-20", calcification="zonal")
        .delayed_scans(
            ("2023-11-01", 4.0), ("2024-01-01", 6.5), ("2024-03-01", 5.1), ("2024-05-01", 4.3)
        )
    )
    assert site_of(assess_patient(rise.records(), date(2024, 5, 15))).forecast is None


def test_forecast_already_passed_says_so() -> None:
    # Fell fast towards 3.0 and the curve crossed it soon after the last scan; 150 days
    # on, without a new scan, the forecast day is in the past: a rescan is due.
    timeline = (
        Timeline()
        .radiograph("2023-12-20", calcification="zonal")
        .delayed_scans(
            ("2024-01-01", 6.5), ("2024-02-01", 4.9), ("2024-03-01", 3.9), ("2024-04-01", 3.4)
        )
    )
    soon = site_of(assess_patient(timeline.records(), date(2024, 4, 2)))
    assert soon.forecast is not None and soon.forecast.passed is False
    assert soon.forecast.date >= date(2024, 4, 2)
    late = site_of(assess_patient(timeline.records(), date(2024, 8, 29)))
    assert criterion_status(late) == "unmet"
    assert late.forecast is not None and late.forecast.passed is True
    assert late.forecast.date < date(2024, 8, 29)
    assert (late.forecast.date, late.forecast.low, late.forecast.high) == (
        soon.forecast.date,
        soon.forecast.low,
        soon.forecast.high,
    )
    # on the forecast day itself it has not passed yet; the day after, it has
    day = soon.forecast.date
    on_the_day = site_of(assess_patient(timeline.records(), day)).forecast
    day_after = site_of(assess_patient(timeline.records(), day + timedelta(days=1))).forecast
    assert on_the_day is not None and on_the_day.date == day and on_the_day.passed is False
    assert day_after is not None and day_after.date == day and day_after.passed is True


def test_without_a_kim_threshold_the_forecast_is_when_the_curve_nears_its_floor() -> None:
    # r1 = 2.8: no Kim band; within 5% of a = 1.0 when 1.8 exp(-t/150) = 0.05
    days = [0, 40, 90, 150]
    timeline = exponential_hip(1.0, 1.8, 1 / 150, days)
    hip = site_of(assess_patient(timeline.records(), PEAK + timedelta(days=160)))
    assert hip.forecast is not None
    truth = on_day(150 * math.log(1.8 / 0.05))
    assert abs((hip.forecast.date - truth).days) <= 3


def test_noisy_series_gets_an_interval_around_the_forecast() -> None:
    days = [0, 45, 90, 150, 210, 260]
    noise = [0.15, -0.2, 0.1, 0.18, -0.15, 0.05]
    ratios = [r + e for r, e in zip(curve(1.5, 5.0, 1 / 250, days), noise, strict=True)]
    series = RecoverySeries(PEAK, tuple(days), tuple(ratios), 3.0)
    forecast = forecast_recovery(series, PEAK + timedelta(days=270), RULES)
    assert forecast is not None
    assert forecast.low < forecast.date < forecast.high
    assert forecast.low >= PEAK


def test_forecast_is_null_with_fewer_than_four_points_from_the_peak() -> None:
    timeline = (
        Timeline()
        .radiograph("2023-12-20", calcification="zonal")
        .delayed_scans(("2024-01-01", 4.0), ("2024-03-01", 6.5), ("2024-05-01", 5.2))
    )
    hip = site_of(assess_patient(timeline.records(), date(2024, 6, 1)))
    assert criterion_status(hip) == "unmet" and hip.activity == "declining"
    assert hip.forecast is None


def test_forecast_is_null_when_the_curve_levels_off_above_the_threshold() -> None:
    days = [0, 60, 120, 180]
    series = RecoverySeries(PEAK, tuple(days), tuple(curve(3.5, 3.0, 1 / 60, days)), 3.0)
    assert forecast_recovery(series, PEAK + timedelta(days=200), RULES) is None


def test_forecast_is_null_when_more_than_five_years_away() -> None:
    days = [0, 100, 200, 300]
    series = RecoverySeries(PEAK, tuple(days), tuple(curve(2.99, 3.5, 1 / 900, days)), 3.0)
    assert forecast_recovery(series, PEAK + timedelta(days=310), RULES) is None
    longer = ForecastRules(horizon_years=20)
    assert forecast_recovery(series, PEAK + timedelta(days=310), longer) is not None


def test_no_forecast_once_kim_threshold_is_met() -> None:
    timeline = exponential_hip(1.5, 5.0, 1 / 200, [0, 60, 120, 180, 300], NOISE)  # rn ~ 2.9
    hip = site_of(assess_patient(timeline.records(), PEAK + timedelta(days=310)))
    assert criterion_status(hip) == "met"
    assert hip.forecast is None


def test_no_forecast_while_uptake_is_rising_or_scans_are_stale() -> None:
    rising = Timeline().delayed_scans(("2024-01-01", 6.0), ("2024-03-01", 4.5), ("2024-05-01", 5.5))
    assert site_of(assess_patient(rising.records(), date(2024, 6, 1))).forecast is None
    stale = exponential_hip(1.5, 5.0, 1 / 200, [0, 60, 120, 180])
    hip = site_of(assess_patient(stale.records(), PEAK + timedelta(days=361)))
    assert criterion_status(hip) == "unknown"
    assert hip.forecast is None


def test_forecast_fits_from_the_latest_peak_only() -> None:
    days = [0, 60, 120, 180]
    timeline = exponential_hip(1.5, 5.0, 1 / 200, days, NOISE).delayed_scan("2023-10-01", 2.0)
    hip = site_of(assess_patient(timeline.records(), PEAK + timedelta(days=190)))
    # r1 = 2.0: no Kim band; the fit starts at the 6.5 peak of 2024-01-01
    assert hip.forecast is not None
    truth = on_day(200 * math.log(5.0 / (0.05 * 1.5)))
    assert hip.forecast.low <= truth <= hip.forecast.high
    series = delayed_series(timeline.records().bone_scans)
    recovery = recovery_series(series, ReadinessRules())
    assert recovery is not None
    assert (recovery.peak_date, recovery.days, recovery.threshold) == (
        PEAK,
        (0, 60, 120, 180),
        None,
    )
    clean = RecoverySeries(PEAK, (0, 60, 120, 180), tuple(curve(1.5, 5.0, 1 / 200, days)), None)
    assert abs(point_forecast_days(clean) - 200 * math.log(5.0 / (0.05 * 1.5))) <= 10


def random_series(seed: int, count: int) -> list[RecoverySeries]:
    rng = np.random.default_rng(seed)
    result = []
    for i in range(count):
        n = int(rng.integers(3, 9))
        days = [0, *sorted(int(d) for d in rng.choice(np.arange(1, 700), n - 1, replace=False))]
        a, b, k = rng.uniform(0.5, 2.0), rng.uniform(1.0, 6.0), 1 / rng.uniform(20, 500)
        ratios = [max(0.1, a + b * math.exp(-k * t) + rng.normal(0, 0.2)) for t in days]
        result.append(RecoverySeries(PEAK, tuple(days), tuple(ratios), [None, 2.0, 3.0][i % 3]))
    return result


def test_a_site_gets_the_same_forecast_alone_or_in_any_batch() -> None:
    series = random_series(seed=7, count=24)
    as_of = PEAK + timedelta(days=720)
    batch = forecast_recoveries(series, as_of, RULES)
    assert batch == [forecast_recovery(s, as_of, RULES) for s in series]
    assert forecast_recoveries(series[::-1], as_of, RULES) == batch[::-1]
    assert sum(f is not None for f in batch) > len(series) // 2


def padded(series: list[RecoverySeries], width: int) -> tuple[np.ndarray, ...]:
    days, mask = np.zeros((len(series), width)), np.zeros((len(series), width))
    ratios = np.zeros((len(series), 1, width))
    for row, s in enumerate(series):
        days[row, : len(s.days)] = s.days
        mask[row, : len(s.days)] = 1.0
        ratios[row, 0, : len(s.days)] = s.ratios
    return days, ratios, mask


def test_fitted_parameters_are_bit_identical_whatever_the_batch_and_padding() -> None:
    series = random_series(seed=11, count=10)
    whole = fit_recovery_curves(*padded(series, 8))
    wide = fit_recovery_curves(*padded(series, 15))
    for row, s in enumerate(series):
        alone = fit_recovery_curves(*padded([s], len(s.days)))
        for name in ("a", "b", "k", "sse"):
            assert getattr(whole, name)[row, 0] == getattr(alone, name)[0, 0]
            assert getattr(wide, name)[row, 0] == getattr(alone, name)[0, 0]


def criterion_status(site: SiteAssessment) -> str:
    return next(c.status for c in site.criteria if c.name == "scan_stabilised")
