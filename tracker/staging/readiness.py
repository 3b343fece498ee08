"""Readiness for resection: five criteria and their verdict (model-spec section 5).

Each criterion carries one line of evidence a surgeon can check against the chart:
which study or result, which value, which date.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from tracker.protocol import CriterionName, Level, Protocol, ReadinessRules, WaitingMonths
from tracker.staging.activity import Activity, DailyRatio, above, at_most, relative_changes
from tracker.staging.records import Finding, Injury, Lab, SiteEvidence
from tracker.staging.stage import Stage, finding_stage
from tracker.vocab import CORTEX_MODALITIES, Analyte, Cortex, InjuryKind


class Status(StrEnum):
    met = "met"
    unmet = "unmet"
    unknown = "unknown"


class Readiness(StrEnum):
    ready = "ready"
    not_ready = "not_ready"
    insufficient_data = "insufficient_data"
    not_applicable = "not_applicable"  # stage none: there is no lesion to resect (v2)


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str  # CriterionName
    status: Status
    level: Level
    evidence: str


# --- calendar ---


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` calendar months later, or the month's last
    day when it is shorter (2024-01-31 + 1 month = 2024-02-29)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def whole_months_between(start: date, end: date) -> int:
    """Calendar months completed from start to end: the largest m with
    add_months(start, m) <= end (0 if end is before start)."""
    months = max(0, (end.year - start.year) * 12 + end.month - start.month)
    while months > 0 and add_months(start, months) > end:
        months -= 1
    return months


# --- helpers for evidence texts ---


def number(value: float) -> str:
    """A lab value as people write it: 130, 95.5."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _ratio(point: DailyRatio) -> str:
    return f"{point.ratio:.2f} ({point.date.isoformat()})"


def _threshold(value: float) -> str:
    """A ratio threshold as the spec writes it: 3.0, 2.25."""
    return repr(float(value))


# --- the criteria ---


def kim_threshold(initial: float, rules: ReadinessRules) -> float | None:
    """The Kim final-ratio threshold for an initial ratio, or None below both bands."""
    if above(initial, rules.kim_high_initial):
        return rules.kim_high_final
    if above(initial, rules.kim_low_initial):
        return rules.kim_low_final
    return None


def radiographic_maturity(evidence: SiteEvidence, stage: Stage) -> tuple[Status, str]:
    cortex_findings = [f for f in evidence.findings if f.modality in CORTEX_MODALITIES]
    if not cortex_findings:
        return Status.unknown, f"no radiograph, ct or mri of this site{evidence.since}"
    if stage == Stage.mature:
        mature = [f for f in cortex_findings if finding_stage(f) == Stage.mature]
        return Status.met, f"{_study(mature[-1])}: well-defined cortex"
    latest = cortex_findings[-1]
    words = {Cortex.partial.value: "partial cortex", Cortex.none.value: "no cortex"}
    cortex = words.get(str(latest.cortex), "cortex not recorded")
    return Status.unmet, f"{_study(latest)}: {cortex}; stage {stage.value}, not mature"


def _study(finding: Finding) -> str:
    return f"{finding.modality} {finding.date.isoformat()}"


def scan_stabilised(
    series: Sequence[DailyRatio],
    activity: Activity,
    as_of: date,
    rules: ReadinessRules,
    since: str = "",
) -> tuple[Status, str]:
    if not series:
        return Status.unknown, f"no delayed-phase bone scan of this site{since}"
    if len(series) == 1:
        return Status.unknown, f"one delayed-phase ratio {_ratio(series[0])}; two or more needed"
    first, latest = series[0], series[-1]
    age = (as_of - latest.date).days
    if age > rules.scan_recency_days:
        return Status.unknown, (
            f"latest delayed-phase ratio {_ratio(latest)} is {age} days old; "
            f"limit {rules.scan_recency_days}"
        )
    trend = f"delayed-phase ratio {_ratio(first)} -> {_ratio(latest)}"
    if activity == Activity.rising:
        change = relative_changes([p.ratio for p in series])[-1]
        return Status.unmet, f"{trend}; rising {change:+.0%} since {series[-2].date.isoformat()}"
    threshold = kim_threshold(first.ratio, rules)
    if threshold is not None and at_most(latest.ratio, threshold):
        return Status.met, f"{trend}; at or below Kim threshold {_threshold(threshold)}"
    if activity == Activity.plateau:
        return Status.met, f"{trend}; plateau"
    if threshold is None:
        kim = f"initial ratio {_threshold(rules.kim_low_initial)} or less, no Kim threshold"
    else:
        kim = f"above Kim threshold {_threshold(threshold)}"
    return Status.unmet, f"{trend}; {kim}; {activity.value}, not plateau"


def upper_limit(lab: Lab, rules: ReadinessRules) -> tuple[float | None, bool]:
    """A result's upper limit and whether it is the lab's own: its ref_high, else the
    protocol's default upper limit for its analyte and unit (v2), else None."""
    if lab.ref_high is not None:
        return float(lab.ref_high), True
    return rules.default_upper_limits.of(lab.analyte, lab.unit), False


def alp_normal(labs: Sequence[Lab], as_of: date, rules: ReadinessRules) -> tuple[Status, str]:
    """The patient's latest alp or bone_alp result within the window decides.

    Its upper limit is its own ref_high, else the protocol's default for its analyte
    and unit, else it cannot be judged (unknown: "no reference range"). Two results on
    that latest day (say alp and bone_alp) are read together: any elevated one makes
    the criterion unmet, else any judged one makes it met, else it is unknown; among
    several, the first in canonical record order speaks. The evidence names the limit
    and where it came from.
    """
    window = rules.alp_window_days
    recent = [
        lab
        for lab in labs
        if lab.analyte in (Analyte.alp, Analyte.bone_alp) and 0 <= (as_of - lab.date).days <= window
    ]
    if not recent:
        return Status.unknown, f"no alp or bone_alp result in the {window} days before as_of"
    latest_day = max(lab.date for lab in recent)
    latest = [(lab, *upper_limit(lab, rules)) for lab in recent if lab.date == latest_day]
    elevated = [
        (lab, limit, own) for lab, limit, own in latest if limit is not None and lab.value > limit
    ]
    judged = [(lab, limit, own) for lab, limit, own in latest if limit is not None]
    if elevated:
        return Status.unmet, _lab_text(*elevated[0], above=True)
    if judged:
        return Status.met, _lab_text(*judged[0], above=False)
    return Status.unknown, _lab_text(latest[0][0], None, False, above=False)


def _lab_text(lab: Lab, limit: float | None, own: bool, *, above: bool) -> str:
    unit = f" {lab.unit}" if lab.unit else ""
    if limit is None:
        in_unit = f"in {lab.unit}" if lab.unit else "without a unit"
        words = (
            f"no reference range; the protocol has no default upper limit for "
            f"{lab.analyte} {in_unit}"
        )
    else:
        relation = "above" if above else "at or below"
        if own:
            words = f"{relation} its reference upper limit {number(limit)}"
        else:
            words = f"{relation} {number(limit)}, the protocol's default upper limit for {lab.unit}"
    return f"{lab.analyte} {number(lab.value)}{unit} on {lab.date.isoformat()} ({words})"


def time_since_injury(
    injuries: Sequence[Injury],
    first_evidence: date | None,
    as_of: date,
    waiting: WaitingMonths,
) -> tuple[Status, str]:
    """Advisory: every injury on or before the site's first evidence is at least its
    kind's waiting time before as_of (calendar months: as_of >= injury date + N
    months, see `add_months`)."""
    if not injuries:
        return Status.unknown, "no injury recorded"
    reference = first_evidence or as_of
    causes = _waiting_causes(injuries, reference, waiting)
    if not causes:
        # As model-spec section 5 is written, "every injury on or before the first
        # evidence" over no injuries holds: met, with the evidence saying why.
        return Status.met, (
            f"no injury with a waiting time on or before the site's first evidence "
            f"{reference.isoformat()}"
        )
    parts, all_waited = [], True
    for injury in sorted(causes, key=lambda i: (i.date, str(i.kind))):
        months = waiting.of(injury.kind)
        assert months is not None
        waited = as_of >= add_months(injury.date, months)
        all_waited &= waited
        since = whole_months_between(injury.date, as_of)
        parts.append(
            f"{injury.kind} {injury.date.isoformat()}: {since} months since injury, "
            f"{months} advised"
        )
    return (Status.met if all_waited else Status.unmet), "; ".join(parts)


def _waiting_causes(
    injuries: Sequence[Injury], reference: date, waiting: WaitingMonths
) -> list[Injury]:
    """The injuries time_since_injury weighs: on or before the site's first evidence,
    of a kind with a waiting time."""
    return [i for i in injuries if i.date <= reference and waiting.of(i.kind) is not None]


def waiting_time_end(
    injuries: Sequence[Injury], first_evidence: date | None, as_of: date, waiting: WaitingMonths
) -> date | None:
    """The first day on which time_since_injury is met for a site (it is met on as_of
    exactly when as_of is on or after this day): the latest of injury date + waiting
    months over the injuries it weighs; None when it weighs none (or there are none)."""
    causes = _waiting_causes(injuries, first_evidence or as_of, waiting)
    ends = [add_months(i.date, waiting.of(i.kind) or 0) for i in causes]
    return max(ends, default=None)


def not_genetic_ho(injuries: Sequence[Injury]) -> tuple[Status, str]:
    fop = [i for i in injuries if i.kind == InjuryKind.fop]
    if fop:
        return Status.unmet, (
            f"fop recorded {min(i.date for i in fop).isoformat()}: "
            "surgery can trigger flare-ups; never resect"
        )
    return Status.met, "no fop recorded"


# --- the verdict ---


def site_criteria(
    *,
    evidence: SiteEvidence,
    stage: Stage,
    series: Sequence[DailyRatio],
    activity: Activity,
    injuries: Sequence[Injury],
    labs: Sequence[Lab],
    as_of: date,
    protocol: Protocol,
) -> tuple[Criterion, ...]:
    """The five criteria of one site, in the order of the spec's table.

    Injuries and labs are the patient's, already cut at as_of.
    """
    rules = protocol.readiness
    results = {
        CriterionName.radiographic_maturity: radiographic_maturity(evidence, stage),
        CriterionName.scan_stabilised: scan_stabilised(
            series, activity, as_of, rules, evidence.since
        ),
        CriterionName.alp_normal: alp_normal(labs, as_of, rules),
        CriterionName.time_since_injury: time_since_injury(
            injuries, evidence.first_date, as_of, protocol.waiting_months
        ),
        CriterionName.not_genetic_ho: not_genetic_ho(injuries),
    }
    return tuple(
        Criterion(name=name.value, status=status, level=rules.levels.of(name), evidence=text)
        for name, (status, text) in ((name, results[name]) for name in CriterionName)
    )


def readiness_verdict(stage: Stage, criteria: Sequence[Criterion]) -> Readiness:
    """not_applicable at stage none (no lesion to resect; v2); else not_ready on any
    unmet required(-if-known) criterion; else insufficient_data on any unknown
    required criterion; else ready."""
    if stage == Stage.none:
        return Readiness.not_applicable
    gating = (Level.required, Level.required_if_known)
    if any(c.status == Status.unmet and c.level in gating for c in criteria):
        return Readiness.not_ready
    if any(c.status == Status.unknown and c.level == Level.required for c in criteria):
        return Readiness.insufficient_data
    return Readiness.ready
