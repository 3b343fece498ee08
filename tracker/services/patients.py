"""Finding patients and telling a patient's story in date order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.store.models import ImagingStudy, Injury, Patient, SiteFinding, table_of
from tracker.store.story import PatientStory, load_story


@dataclass(frozen=True)
class PatientSummary:
    mrn: str
    name: str
    birth_date: dt.date | None
    sex: str | None
    team: str | None
    injuries: str  # kinds, earliest first
    first_injury: dt.date | None
    ho_sites: int  # distinct (site, side) with HO present on any study
    last_imaging: dt.date | None


def list_patients(
    *,
    engine: Engine,
    team: str | None = None,
    injury: str | None = None,
    with_ho: bool | None = None,
    search: str | None = None,
    limit: int | None = None,
) -> list[PatientSummary]:
    """Patients matching every filter given, by mrn; three queries whatever the size."""
    p = table_of(Patient).c
    query = sa.select(p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.team)
    # voided records are invisible to every reader (issue 6)
    query = query.where(p.voided_at.is_(None))
    if team:
        query = query.where(p.team == team)
    if search:
        like = f"%{search.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(p.mrn).like(like),
                sa.func.lower(p.family_name).like(like),
                sa.func.lower(p.given_name).like(like),
            )
        )
    i = table_of(Injury).c
    if injury:
        query = query.where(
            p.id.in_(sa.select(i.patient_id).where(i.kind == injury, i.voided_at.is_(None)))
        )
    s, f = table_of(ImagingStudy).c, table_of(SiteFinding).c
    ho_sites = (
        sa.select(s.patient_id, sa.func.count(sa.distinct(f.site + ":" + f.side)).label("n"))
        .select_from(table_of(SiteFinding).join(table_of(ImagingStudy)))
        .where(f.ho == "present", f.voided_at.is_(None), s.voided_at.is_(None))
        .group_by(s.patient_id)
        .subquery()
    )
    last_imaging = (
        sa.select(s.patient_id, sa.func.max(s.date).label("last"))
        .where(s.voided_at.is_(None))
        .group_by(s.patient_id)
        .subquery()
    )
    query = (
        query.add_columns(
            sa.func.coalesce(ho_sites.c.n, 0).label("ho_sites"), last_imaging.c["last"]
        )
        .outerjoin(ho_sites, ho_sites.c.patient_id == p.id)
        .outerjoin(last_imaging, last_imaging.c.patient_id == p.id)
    )
    if with_ho is True:
        query = query.where(ho_sites.c.n > 0)
    elif with_ho is False:
        query = query.where(ho_sites.c.n.is_(None))
    query = query.order_by(p.mrn)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        ids = [row.id for row in rows]
        injuries: dict[int, list[tuple[dt.date, str]]] = {}
        for start in range(0, len(ids), 5000):
            part = ids[start : start + 5000]
            for pid, kind, date in conn.execute(
                sa.select(i.patient_id, i.kind, i.date).where(
                    i.patient_id.in_(part), i.voided_at.is_(None)
                )
            ):
                injuries.setdefault(pid, []).append((date, kind))
    summaries = []
    for row in rows:
        own = sorted(injuries.get(row.id, []))
        summaries.append(
            PatientSummary(
                mrn=row.mrn,
                name=display_name(row.family_name, row.given_name),
                birth_date=row.birth_date,
                sex=row.sex,
                team=row.team,
                injuries=", ".join(kind for _, kind in own),
                first_injury=own[0][0] if own else None,
                ho_sites=int(row.ho_sites),
                last_imaging=row.last,
            )
        )
    return summaries


def display_name(family: str | None, given: str | None) -> str:
    if family and given:
        return f"{family.upper()}, {given}"
    return (family or "").upper() or given or ""


@dataclass(frozen=True)
class StoryEvent:
    """One line of a patient's timeline."""

    date: dt.date
    kind: str  # injury, imaging, bone_scan, course_start, course_end, procedure, lab
    summary: str
    details: tuple[str, ...] = ()


def patient_story(*, engine: Engine, mrn: str) -> tuple[PatientStory, list[StoryEvent]]:
    """The stored story and its events in date order (ties keep a clinical order)."""
    with Session(engine) as session:
        story = load_story(session, mrn)
    return story, timeline(story)


_ORDER = {
    "injury": 0,
    "course_start": 1,
    "imaging": 2,
    "bone_scan": 3,
    "lab": 4,
    "procedure": 5,
    "course_end": 6,
}


def timeline(story: PatientStory) -> list[StoryEvent]:
    events: list[StoryEvent] = []
    for injury in story.injuries:
        note = f" ({injury.notes})" if injury.notes else ""
        events.append(StoryEvent(injury.date, "injury", f"{injury.kind}{note}"))
    for item in story.studies:
        study = item.study
        accession = f" [{study.accession}]" if study.accession else ""
        details = tuple(_finding_text(f) for f in item.findings)
        events.append(StoryEvent(study.date, "imaging", f"{study.modality}{accession}", details))
    for scan in story.bone_scans:
        counts = (
            f" ({scan.lesion_counts:g}/{scan.reference_counts:g} counts"
            f"{', ' + scan.reference_region if scan.reference_region else ''})"
            if scan.lesion_counts and scan.reference_counts
            else ""
        )
        events.append(
            StoryEvent(
                scan.date,
                "bone_scan",
                f"{scan.site} {scan.side} {scan.phase} ratio {scan.ratio:.2f}{counts}",
            )
        )
    for course in story.courses:
        dose = f" {course.dose:g} {course.dose_unit or ''}".rstrip() if course.dose else ""
        where = f" ({course.site} {course.side})" if course.site else ""
        plan = f", planned {course.planned_weeks:g} weeks" if course.planned_weeks else ""
        events.append(
            StoryEvent(
                course.start_date,
                "course_start",
                f"{course.agent} {course.intent} started{dose}{where}{plan}",
            )
        )
        if course.end_date:
            events.append(
                StoryEvent(course.end_date, "course_end", f"{course.agent} {course.intent} ended")
            )
    for procedure in story.procedures:
        note = f" ({procedure.notes})" if procedure.notes else ""
        events.append(
            StoryEvent(
                procedure.date,
                "procedure",
                f"{procedure.kind} {procedure.site} {procedure.side}{note}",
            )
        )
    for lab in story.labs:
        flag = " HIGH" if lab.ref_high is not None and lab.value > lab.ref_high else ""
        ref = ""
        if lab.ref_low is not None or lab.ref_high is not None:
            low = f"{lab.ref_low:g}" if lab.ref_low is not None else ""
            high = f"{lab.ref_high:g}" if lab.ref_high is not None else ""
            ref = f" (ref {low}-{high})"
        events.append(
            StoryEvent(lab.date, "lab", f"{lab.analyte} {lab.value:g} {lab.unit}{ref}{flag}")
        )
    return sorted(events, key=lambda e: (e.date, _ORDER[e.kind]))


def _finding_text(finding: SiteFinding) -> str:
    parts = [f"{finding.site} {finding.side}: HO {finding.ho}"]
    for name in ("soft_tissue", "calcification", "cortex", "trabeculae", "vascularity", "uptake"):
        value = getattr(finding, name)
        if value is not None:
            parts.append(f"{name.replace('_', ' ')} {value}")
    if finding.brooker is not None:
        parts.append(f"Brooker {finding.brooker}")
    if finding.della_valle is not None:
        parts.append(f"Della Valle {finding.della_valle.upper()}")
    if finding.size_mm is not None:
        parts.append(f"{finding.size_mm:g} mm")
    if finding.notes:
        parts.append(f"({finding.notes})")
    return ", ".join(parts)
