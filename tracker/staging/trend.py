"""What a site's maturation trend is made of, in the core's own terms (for figures).

A trend figure must show what the engine saw, never a second opinion: the dates on
which each stage was first shown (`stage.dated_stages`), the site's history split
at its resections the way `records.site_evidence` splits it (model-spec section 3),
and the recovery curve the forecast was computed from (the same batched fit of
`forecast.fit_recovery_curves`, as a batch of one; section 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from tracker.protocol import StageRules
from tracker.staging.forecast import RecoverySeries, fit_recovery_curves
from tracker.staging.records import PatientRecords, SiteEvidence, SiteKey, site_evidence
from tracker.staging.stage import Stage, dated_stages
from tracker.vocab import ProcedureKind


@dataclass(frozen=True, slots=True)
class FittedCurve:
    """r(t) = a + b * exp(-k t), t in days from the peak of the recovery series."""

    peak_date: date
    a: float
    b: float
    k: float
    threshold: float | None  # the site's Kim threshold, None where none applies

    def ratio_at(self, days_from_peak: float) -> float:
        return self.a + self.b * math.exp(-self.k * days_from_peak)


def fitted_curve(series: RecoverySeries) -> FittedCurve | None:
    """The curve the site's forecast comes from, or None when the fit fails.

    Batch invariance (see `forecast`) makes a batch of one give exactly the
    parameters the patient's batched forecast used.
    """
    count = len(series.days)
    if count == 0:
        return None
    days = np.array([series.days], dtype=np.float64)
    ratios = np.array([[series.ratios]], dtype=np.float64)
    fits = fit_recovery_curves(days, ratios, np.ones((1, count)))
    a, b, k = (float(values[0, 0]) for values in (fits.a, fits.b, fits.k))
    if not all(math.isfinite(v) for v in (a, b, k)):
        return None
    return FittedCurve(peak_date=series.peak_date, a=a, b=b, k=k, threshold=series.threshold)


def stage_onsets(evidence: SiteEvidence, rules: StageRules) -> tuple[tuple[Stage, date], ...]:
    """The day the site first showed each stage beyond none, in order of stage.

    A stage reached without the one below it ever being shown (a first radiograph that
    already shows calcification) has no period of its own; the last onset is the
    site's stage (lesions do not un-mature, model-spec section 3).
    """
    onsets: list[tuple[Stage, date]] = []
    reached = Stage.none
    for day, stage in dated_stages(evidence, rules):
        if stage.rank > reached.rank:
            onsets.append((stage, day))
            reached = stage
    return tuple(onsets)


def site_episodes(cut: PatientRecords, key: SiteKey) -> tuple[SiteEvidence, ...]:
    """A site's history in records already cut at as_of, split at its resections.

    The last episode is the evidence that counts today (`site_evidence`); each earlier
    one is the evidence after the resection before it, up to and including the day of
    the resection that ended it (its `resected_on` is the resection it follows).
    """
    site, side = key
    resections = sorted(
        {
            p.date
            for p in cut.procedures
            if p.kind == ProcedureKind.resection and p.site == site and p.side == side
        }
    )
    episodes = []
    for ended in resections:
        before = replace(
            cut,
            findings=tuple(f for f in cut.findings if f.date <= ended),
            bone_scans=tuple(s for s in cut.bone_scans if s.date <= ended),
            procedures=tuple(p for p in cut.procedures if p.date < ended),
        )
        episodes.append(site_evidence(before, key))
    episodes.append(site_evidence(cut, key))
    return tuple(episodes)
