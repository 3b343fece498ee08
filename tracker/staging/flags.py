"""Flags a clinician should notice at a site (model-spec section 6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from enum import StrEnum

from tracker.protocol import FlagRules, StageRules
from tracker.staging.activity import Activity
from tracker.staging.records import (
    BoneScan,
    Course,
    Finding,
    Injury,
    PatientRecords,
    RangeOfMotion,
    SiteEvidence,
)
from tracker.staging.stage import Stage, dated_stages, della_valle_rank, evidence_stage
from tracker.vocab import InjuryKind, Intent


class Flag(StrEnum):
    genetic_ho = "genetic_ho"
    grade_increase = "grade_increase"
    new_site = "new_site"
    progression_after_treatment = "progression_after_treatment"
    recurrence = "recurrence"
    rising_activity = "rising_activity"
    rom_loss = "rom_loss"


# Degrees compared beyond floating-point noise: exactly 20% below is a loss.
ROM_SLACK = 1e-9


def first_ho_date(records: Iterable[Finding | BoneScan], rules: StageRules) -> date | None:
    """The first date any of these records shows HO (stage early or beyond)."""
    dates = [r.date for r in records if evidence_stage(r, rules) != Stage.none]
    return min(dates) if dates else None


def patient_first_ho_date(records: PatientRecords, rules: StageRules) -> date | None:
    """The patient's first HO evidence at any site, in records cut at as_of.

    Deliberately blind to resections: a site resected long ago still dates the
    patient's first HO, so a site appearing later is recognised as new.
    """
    return first_ho_date([*records.findings, *records.bone_scans], rules)


def site_first_ho_date(evidence: SiteEvidence, rules: StageRules) -> date | None:
    return first_ho_date([*evidence.findings, *evidence.bone_scans], rules)


def is_new_site(
    site_first: date | None,
    patient_first: date | None,
    resected_on: date | None,
    rules: FlagRules,
) -> bool:
    """The site's first HO evidence came more than the gap after the patient's first,
    and the site was never resected (by as_of): HO after a resection is a recurrence."""
    if site_first is None or patient_first is None or resected_on is not None:
        return False
    return (site_first - patient_first).days > rules.new_site_gap_days


def is_recurrence(site_first: date | None, resected_on: date | None) -> bool:
    """HO evidence at the site after its latest resection (its evidence is only what
    follows that resection, model-spec section 3)."""
    return site_first is not None and resected_on is not None and site_first > resected_on


def rom_loss_shown(latest: float, largest_earlier: float, fraction: float) -> bool:
    """Whether an arc of `latest` degrees is at least `fraction` below the largest
    earlier arc of the same movement (model-spec v2, section 6). The cohort path
    (`cohort_sites`) and the reminders compute exactly this expression."""
    return (
        largest_earlier > 0 and largest_earlier - latest >= fraction * largest_earlier - ROM_SLACK
    )


def rom_loss_movements(measurements: Sequence[RangeOfMotion], fraction: float) -> list[str]:
    """The movements whose latest measurement shows a loss of range: at least
    `fraction` below the largest measurement of that movement on an earlier day.

    `measurements` are one site's, already cut at as_of and after its latest
    resection (`SiteEvidence.range_of_motion`). Two values on the latest day (the
    store keeps one per day) count as the lower of them."""
    lost: list[str] = []
    for movement in sorted({str(m.movement) for m in measurements}):
        rows = [m for m in measurements if m.movement == movement]
        last = max(m.date for m in rows)
        latest = min(float(m.degrees) for m in rows if m.date == last)
        earlier = [float(m.degrees) for m in rows if m.date < last]
        if earlier and rom_loss_shown(latest, max(earlier), fraction):
            lost.append(movement)
    return lost


def grade_increase_dates(evidence: SiteEvidence) -> list[date]:
    """Dates on which a Brooker or Della Valle grade exceeds one recorded earlier."""
    increases: set[date] = set()
    grades: list[Callable[[Finding], int | None]] = [
        lambda f: f.brooker,
        lambda f: None if f.della_valle is None else della_valle_rank(f.della_valle),
    ]
    for grade in grades:
        graded = sorted((f.date, g) for f in evidence.findings if (g := grade(f)) is not None)
        for day, value in graded:
            if any(earlier < day and old < value for earlier, old in graded):
                increases.add(day)
    return sorted(increases)


def stage_advance_dates(evidence: SiteEvidence, rules: StageRules) -> list[date]:
    """Dates on which the site moves from early or mineralising to a later stage."""
    advances: list[date] = []
    reached = Stage.none
    stages = dated_stages(evidence, rules)
    for day in sorted({day for day, _ in stages}):
        today = max((s for d, s in stages if d == day), key=lambda s: s.rank)
        if reached in (Stage.early, Stage.mineralising) and today.rank > reached.rank:
            advances.append(day)
        if today.rank > reached.rank:
            reached = today
    return advances


def treatment_windows(
    courses: Sequence[Course], rules: FlagRules
) -> list[tuple[date, date | None]]:
    """(start, last day) of each treatment course's watch: after the start and up to
    `progression_window_days` after the end; an ongoing course (no end date) is
    watched up to as_of, written here as no last day (records are cut at as_of)."""
    window = timedelta(days=rules.progression_window_days)
    return [
        (c.start_date, None if c.end_date is None else c.end_date + window)
        for c in courses
        if c.intent == Intent.treatment
    ]


def site_flags(
    *,
    evidence: SiteEvidence,
    activity: Activity,
    patient_first: date | None,
    injuries: Sequence[Injury],
    courses: Sequence[Course],
    rules: FlagRules,
    stage_rules: StageRules,
) -> tuple[str, ...]:
    """The site's flags, sorted. Injuries and courses are the patient's, cut at as_of."""
    flags: set[Flag] = set()
    site_first = site_first_ho_date(evidence, stage_rules)
    new_site = is_new_site(site_first, patient_first, evidence.resected_on, rules)
    increases = grade_increase_dates(evidence)
    if new_site:
        flags.add(Flag.new_site)
    if is_recurrence(site_first, evidence.resected_on):
        flags.add(Flag.recurrence)
    if increases:
        flags.add(Flag.grade_increase)
    if activity == Activity.rising:
        flags.add(Flag.rising_activity)
    if any(i.kind == InjuryKind.fop for i in injuries):
        flags.add(Flag.genetic_ho)
    if rom_loss_movements(evidence.range_of_motion, rules.rom_loss_fraction):
        flags.add(Flag.rom_loss)

    progression = increases + stage_advance_dates(evidence, stage_rules)
    if new_site and site_first is not None:
        progression.append(site_first)
    for start, last in treatment_windows(courses, rules):
        if any(start < day and (last is None or day <= last) for day in progression):
            flags.add(Flag.progression_after_treatment)
    return tuple(sorted(flag.value for flag in flags))
