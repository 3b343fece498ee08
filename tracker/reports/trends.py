"""What a patient's trend figure shows, gathered from the engine (model-spec 3-7).

Nothing here decides a stage, an activity, a criterion or a forecast: the site's
assessment comes from `staging.assess_patient`, stage onsets from
`staging.trend.stage_onsets`, the ratio series from `staging.delayed_series`, the
Kim threshold from `staging.readiness.kim_threshold`, the curve from the forecast's
own fit and the advised waiting time from `staging.readiness.waiting_time_end`.
This module only puts those answers side by side, site by site, for drawing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date

from tracker.protocol import Protocol
from tracker.staging import PatientAssessment, PatientRecords, SiteAssessment
from tracker.staging.activity import DailyRatio, delayed_series
from tracker.staging.assess import forecast_applies
from tracker.staging.forecast import recovery_series
from tracker.staging.readiness import kim_threshold, waiting_time_end
from tracker.staging.records import BoneScan, Course, Injury, RangeOfMotion, as_of_cut
from tracker.staging.stage import Stage, finding_stage
from tracker.staging.trend import FittedCurve, fitted_curve, site_episodes, stage_onsets
from tracker.vocab import Movement, Phase, ProcedureKind


@dataclass(frozen=True, slots=True)
class StudyMark:
    """An imaging study with a finding at the site, and the stage that finding showed."""

    date: date
    modality: str
    stage: Stage


@dataclass(frozen=True, slots=True)
class Episode:
    """The site's story between resections (model-spec section 3: a resection starts
    the site afresh). The last episode is the one assessed on as_of."""

    follows: date | None  # the resection this episode follows, if any
    ends: date  # the resection that ended it, or as_of
    delayed: tuple[DailyRatio, ...]  # the engine's delayed-phase series
    onsets: tuple[tuple[Stage, date], ...]  # the day each stage was first shown


@dataclass(frozen=True, slots=True)
class CourseSpan:
    """A treatment course drawn as a labelled span; on every panel unless it names a site."""

    label: str
    start: date
    end: date | None  # None while ongoing (drawn up to as_of)
    site: str | None = None
    side: str | None = None

    def applies_to(self, site: str, side: str) -> bool:
        return self.site is None or (self.site == site and self.side in (None, side))


@dataclass(frozen=True, slots=True)
class MotionPoint:
    """One goniometer measurement of a movement (model-spec v2, section 10)."""

    date: date
    degrees: float


@dataclass(frozen=True, slots=True)
class MotionSeries:
    """A movement's range of motion at the site over time, in date order."""

    movement: str  # Movement
    points: tuple[MotionPoint, ...]


@dataclass(frozen=True, slots=True)
class MotionChange:
    """One movement around a resection: the last measurement on or before it (since
    any earlier resection) and the latest after it (up to the next one, or as_of)."""

    movement: str  # Movement
    before: MotionPoint | None
    after: MotionPoint | None

    @property
    def change(self) -> float | None:
        """Degrees gained (positive) or lost (negative); None unless both are measured."""
        if self.before is None or self.after is None:
            return None
        return self.after.degrees - self.before.degrees


@dataclass(frozen=True, slots=True)
class ResectionMotion:
    """The range of motion before and after one resection of the site; no changes when
    the site's range of motion was never measured."""

    resected_on: date
    changes: tuple[MotionChange, ...]


@dataclass(frozen=True, slots=True)
class SiteTrend:
    site: str
    side: str
    assessment: SiteAssessment
    episodes: tuple[Episode, ...]
    blood_pool: tuple[DailyRatio, ...]
    flow: tuple[DailyRatio, ...]
    studies: tuple[StudyMark, ...]
    resections: tuple[date, ...]
    threshold: float | None  # the Kim threshold of the episode assessed on as_of
    curve: FittedCurve | None  # the recovery curve, where the engine fits one
    waiting_until: date | None  # the day the advisory waiting time is met
    injury: Injury | None  # the injury months are counted from
    # range of motion at the site, one series per movement in the vocabulary's order
    motion: tuple[MotionSeries, ...] = ()

    @property
    def delayed(self) -> tuple[DailyRatio, ...]:
        """The delayed-phase series assessed on as_of (after the latest resection)."""
        return self.episodes[-1].delayed

    @property
    def has_ratios(self) -> bool:
        return bool(self.blood_pool or self.flow or any(e.delayed for e in self.episodes))

    @property
    def first_date(self) -> date:
        dates = [s.date for s in self.studies]
        dates += [p.date for e in self.episodes for p in e.delayed]
        dates += [p.date for p in (*self.blood_pool, *self.flow)]
        dates += [d for e in self.episodes for _, d in e.onsets]
        return min(dates, default=self.episodes[-1].ends)


@dataclass(frozen=True, slots=True)
class PatientTrend:
    mrn: str
    as_of: date
    injuries: tuple[Injury, ...]
    courses: tuple[CourseSpan, ...]
    sites: tuple[SiteTrend, ...]  # in the assessment's order


def course_label(agent: str, intent: str) -> str:
    """ "etidronate (treatment)", "radiotherapy (post-resection)"."""
    name = "other agent" if agent == "other" else agent.replace("_", " ")
    return f"{name} ({intent.replace('_', '-')})"


def course_spans(courses: Sequence[Course], as_of: date) -> tuple[CourseSpan, ...]:
    """Spans for staging courses (which carry no site: they show on every panel); a
    course that ends after as_of was still running on as_of."""
    return tuple(
        CourseSpan(
            label=course_label(c.agent, c.intent),
            start=c.start_date,
            end=c.end_date if c.end_date is not None and c.end_date <= as_of else None,
        )
        for c in sorted(courses, key=lambda c: (c.start_date, str(c.agent)))
        if c.start_date <= as_of
    )


def patient_trend(
    records: PatientRecords,
    assessment: PatientAssessment,
    protocol: Protocol,
    courses: Sequence[CourseSpan] | None = None,
    motion: Sequence[RangeOfMotion] | None = None,
) -> PatientTrend:
    """Every assessed site's trend; `courses` default to the records' own (no site),
    `motion` (range-of-motion measurements) to the records' own."""
    as_of = assessment.as_of
    cut = as_of_cut(records, as_of)
    spans = tuple(c for c in (courses or course_spans(cut.courses, as_of)) if c.start <= as_of)
    given = cut.range_of_motion if motion is None else motion
    measured = tuple(m for m in given if m.date <= as_of)  # later ones never count
    sites = tuple(
        replace(
            _site_trend(cut, site, as_of, protocol),
            motion=motion_series(measured, (site.site, site.side)),
        )
        for site in assessment.sites
    )
    return PatientTrend(
        mrn=assessment.mrn, as_of=as_of, injuries=cut.injuries, courses=spans, sites=sites
    )


def _site_trend(
    cut: PatientRecords, site: SiteAssessment, as_of: date, protocol: Protocol
) -> SiteTrend:
    key = (site.site, site.side)
    evidences = site_episodes(cut, key)
    ends = [later.resected_on or as_of for later in evidences[1:]] + [as_of]
    episodes = tuple(
        Episode(
            follows=evidence.resected_on,
            ends=end,
            delayed=delayed_series(evidence.bone_scans),
            onsets=stage_onsets(evidence, protocol.stage),
        )
        for evidence, end in zip(evidences, ends, strict=True)
    )
    current = evidences[-1]
    series = episodes[-1].delayed
    curve = None
    if forecast_applies(site.criteria, site.activity):
        recovery = recovery_series(series, protocol.readiness)
        curve = fitted_curve(recovery) if recovery is not None else None
    scans = [s for s in cut.bone_scans if (s.site, s.side) == key and s.ratio is not None]
    return SiteTrend(
        site=site.site,
        side=site.side,
        assessment=site,
        episodes=episodes,
        blood_pool=_points(s for s in scans if s.phase == Phase.blood_pool),
        flow=_points(s for s in scans if s.phase == Phase.flow),
        studies=_studies(cut, key),
        resections=tuple(
            sorted(
                {
                    p.date
                    for p in cut.procedures
                    if p.kind == ProcedureKind.resection and (p.site, p.side) == key
                }
            )
        ),
        threshold=kim_threshold(series[0].ratio, protocol.readiness) if series else None,
        curve=curve,
        waiting_until=waiting_time_end(
            cut.injuries, current.first_date, as_of, protocol.waiting_months
        ),
        injury=_reference_injury(cut.injuries, evidences[0].first_date),
    )


_MOVEMENT_ORDER = {m.value: n for n, m in enumerate(Movement)}


def motion_series(
    measured: Iterable[RangeOfMotion], key: tuple[str, str]
) -> tuple[MotionSeries, ...]:
    """The site's range of motion, a series per movement (the vocabulary's order), each
    in date order; one value a day (the largest, should a day have two)."""
    by_movement: dict[str, dict[date, float]] = {}
    for m in measured:
        if (m.site, m.side) == key:
            days = by_movement.setdefault(str(m.movement), {})
            days[m.date] = max(float(m.degrees), days.get(m.date, 0.0))
    return tuple(
        MotionSeries(movement, tuple(MotionPoint(d, v) for d, v in sorted(days.items())))
        for movement, days in sorted(
            by_movement.items(), key=lambda item: (_MOVEMENT_ORDER.get(item[0], 99), item[0])
        )
    )


def resection_motion(site: SiteTrend) -> tuple[ResectionMotion, ...]:
    """For each resection of the site, every movement measured there: the last value on
    or before the resection (after any earlier one) and the latest after it (up to and
    including the day of the next resection, when the next one's baseline is taken)."""
    resections = sorted(site.resections)
    outcomes = []
    for n, resected_on in enumerate(resections):
        earlier = resections[n - 1] if n else None
        later = resections[n + 1] if n + 1 < len(resections) else None
        changes = []
        for series in site.motion:
            before = [
                p
                for p in series.points
                if p.date <= resected_on and (earlier is None or p.date > earlier)
            ]
            after = [
                p
                for p in series.points
                if p.date > resected_on and (later is None or p.date <= later)
            ]
            changes.append(
                MotionChange(
                    series.movement,
                    before[-1] if before else None,
                    after[-1] if after else None,
                )
            )
        outcomes.append(ResectionMotion(resected_on, tuple(changes)))
    return tuple(outcomes)


def _points(scans: Iterable[BoneScan]) -> tuple[DailyRatio, ...]:
    """Secondary-phase ratios as recorded, in date order (display only)."""
    points = (DailyRatio(s.date, float(s.ratio or 0.0)) for s in scans)
    return tuple(sorted(points, key=lambda p: (p.date, p.ratio)))


def _studies(cut: PatientRecords, key: tuple[str, str]) -> tuple[StudyMark, ...]:
    """One mark per study (date, modality) with a finding at the site: the most
    advanced stage its findings there showed."""
    marks: dict[tuple[date, str], Stage] = {}
    for finding in cut.findings:
        if (finding.site, finding.side) != key:
            continue
        study = (finding.date, str(finding.modality))
        stage = finding_stage(finding)
        if study not in marks or stage.rank > marks[study].rank:
            marks[study] = stage
    return tuple(StudyMark(d, modality, stage) for (d, modality), stage in sorted(marks.items()))


def _reference_injury(injuries: Sequence[Injury], first: date | None) -> Injury | None:
    """Months are counted from the latest injury on or before the site's first
    evidence (the likely trigger), else from the earliest injury."""
    ordered = sorted(injuries, key=lambda i: (i.date, str(i.kind)))
    before = [i for i in ordered if first is None or i.date <= first]
    if before:
        return before[-1]
    return ordered[0] if ordered else None
