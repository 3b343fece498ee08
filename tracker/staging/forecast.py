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

# Decay rates searched: time constants from 5 days to about 8 years, 200 log-spaced
# points (steps of 3%). The search runs coarse to fine, every 8th point first (steps
# of 29%), then the 15 points between the best one's coarse neighbours (which lose to
# it, so need no second look): a fifth of the work of a full search, and on the
# synthetic cohort the very same forecasts.
_LOG_K_GRID = np.linspace(math.log(1 / 3000), math.log(1 / 5), 200)
K_GRID: Array = np.exp(_LOG_K_GRID)
_LOG_K_STEP = float(_LOG_K_GRID[1] - _LOG_K_GRID[0])
_COARSE = 8
_COARSE_INDEX = np.arange(0, K_GRID.size, _COARSE)
_FINE_OFFSETS = np.arange(-_COARSE + 1, _COARSE)
MIN_POINTS = 4  # delayed-phase ratios from the peak onward (model-spec section 7, v2)
_DAY_SLACK = 1e-9  # a crossing computed as 41.999999999 days is day 42, not 43
_FAR_DAYS = 1e12  # further than any horizon (ForecastRules allows 100 years)
_CHUNK_VALUES = 200_000  # values per (sites x samples x grid) array: cache-sized chunks


@dataclass(frozen=True, slots=True)
class Forecast:
    """The forecast day and its interval (low <= date <= high, low < high).

    `passed` is true when the day is before as_of: the curve says the site should
    have stabilised already, so it needs a new scan (and is not "stabilising soon").
    """

    date: datetime.date
    low: datetime.date
    high: datetime.date
    passed: bool


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
    """The ratios from the (latest) peak onward, or None with fewer than MIN_POINTS."""
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


def _constrained_least_squares(
    sums: dict[str, Array], coefficients: bool = True
) -> tuple[Array | None, Array | None, Array]:
    """Least-squares a, b of y ~ a + b z with a >= 0, b >= 0, from the normal sums,
    and the squared error (inf for a series without points).

    If the unconstrained optimum leaves the quadrant, the constrained one lies on
    its boundary: the better of a = 0 and b = 0. At each of these optima the normal
    equations make the squared error syy - a sy - b szy, which is cheaper than
    expanding it and just as exact. Arrays of a grid search are large, so the work
    is done in place in a few buffers; without `coefficients` only the error is
    returned (a and b are None).
    """
    n, sz, szz, sy, szy, syy = (sums[key] for key in ("n", "sz", "szz", "sy", "szy", "syy"))
    with np.errstate(divide="ignore", invalid="ignore"):
        det = n * szz - sz * sz
        b_free = np.multiply(n, szy)
        work = np.multiply(sz, sy)
        b_free -= work
        b_free /= det
        np.multiply(b_free, sz, out=work)
        a_free = np.subtract(sy, work)
        a_free /= n
        sse = np.multiply(a_free, sy)
        np.subtract(syy, sse, out=sse)
        np.multiply(b_free, szy, out=work)
        sse -= work  # the unconstrained optimum's error
        inside = (det > 0) & (a_free >= 0) & (b_free >= 0)
        b_only = np.divide(szy, szz)  # a = 0
        np.maximum(b_only, 0.0, out=b_only)
        np.multiply(b_only, szy, out=work)
        np.subtract(syy, work, out=work)  # error with a = 0
        a_only = np.maximum(sy / n, 0.0)  # b = 0
        sse_a_only = syy - a_only * sy
        use_b_only = work <= sse_a_only
        boundary = np.where(use_b_only, work, sse_a_only)
    np.copyto(sse, boundary, where=~inside)
    sse[np.isnan(sse)] = np.inf
    if not coefficients:
        return None, None, sse
    np.copyto(a_free, np.where(use_b_only, 0.0, a_only), where=~inside)
    np.copyto(b_free, np.where(use_b_only, b_only, 0.0), where=~inside)
    return a_free, b_free, sse


def _normal_sums(days: Array, ratios: Array, mask: Array, k: Array) -> dict[str, Array]:
    """Sums over each series' points of 1, z, z^2, y, z y, y^2 with z = exp(-k t).

    days, mask: (S, P); ratios: (S, R, P); k broadcasts against (S, R, K). Summed
    column by column so that padding adds exact zeros (see the module docstring).
    """
    sites, series, points = ratios.shape
    z_shape = np.broadcast_shapes((sites, 1, 1), k.shape)
    y_shape = (sites, series, 1)
    zy_shape = np.broadcast_shapes(z_shape, y_shape)
    n, sy, syy = np.zeros((sites, 1, 1)), np.zeros(y_shape), np.zeros(y_shape)
    sz, szz, szy = np.zeros(z_shape), np.zeros(z_shape), np.zeros(zy_shape)
    z, zm, zy = np.empty(z_shape), np.empty(z_shape), np.empty(zy_shape)
    for j in range(points):
        m = mask[:, j, None, None]
        np.multiply(days[:, j, None, None], k, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        np.multiply(z, m, out=zm)
        y = ratios[:, :, j, None]
        ym = y * m
        n += m
        sz += zm
        zm *= z
        szz += zm
        sy += ym
        syy += ym * y
        np.multiply(ym, z, out=zy)
        szy += zy
    return {"n": n, "sz": sz, "szz": szz, "sy": sy, "syy": syy, "szy": szy}


def fit_recovery_curves(days: Array, ratios: Array, mask: Array) -> CurveFits:
    """Fit r(t) = a + b exp(-k t) to every series of a padded batch.

    days: (S, P) days from each site's peak; mask: (S, P), 1 for a point, 0 for
    padding (padding holds zeros); ratios: (S, R, P), R series per site sharing that
    site's days (R = 1 for the observed series, R = B for bootstrap resamples).
    k is chosen on a log-spaced grid, coarse to fine: every `_COARSE`th grid point
    first, then every point between the best one's coarse neighbours; the best is refined
    by a parabola through it and its neighbours (kept only if it lowers the error);
    a and b are the constrained least-squares solution for that k. Returns arrays of
    shape (S, R); a series without points gives NaN.
    """

    def error_at(k_index: NDArray[np.int64]) -> Array:
        sums = _normal_sums(days, ratios, mask, K_GRID[k_index])
        return _constrained_least_squares(sums, coefficients=False)[2]

    def fit_at(k: Array) -> tuple[Array, Array, Array]:
        a, b, sse = _constrained_least_squares(_normal_sums(days, ratios, mask, k))
        assert a is not None and b is not None
        return a, b, sse

    last = K_GRID.size - 1
    coarse_best = np.argmin(error_at(_COARSE_INDEX[None, None, :]), axis=-1)[..., None]
    window = np.clip(_COARSE_INDEX[coarse_best] + _FINE_OFFSETS, 0, last)
    best = np.take_along_axis(window, np.argmin(error_at(window), axis=-1)[..., None], -1)

    centre = np.clip(best, 1, last - 1)
    a3, b3, sse3 = fit_at(K_GRID[centre + np.array([-1, 0, 1])])
    below, mid, over = sse3[..., :1], sse3[..., 1:2], sse3[..., 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = below - 2 * mid + over
        offset = np.where(curvature > 0, 0.5 * (below - over) / curvature, 0.0)
    offset = np.clip(np.nan_to_num(offset), -1.0, 1.0)
    k_refined = np.exp(_LOG_K_GRID[centre] + offset * _LOG_K_STEP)
    a_ref, b_ref, sse_ref = fit_at(k_refined)

    at_best = best - centre + 1  # where the best grid point sits among the three

    def pick(values: Array) -> Array:
        return np.take_along_axis(values, at_best, -1)

    better = sse_ref < pick(sse3)
    sse = np.where(better, sse_ref, pick(sse3))
    return CurveFits(
        a=np.where(better, a_ref, pick(a3))[..., 0],
        b=np.where(better, b_ref, pick(b3))[..., 0],
        k=np.where(better, k_refined, K_GRID[best])[..., 0],
        sse=sse[..., 0],
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
    """Forecasts for many sites at once; each equals its own batch-of-one answer."""
    if not series:
        return []
    sites, width = len(series), max(len(s.days) for s in series)
    days, mask, ratios = (
        np.zeros((sites, width)),
        np.zeros((sites, width)),
        np.zeros((sites, width)),
    )
    for row, s in enumerate(series):
        count = len(s.days)
        days[row, :count] = s.days
        mask[row, :count] = 1.0
        ratios[row, :count] = s.ratios
    thresholds = np.array([np.nan if s.threshold is None else s.threshold for s in series])
    horizon = add_months(as_of, 12 * rules.horizon_years)
    limits = np.array([(horizon - s.peak_date).days for s in series], dtype=np.int64)
    found, centre, low, high = forecast_offsets(days, ratios, mask, thresholds, limits, rules)
    forecasts: list[Forecast | None] = []
    for row, s in enumerate(series):
        if not found[row]:
            forecasts.append(None)
            continue
        when = s.peak_date + timedelta(days=int(centre[row]))
        forecasts.append(
            Forecast(
                date=when,
                low=s.peak_date + timedelta(days=int(low[row])),
                high=s.peak_date + timedelta(days=int(high[row])),
                passed=when < as_of,
            )
        )
    return forecasts


def forecast_offsets(
    days: Array,
    ratios: Array,
    mask: Array,
    thresholds: Array,
    limits: NDArray[np.int64],
    rules: ForecastRules,
) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The batched forecast: whole days from each site's peak to its forecast day and to
    the ends of its interval. Both the one-patient path and the cohort run call this.

    days, ratios, mask: (S, P) as in `fit_recovery_curves` (one series per site, points
    left-aligned);
    thresholds: (S,) Kim thresholds, NaN where none applies; limits: (S,) the last day
    from the peak a forecast may fall on (the horizon). Returns found (S,) and centre,
    low, high (S,), which are 0 where nothing was found: no crossing, a crossing beyond
    the horizon, or an interval of zero width (the resampling gave no spread, v2), so
    that low <= centre <= high and low < high wherever found. Sites are fitted in chunks of
    similar length, which bounds memory (sites x bootstrap_samples x grid) and changes
    no answer (see the module docstring).
    """
    sites = days.shape[0]
    counts = mask.sum(axis=1).astype(np.int64)
    point, boot_low, boot_high = np.full(sites, np.inf), np.zeros(sites), np.zeros(sites)
    chunk = max(1, _CHUNK_VALUES // (rules.bootstrap_samples * _COARSE_INDEX.size))
    order = np.argsort(counts, kind="stable")
    for first in range(0, sites, chunk):
        rows = order[first : first + chunk]
        width = max(1, int(counts[rows].max()))
        point[rows], boot_low[rows], boot_high[rows] = _forecast_chunk(
            days[rows, :width], ratios[rows, :width], mask[rows, :width], thresholds[rows], rules
        )
    finite = np.isfinite(point)
    centre = _whole_days(np.where(finite, point, 0.0))
    low = _whole_days(np.minimum(boot_low, np.where(finite, point, 0.0)))
    high = _whole_days(np.minimum(np.maximum(boot_high, point), limits.astype(np.float64)))
    found = finite & (centre <= limits) & (low < high)
    zero = np.zeros(sites, dtype=np.int64)
    return (
        found,
        np.where(found, centre, zero),
        np.where(found, low, zero),
        np.where(found, high, zero),
    )


def _forecast_chunk(
    days: Array, ratios: Array, mask: Array, thresholds: Array, rules: ForecastRules
) -> tuple[Array, Array, Array]:
    """The point crossing and the interval's bootstrap crossings of a few sites."""
    sites, width = days.shape
    observed = ratios[:, None, :]
    fits = fit_recovery_curves(days, observed, mask)
    point = crossing_days(fits, thresholds, rules.plateau_proximity)[:, 0]

    samples = rules.bootstrap_samples
    counts = mask.sum(axis=1).astype(np.int64)
    fitted = fits.a[:, :1] + fits.b[:, :1] * np.exp(-(days * fits.k[:, :1]))
    residuals = (ratios - fitted) * mask
    resampled = np.zeros((sites, samples, width))
    for count in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == count)
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
    return point, boot[:, low_rank], boot[:, high_rank]


def forecast_recovery(series: RecoverySeries, as_of: date, rules: ForecastRules) -> Forecast | None:
    """One site's forecast: the batched path with a batch of one."""
    return forecast_recoveries([series], as_of, rules)[0]


def _whole_days(days: Array) -> NDArray[np.int64]:
    """The first whole day on which the curve has reached its target (capped far beyond
    any horizon, so that a curve crawling towards its target cannot overflow)."""
    return np.clip(np.ceil(days - _DAY_SLACK), 0.0, _FAR_DAYS).astype(np.int64)
