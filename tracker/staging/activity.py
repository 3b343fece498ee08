"""Activity from quantitative bone scans (model-spec section 4).

Ratios are recorded to a few decimals, but binary floating point does not hold
most decimals exactly: 2.0 -> 2.2 is a change of 0.10000000000000009, not 0.10.
Every comparison of a ratio or a relative change with a threshold therefore allows
`RATIO_SLACK`, so a value recorded exactly at a threshold falls on the side the
spec intends (at the tolerance is not rising; at a Kim threshold is stabilised).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from tracker.staging.records import BoneScan
from tracker.vocab import Phase

RATIO_SLACK = 1e-9


def above(value: float, limit: float) -> bool:
    """value > limit, beyond floating-point noise."""
    return value > limit + RATIO_SLACK


def at_most(value: float, limit: float) -> bool:
    """value <= limit, allowing floating-point noise."""
    return not above(value, limit)


class Activity(StrEnum):
    none = "none"
    single_scan = "single_scan"
    rising = "rising"
    plateau = "plateau"
    declining = "declining"
    indeterminate = "indeterminate"


@dataclass(frozen=True, slots=True)
class DailyRatio:
    """A delayed-phase uptake ratio for one day (same-day values averaged)."""

    date: date
    ratio: float


def delayed_series(scans: Iterable[BoneScan]) -> tuple[DailyRatio, ...]:
    """The delayed-phase ratios r1..rn in date order, same-day values averaged.

    The day's values are summed in ascending order, so the average is the same
    whatever order the measurements were recorded in.
    """
    by_day: dict[date, list[float]] = defaultdict(list)
    for scan in scans:
        if scan.phase == Phase.delayed and scan.ratio is not None:
            by_day[scan.date].append(float(scan.ratio))
    return tuple(
        DailyRatio(day, sum(sorted(values)) / len(values)) for day, values in sorted(by_day.items())
    )


def relative_changes(ratios: Sequence[float]) -> list[float]:
    """d_i = (r_i - r_(i-1)) / r_(i-1) for i = 2..n."""
    return [(ratios[i] - ratios[i - 1]) / ratios[i - 1] for i in range(1, len(ratios))]


def classify_activity(ratios: Sequence[float], tolerance: float) -> Activity:
    """The spec's rules in order: none, single_scan, rising, plateau, declining."""
    if not ratios:
        return Activity.none
    if len(ratios) == 1:
        return Activity.single_scan
    changes = relative_changes(ratios)
    last = changes[-1]
    if above(last, tolerance):
        return Activity.rising
    if len(ratios) >= 3 and at_most(abs(last), tolerance) and at_most(abs(changes[-2]), tolerance):
        return Activity.plateau
    if above(-last, tolerance) or ratios[-1] < max(ratios):
        return Activity.declining
    return Activity.indeterminate
