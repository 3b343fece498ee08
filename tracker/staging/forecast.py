"""When will a declining site stabilise? A planning forecast (model-spec section 7).

The delayed-phase ratios from the peak onward are fitted with
r(t) = a + b * exp(-k t) (t in days from the peak; a >= 0, b >= 0, k > 0), and the
forecast is the first day the fitted curve reaches the site's Kim threshold, or
comes within `plateau_proximity` of its asymptote a where no threshold applies.
The 80% interval comes from a residual bootstrap. A forecast is information for
planning, never a readiness criterion.

Batch invariance. The cohort run must give exactly the answers of the one-patient
path, so every fit goes through one batched function over padded arrays (sites x
points, points left-aligned, padding masked out), and a single site is a batch of
one. Nothing is reduced along the padded axis with numpy's pairwise summation,
whose rounding depends on the row length: sums are accumulated column by column,
and a masked column adds an exact zero. The bootstrap's random indices depend only
on the number of points (a Generator seeded with it), so a site gets the same
interval in any batch, padded to any width.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from tracker.protocol import ForecastRules, ReadinessRules
from tracker.staging.activity import DailyRatio
from tracker.staging.readiness import add_months, kim_threshold

Array = NDArray[np.float64]

# Decay rates searched: time constants from 5 days to about 8 years, log-spaced.
_LOG_K_GRID = np.linspace(math.log(1 / 3000), math.log(1 / 5), 200)
K_GRID: Array = np.exp(_LOG_K_GRID)
_LOG_K_STEP = float(_LOG_K_GRID[1] - _LOG_K_GRID[0])
MIN_POINTS = 3
_DAY_SLACK = 1e-9  # a crossing computed as 41.999999999 days is day 42, not 43


@dataclass(frozen=True, slots=True)
class Forecast:
    """The forecast day and its interval (low <= date <= high)."""

    date: datetime.date
    low: datetime.date
    high: datetime.date


@dataclass(frozen=True, slots=True)
class RecoverySeries:
    """The points a forecast is fitted to: delayed-phase ratios from the peak on.

    `threshold` is the site's Kim final threshold (from its first ratio r1), or None
    when none applies and the curve must come near its asymptote instead.
    """

    peak_date: date
    days: tuple[int, ...]  # days from the peak; the first is 0
    ratios: tuple[float, ...]
    threshold: float | None


@dataclass(frozen=True, slots=True)
class CurveFits:
    """Fitted parameters, each of shape (sites, series per site)."""

    a: Array
    b: Array
    k: Array
    sse: Array


def recovery_series(series: Sequence[DailyRatio], rules: ReadinessRules) -> RecoverySeries | None:
    """The ratios from the (latest) peak onward, or None with fewer than 3 of them."""
    if not series:
        return None
    ratios = [point.ratio for point in series]
    peak = max(range(len(ratios)), key=lambda i: (ratios[i], i))
    tail = series[peak:]
    if len(tail) < MIN_POINTS:
        return None
    start = tail[0].date
    return RecoverySeries(
        peak_date=start,
        days=tuple((point.date - start).days for point in tail),
        ratios=tuple(point.ratio for point in tail),
        threshold=kim_threshold(series[0].ratio, rules),
    )


# --- the batched fit ---


def _sse(a: Array, b: Array, sums: dict[str, Array]) -> Array:
    n, sz, szz, sy, szy, syy = (sums[key] for key in ("n", "sz", "szz", "sy", "szy", "syy"))
    return syy - 2 * a * sy - 2 * b * szy + a * a * n + 2 * a * b * sz + b * b * szz


def _constrained_least_squares(sums: dict[str, Array]) -> tuple[Array, Array, Array]:
    """Least-squares a, b of y ~ a + b z with a >= 0, b >= 0, from the normal sums.

    If the unconstrained optimum leaves the quadrant, the constrained one lies on
    its boundary: the better of a = 0 and b = 0.
    """
    n, sz, szz, sy, szy = (sums[key] for key in ("n", "sz", "szz", "sy", "szy"))
    with np.errstate(divide="ignore", invalid="ignore"):
        det = n * szz - sz * sz
        b_free = (n * szy - sz * sy) / det
        a_free = (sy - b_free * sz) / n
        b_only = np.maximum(szy / szz, 0.0)  # a = 0
        a_only = np.maximum(sy / n, 0.0)  # b = 0
        zero = np.zeros_like(b_only)
        sse_free = _sse(a_free, b_free, sums)
        sse_b_only = _sse(zero, b_only, sums)
        sse_a_only = _sse(a_only, zero, sums)
    inside = (det > 0) & (a_free >= 0) & (b_free >= 0)
    use_b_only = sse_b_only <= sse_a_only
    a = np.where(inside, a_free, np.where(use_b_only, 0.0, a_only))
    b = np.where(inside, b_free, np.where(use_b_only, b_only, 0.0))
    sse = np.where(inside, sse_free, np.where(use_b_only, sse_b_only, sse_a_only))
    return a, b, sse


def _normal_sums(days: Array, ratios: Array, mask: Array, k: Array) -> dict[str, Array]:
    """Sums over each series' points of 1, z, z^2, y, z y, y^2 with z = exp(-k t).

    days, mask: (S, P); ratios: (S, R, P); k broadcasts against (S, R, K). Summed
    column by column so that padding adds exact zeros (see the module docstring).
    """
    sites, series, points = ratios.shape
    z_shape = np.broadcast_shapes((sites, 1, 1), k.shape)
    y_shape = (sites, series, 1)
    shapes = {
        "n": (sites, 1, 1),
        "sz": z_shape,
        "szz": z_shape,
        "sy": y_shape,
        "syy": y_shape,
        "szy": np.broadcast_shapes(z_shape, y_shape),
    }
    sums = {key: np.zeros(shape) for key, shape in shapes.items()}
    for j in range(points):
        m = mask[:, j, None, None]
        z = np.exp(-(days[:, j, None, None] * k))
        y = ratios[:, :, j, None]
        zm = z * m
        ym = y * m
        sums["n"] += m
        sums["sz"] += zm
        sums["szz"] += zm * z
        sums["sy"] += ym
        sums["syy"] += ym * y
        sums["szy"] += ym * z
    return sums


def fit_recovery_curves(days: Array, ratios: Array, mask: Array) -> CurveFits:
    """Fit r(t) = a + b exp(-k t) to every series of a padded batch.

    days: (S, P) days from each site's peak; mask: (S, P), 1 for a point, 0 for
    padding (padding holds zeros); ratios: (S, R, P), R series per site sharing that
    site's days (R = 1 for the observed series, R = B for bootstrap resamples).
    k is chosen on a log-spaced grid, refined by a parabola through the best grid
    point and its neighbours (kept only if it lowers the error); a and b are the
    constrained least-squares solution for that k. Returns arrays of shape (S, R);
    a series without points gives NaN.
    """
    grid = K_GRID[None, None, :]
    a, b, sse = _constrained_least_squares(_normal_sums(days, ratios, mask, grid))
    sse = np.where(np.isnan(sse), np.inf, sse)
    best = np.argmin(sse, axis=-1)[..., None]

    centre = np.clip(best, 1, K_GRID.size - 2)
    below, mid, over = (np.take_along_axis(sse, centre + shift, -1) for shift in (-1, 0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = below - 2 * mid + over
        offset = np.where(curvature > 0, 0.5 * (below - over) / curvature, 0.0)
    offset = np.clip(np.nan_to_num(offset), -1.0, 1.0)
    k_refined = np.exp(_LOG_K_GRID[centre] + offset * _LOG_K_STEP)
    a_ref, b_ref, sse_ref = _constrained_least_squares(_normal_sums(days, ratios, mask, k_refined))

    def pick(values: Array) -> Array:
        return np.take_along_axis(values, best, -1)

    better = sse_ref < pick(sse)
    return CurveFits(
        a=np.where(better, a_ref, pick(a))[..., 0],
        b=np.where(better, b_ref, pick(b))[..., 0],
        k=np.where(better, k_refined, K_GRID[best])[..., 0],
        sse=np.where(better, sse_ref, pick(sse))[..., 0],
    )


def crossing_days(fits: CurveFits, thresholds: Array, proximity: float) -> Array:
    """Days from the peak until each fitted curve reaches its target, inf if never.

    thresholds: (S,) Kim thresholds, NaN where none applies; then the target is
    a * (1 + proximity). A threshold at or below the asymptote is never reached.
    """
    a, b, k = fits.a, fits.b, fits.k
    target = np.where(np.isnan(thresholds)[:, None], a * (1 + proximity), thresholds[:, None])
    gap = target - a
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        days = np.log(b / gap) / k
    days = np.where(a + b <= target, 0.0, np.where(gap > 0, days, np.inf))
    fitted = np.isfinite(a) & np.isfinite(b) & np.isfinite(k)
    return np.where(fitted & ~np.isnan(days), days, np.inf)


@lru_cache(maxsize=64)
def _bootstrap_indices(points: int, samples: int) -> NDArray[np.int64]:
    """Which residual goes where in each resample: depends on the point count only."""
    indices = np.random.Generator(np.random.PCG64(points)).integers(0, points, (samples, points))
    indices.setflags(write=False)
    return indices


def forecast_recoveries(
    series: Sequence[RecoverySeries], as_of: date, rules: ForecastRules
) -> list[Forecast | None]:
    """Forecasts for many sites at once; each equals its own batch-of-one answer.

    Memory grows as sites x bootstrap_samples x 200; a cohort run may split its
    sites into chunks of any size without changing a single answer.
    """
    if not series:
        return []
    sites, width = len(series), max(len(s.days) for s in series)
    days, mask = np.zeros((sites, width)), np.zeros((sites, width))
    observed = np.zeros((sites, 1, width))
    for row, s in enumerate(series):
        count = len(s.days)
        days[row, :count] = s.days
        mask[row, :count] = 1.0
        observed[row, 0, :count] = s.ratios
    thresholds = np.array([np.nan if s.threshold is None else s.threshold for s in series])
    fits = fit_recovery_curves(days, observed, mask)
    point = crossing_days(fits, thresholds, rules.plateau_proximity)[:, 0]

    samples = rules.bootstrap_samples
    fitted = fits.a[:, :1] + fits.b[:, :1] * np.exp(-(days * fits.k[:, :1]))
    residuals = (observed[:, 0, :] - fitted) * mask
    resampled = np.zeros((sites, samples, width))
    for count in sorted({len(s.days) for s in series}):
        rows = np.array([row for row, s in enumerate(series) if len(s.days) == count])
        picks = residuals[rows][:, _bootstrap_indices(count, samples)]
        resampled[rows, :, :count] = fitted[rows, None, :count] + picks
    boot = np.sort(
        crossing_days(
            fit_recovery_curves(days, resampled, mask), thresholds, rules.plateau_proximity
        ),
        axis=1,
    )
    tail = (1 - rules.interval) / 2
    low_rank = math.floor(tail * (samples - 1))
    high_rank = math.ceil((1 - tail) * (samples - 1))

    horizon = add_months(as_of, 12 * rules.horizon_years)
    forecasts: list[Forecast | None] = []
    for row, s in enumerate(series):
        limit = (horizon - s.peak_date).days
        centre = float(point[row])
        if not math.isfinite(centre) or _whole_days(centre) > limit:
            forecasts.append(None)
            continue
        low = min(float(boot[row, low_rank]), centre)
        high = min(max(float(boot[row, high_rank]), centre), float(limit))
        forecasts.append(
            Forecast(
                date=s.peak_date + timedelta(days=_whole_days(centre)),
                low=s.peak_date + timedelta(days=_whole_days(low)),
                high=s.peak_date + timedelta(days=_whole_days(high)),
            )
        )
    return forecasts


def forecast_recovery(series: RecoverySeries, as_of: date, rules: ForecastRules) -> Forecast | None:
    """One site's forecast: the batched path with a batch of one."""
    return forecast_recoveries([series], as_of, rules)[0]


def _whole_days(days: float) -> int:
    """The first whole day on which the curve has reached its target."""
    return max(0, math.ceil(days - _DAY_SLACK))
