"""Finding patients and telling a patient's story in date order."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.errors import NotFound, Problem, StaleRecord, TrackerError, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.protocol import Protocol
from tracker.services.audit import last_change, write_event
from tracker.services.record_checks import check_rows, to_date
from tracker.services.record_store import (
    PATIENT,
    Saved,
    flat_path,
    follow_record,
    record_snapshot,
    stored_together,
    without_timestamps,
)
from tracker.services.site_assessments import SiteFilters, patients_with_sites
from tracker.store.models import (
    ImagingStudy,
    Injury,
    Patient,
    SiteAssessment,
    SiteFinding,
    Team,
    patient_name_order,
    table_of,
)
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


PAGE_SIZE = 50  # rows on a page of the patient list (issue 14)
_MAX_WORDS = 4


@dataclass(frozen=True)
class PatientSearch:
    """What the patient list is narrowed to; None (or blank text) means any.

    `text` is the start of a family name, a given name or an MRN, in any case. Each
    word must start one of them, so "okafor ada", "Okafor, Ada" and "ada ok" all find
    Ada Okafor, and "h-00" finds H-0012."""

    text: str | None = None
    team: str | None = None
    injury: str | None = None
    with_ho: bool | None = None
    # a stored site assessment meeting all of these (services/site_assessments.py)
    sites: SiteFilters = SiteFilters()


@dataclass(frozen=True)
class PatientPage:
    """One page of the patient list and where the next one starts (None: the last).
    With site filters, `sites` holds each listed patient's stored sites (mrn ->
    site, side, stage, activity, readiness, flags), in the order they were assessed."""

    patients: list[PatientSummary]
    next_after: str | None
    sites: dict[str, list[dict[str, Any]]] | None = None


def search_patients(
    *,
    engine: Engine,
    search: PatientSearch,
    after: str | None = None,
    size: int = PAGE_SIZE,
) -> PatientPage:
    """One page of the matching patients in name order (family name, given name, MRN,
    then id), starting after the cursor `after` that the previous page returned.

    The page reads at most `size + 1` rows from where the last page stopped (keyset
    paging on indexed keys: a later page costs what the first does, and nothing
    counts the cohort), plus three queries for the page's injuries, HO sites and
    latest imaging, and with site filters one for the page's stored sites."""
    start = _cursor(after) if after else None
    query = _page_query(table_of(Patient).c, search, engine.dialect.name, start, size + 1)
    with engine.connect() as conn:
        found = list(conn.execute(query).all())
        page = found[:size]
        summaries = _summaries(conn, page)
        sites = _stored_sites(conn, page) if search.sites.any else None
    more = len(found) > size
    return PatientPage(summaries, _encode_cursor(_key_of(page[-1])) if more else None, sites)


def _page_query(
    p: Any, search: PatientSearch, dialect: str, start: tuple[Any, ...] | None, limit: int
) -> sa.Select[Any]:
    """The page's rows. Browsing walks the name-order index from the cursor. A name
    search is the union of three searches for its first word (as a list writes a
    name, "Okafor, Ada", the family name comes first): by family name, a range of
    the name-order index read in its order, stopping after `limit` rows; by given
    name and by MRN, their prefix indexes, each one's matches sorted (an OR across
    the three columns would read every match of all three, then sort them). Each
    part keeps its first `limit` rows after the cursor; the page is the first `limit`
    of their union. The other words and filters hold in every part."""
    keys = _name_order(p)
    family, given = keys[0].label("family_key"), keys[1].label("given_key")
    columns: tuple[Any, ...] = (p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex)
    columns += (p.team, family, given, keys[2].label("mrn_key"))
    words = _words(search.text)
    clauses = _matching(p, search, dialect, words[1:] if words else [])
    after = _after(keys, start) if start is not None else []
    if not words:
        return sa.select(*columns).where(*clauses, *after).order_by(*keys).limit(limit)
    word = words[0]
    parts = [
        _family_starts_with(keys[0], word, dialect),
        _starts_with(sa.func.lower(p.given_name), word, dialect),
        _starts_with(sa.func.lower(p.mrn), word, dialect),
    ]
    arms = [
        sa.select(*columns).where(*clauses, part, *after).order_by(*keys).limit(limit).subquery()
        for part in parts
    ]
    matches = sa.union(*(sa.select(arm) for arm in arms)).subquery("matches")
    m = matches.c
    return sa.select(matches).order_by(m.family_key, m.given_key, m.mrn_key, m.id).limit(limit)


def list_patients(
    *,
    engine: Engine,
    team: str | None = None,
    injury: str | None = None,
    with_ho: bool | None = None,
    search: str | None = None,
    limit: int | None = None,
) -> list[PatientSummary]:
    """Every patient matching the filters (as `search_patients` matches them), by mrn,
    for the CLI, the API and reports; a page to show people comes from
    `search_patients`. Three queries whatever the size."""
    p = table_of(Patient).c
    matching = PatientSearch(text=search, team=team, injury=injury, with_ho=with_ho)
    query = sa.select(p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.team)
    query = query.where(*_matching(p, matching, engine.dialect.name))
    i = table_of(Injury).c
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
    return [_summary(row, injuries.get(row.id, []), int(row.ho_sites), row.last) for row in rows]


def _name_order(p: Any) -> tuple[Any, ...]:
    """The list's order, exactly as the index ix_patient_name_order holds it (a missing
    name sorts first, as ''); the MRN is unique, the id is the last tie-break."""
    return patient_name_order(p)


def _after(keys: tuple[Any, ...], start: tuple[Any, ...]) -> list[Any]:
    """Rows after `start` in the list's order (the row comparison is the rule). A
    leading `>=` on the family name lets SQLite start its walk of the name-order
    index there (it does not range-scan a row comparison of expressions)."""
    return [keys[0] >= start[0], sa.tuple_(*keys) > sa.tuple_(*start)]


def _key_of(row: Any) -> tuple[str, str, str, int]:
    return (str(row.family_key), str(row.given_key), str(row.mrn), int(row.id))


def _matching(
    p: Any, search: PatientSearch, dialect: str, words: list[str] | None = None
) -> list[Any]:
    """The search's conditions; `words` (default: all the search's words) are those
    that must each start the family name, given name or MRN."""
    clauses: list[Any] = [p.voided_at.is_(None)]  # voided records: invisible (issue 6)
    if search.team:
        clauses.append(p.team == search.team)
    for word in _words(search.text) if words is None else words:
        clauses.append(
            sa.or_(
                *(
                    _starts_with(sa.func.lower(column), word, dialect)
                    for column in (p.family_name, p.given_name, p.mrn)
                )
            )
        )
    if search.injury:
        i = table_of(Injury).c
        clauses.append(
            sa.exists().where(i.patient_id == p.id, i.kind == search.injury, i.voided_at.is_(None))
        )
    if search.with_ho is not None:
        s, f = table_of(ImagingStudy).c, table_of(SiteFinding).c
        has_ho = sa.exists().where(
            s.patient_id == p.id,
            f.study_id == s.id,
            f.ho == "present",
            f.voided_at.is_(None),
            s.voided_at.is_(None),
        )
        clauses.append(has_ho if search.with_ho else ~has_ho)
    with_sites = patients_with_sites(search.sites)
    if with_sites is not None:
        clauses.append(with_sites)
    return clauses


def _words(text: str | None) -> list[str]:
    return (text or "").replace(",", " ").split()[:_MAX_WORDS]


def _family_starts_with(key: Any, word: str, dialect: str) -> Any:
    """The family-name sort key starts with `word`: a range of the name-order index,
    which compares code points on both backends, so the range is exact (and read
    in the list's order)."""
    low = word.lower() if dialect == "postgresql" else _ascii_lower(word)
    following = _following(low)
    if following is None:
        return key.like(low.replace("%", "").replace("_", "") + "%")
    return sa.and_(key >= low, key < following)


def _ascii_lower(word: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in word)


def _following(low: str) -> str | None:
    """The first text after every text that starts with `low`, in code point order
    (None past the last code point); a surrogate is no character, so it is skipped."""
    last = ord(low[-1]) + 1
    if last > 0x10FFFF:
        return None
    return low[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)


def _starts_with(folded: Any, word: str, dialect: str) -> Any:
    """`folded` (a lower()ed column) starts with `word`, in a form its index serves.

    PostgreSQL: LIKE 'word%' on a text_pattern_ops index, under any collation.
    SQLite compares text bytewise, so a range [word, next word) is exact and reads
    the expression index (its LIKE optimisation does not apply to expressions); and
    its lower() folds only ASCII, so the word is folded the same way."""
    if dialect == "postgresql":
        escaped = word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return folded.like(escaped + "%", escape="\\")
    low = _ascii_lower(word)
    following = _following(low)
    if following is None:
        return folded.like(low.replace("%", "").replace("_", "") + "%")
    return sa.and_(folded >= low, folded < following)


def _summaries(conn: sa.Connection, rows: list[Any]) -> list[PatientSummary]:
    """The page's rows with their injuries, HO sites and latest imaging (three
    queries over the page's patients only)."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    i, s, f = table_of(Injury).c, table_of(ImagingStudy).c, table_of(SiteFinding).c
    injuries: dict[int, list[tuple[dt.date, str]]] = {}
    for pid, kind, date in conn.execute(
        sa.select(i.patient_id, i.kind, i.date).where(i.patient_id.in_(ids), i.voided_at.is_(None))
    ):
        injuries.setdefault(pid, []).append((date, kind))
    ho_sites: dict[int, int] = dict(
        conn.execute(
            sa.select(s.patient_id, sa.func.count(sa.distinct(f.site + ":" + f.side)))
            .select_from(table_of(SiteFinding).join(table_of(ImagingStudy)))
            .where(s.patient_id.in_(ids), f.ho == "present")
            .where(f.voided_at.is_(None), s.voided_at.is_(None))
            .group_by(s.patient_id)
        ).all()
    )
    last_imaging: dict[int, dt.date] = dict(
        conn.execute(
            sa.select(s.patient_id, sa.func.max(s.date))
            .where(s.patient_id.in_(ids), s.voided_at.is_(None))
            .group_by(s.patient_id)
        ).all()
    )
    return [
        _summary(
            row, injuries.get(row.id, []), int(ho_sites.get(row.id, 0)), last_imaging.get(row.id)
        )
        for row in rows
    ]


def _stored_sites(conn: sa.Connection, rows: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The page's patients' stored sites (one query), each patient's in the order
    they were assessed (the patient page's order)."""
    ids = [row.id for row in rows]
    if not ids:
        return {}
    a = table_of(SiteAssessment).c
    stored = conn.execute(
        sa.select(a.mrn, a.site, a.side, a.stage, a.activity, a.readiness, a.flags)
        .where(a.patient_id.in_(ids))
        .order_by(a.patient_id, a.id)
    ).mappings()
    sites: dict[str, list[dict[str, Any]]] = {}
    for site in stored:
        flags = [flag for flag in site["flags"].split(";") if flag]
        sites.setdefault(site["mrn"], []).append({**site, "flags": flags})
    return sites


def _summary(
    row: Any, injuries: list[tuple[dt.date, str]], ho_sites: int, last: dt.date | None
) -> PatientSummary:
    own = sorted(injuries)
    return PatientSummary(
        mrn=row.mrn,
        name=display_name(row.family_name, row.given_name),
        birth_date=row.birth_date,
        sex=row.sex,
        team=row.team,
        injuries=", ".join(kind for _, kind in own),
        first_injury=own[0][0] if own else None,
        ho_sites=ho_sites,
        last_imaging=last,
    )


def _encode_cursor(key: tuple[str, str, str, int]) -> str:
    text = json.dumps(list(key), ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor(after: str) -> tuple[Any, ...]:
    """The keys a page link carries; a damaged link is refused in a sentence."""
    try:
        padded = after + "=" * (-len(after) % 4)
        family, given, mrn, pid = json.loads(base64.urlsafe_b64decode(padded).decode())
        if not (isinstance(family, str) and isinstance(given, str) and isinstance(mrn, str)):
            raise ValueError(after)
        key = (family, given, mrn, int(pid))
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise TrackerError(
            "This page link is damaged or incomplete; open the patient list again from "
            "its first page."
        ) from None
    return _bound(key)


def _bound(key: tuple[str, str, str, int]) -> tuple[Any, ...]:
    return tuple(sa.literal(part) for part in key)


def display_name(family: str | None, given: str | None) -> str:
    if family and given:
        return f"{family.upper()}, {given}"
    return (family or "").upper() or given or ""


@dataclass(frozen=True)
class StoryEvent:
    """One line of a patient's timeline, with the form that corrects its record."""

    date: dt.date
    kind: str  # injury, imaging, bone_scan, course_start, course_end, procedure, lab
    summary: str
    details: tuple[str, ...] = ()
    form: str | None = None  # the record form's slug: /patients/{mrn}/{form}/{record_id}/edit
    record_id: int | None = None


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


def timeline(
    story: PatientStory, *, stop_reasons: Mapping[int, str] | None = None
) -> list[StoryEvent]:
    """The story's events in date order, vocabulary values as tokens (pages read them
    out with `labels.sentence`). `stop_reasons` (course id -> why it was stopped) are
    told on the course's end."""
    events: list[StoryEvent] = []
    for injury in story.injuries:
        note = f" ({injury.notes})" if injury.notes else ""
        events.append(
            StoryEvent(
                injury.date, "injury", f"{injury.kind}{note}", form="injuries", record_id=injury.id
            )
        )
    for item in story.studies:
        study = item.study
        accession = f" [{study.accession}]" if study.accession else ""
        details = tuple(_finding_text(f) for f in item.findings)
        events.append(
            StoryEvent(
                study.date,
                "imaging",
                f"{study.modality}{accession}",
                details,
                form="imaging",
                record_id=study.id,
            )
        )
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
                form="bone-scans",
                record_id=scan.id,
            )
        )
    for course in story.courses:
        dose = f" {course.dose:g} {course.dose_unit or ''}".rstrip() if course.dose else ""
        where = f" ({course.site} {course.side})" if course.site else ""
        plan = f", planned {course.planned_weeks:g} weeks" if course.planned_weeks else ""
        name = f"{course.agent} {course.intent}"
        events.append(
            StoryEvent(
                course.start_date,
                "course_start",
                f"{name} started{dose}{where}{plan}",
                form="courses",
                record_id=course.id,
            )
        )
        if course.end_date:
            why = (stop_reasons or {}).get(course.id or 0)
            events.append(
                StoryEvent(
                    course.end_date,
                    "course_end",
                    f"{name} ended" + (f": {why}" if why else ""),
                    form="courses",
                    record_id=course.id,
                )
            )
    for procedure in story.procedures:
        note = f" ({procedure.notes})" if procedure.notes else ""
        events.append(
            StoryEvent(
                procedure.date,
                "procedure",
                f"{procedure.kind} {procedure.site} {procedure.side}{note}",
                form="procedures",
                record_id=procedure.id,
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
            StoryEvent(
                lab.date,
                "lab",
                f"{lab.analyte} {lab.value:g} {lab.unit}{ref}{flag}",
                form="labs",
                record_id=lab.id,
            )
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


# ---------------------------------------------------------------- adding and editing a patient
#
# A patient is checked as its patients.csv row (one rule per value: the import's own
# MRN, name, date and sex checks), versioned like every record and audited with the
# row before and after. The MRN is never changed once stored: the EHR, PACS (DICOM),
# FHIR exchange and CSV re-imports all find the patient by it, and the audit trail
# and sent reminders name it, so a changed MRN would make the next import add the
# same person again and cut the record off from its own history.

EDITABLE = ("birth_date", "sex", "family_name", "given_name", "team")
_SOURCE = "patient"
patient_table, team_table = table_of(Patient), table_of(Team)


def add_patient(
    *,
    engine: Engine,
    actor: str,
    mrn: str | None,
    birth_date: object = None,
    sex: object = None,
    family_name: object = None,
    given_name: object = None,
    team: object = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Store a new patient (blank values mean absent) with a `create` audit row.
    A taken MRN, an unknown team or a bad value is refused naming its field."""
    values = {
        "mrn": mrn,
        "birth_date": birth_date,
        "sex": sex,
        "family_name": family_name,
        "given_name": given_name,
        "team": team,
    }
    try:
        row = _checked(values, today)
    except ValidationFailed as failed:  # say at once if the MRN is taken, too
        mrn_text = str(mrn or "").strip()
        if mrn_text and not any(p.field == "mrn" for p in failed.problems):
            with engine.connect() as conn:
                taken = _taken_mrn(conn, mrn_text)
            if taken is not None:
                raise ValidationFailed([*failed.problems, taken]) from None
        raise
    try:
        with engine.begin() as conn:
            taken = _taken_mrn(conn, row["mrn"])
            if taken is not None:
                raise ValidationFailed([taken])
            _refuse_unknown_team(conn, row["team"])
            result = conn.execute(sa.insert(patient_table).values(**row))
            key = result.inserted_primary_key
            assert key is not None
            patient_id = int(key[0])
            after = record_snapshot(conn, PATIENT, patient_id)
            write_event(
                conn, actor=actor, action="create", entity=PATIENT.entity,
                entity_id=patient_id, mrn=row["mrn"], before=None, after=after,
            )  # fmt: skip
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(PATIENT.entity, patient_id, 1, row["mrn"])
    return follow_record(saved, engine=engine, protocol=protocol, today=today)


def update_patient(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    expected_version: int,
    changes: Mapping[str, object],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change a patient's demographics or team (only the fields in `changes`), if
    nobody saved the patient since `expected_version`. Nothing changed: nothing is
    written and the version stays (no empty audit row)."""
    _refuse_fields(changes)
    try:
        with engine.begin() as conn:
            before = _locked(conn, mrn, expected_version)
            merged: dict[str, object] = {name: before[name] for name in EDITABLE}
            merged.update(changes)
            row = _checked({**merged, "mrn": before["mrn"]}, today)
            values = {name: row[name] for name in EDITABLE}
            if all(values[name] == before[name] for name in EDITABLE):
                return Saved(PATIENT.entity, before["id"], expected_version, before["mrn"])
            _refuse_unknown_team(conn, values["team"])
            _refuse_birth_after_records(conn, before["id"], values["birth_date"])
            result = conn.execute(
                sa.update(patient_table)
                .where(patient_table.c.id == before["id"])
                .where(patient_table.c.version == expected_version)
                .values(**values, version=expected_version + 1, updated_at=dt.datetime.now(dt.UTC))
            )
            if result.rowcount != 1:
                raise _stale(conn, before["id"], before["mrn"])
            write_event(
                conn, actor=actor, action="correct", entity=PATIENT.entity,
                entity_id=before["id"], mrn=before["mrn"], before=without_timestamps(before),
                after=record_snapshot(conn, PATIENT, before["id"]),
            )  # fmt: skip
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(PATIENT.entity, before["id"], expected_version + 1, before["mrn"])
    return follow_record(saved, engine=engine, protocol=protocol, today=today)


def _checked(values: Mapping[str, object], today: dt.date | None) -> dict[str, Any]:
    """The values as a patients.csv row would be checked and typed by the import."""
    (row,) = check_rows(
        fmt=fmt.PATIENTS,
        rows=[values],
        field_path=flat_path,
        source=_SOURCE,
        birth_date=None,
        today=today or dt.date.today(),
    )
    return {**row, "birth_date": to_date(row["birth_date"])}


def _refuse(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([Problem(_SOURCE, None, field, reason)])


def _refuse_fields(changes: Mapping[str, object]) -> None:
    if "mrn" in changes:
        raise _refuse(
            "mrn",
            "cannot be changed once the patient is stored: the EHR, PACS and CSV "
            "imports find the patient by it; ask an administrator if it was mistyped",
        )
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationFailed(
            Problem(_SOURCE, None, name, f"is not a patient field; use {', '.join(EDITABLE)}")
            for name in unknown
        )


def _taken_mrn(conn: sa.Connection, mrn: object) -> Problem | None:
    """The refusal of an MRN some stored patient has (a voided record keeps its MRN)."""
    p = patient_table.c
    found = conn.execute(
        sa.select(p.family_name, p.given_name, p.voided_at).where(p.mrn == mrn)
    ).first()
    if found is None:
        return None
    if found.voided_at is not None:
        reason = f"{mrn} was the MRN of a patient record since voided; give another"
    else:
        name = display_name(found.family_name, found.given_name) or "a patient without a name"
        reason = f"{mrn} is already taken by {name}; open that patient instead"
    return Problem(_SOURCE, None, "mrn", reason)


def _refuse_unknown_team(conn: sa.Connection, team: object) -> None:
    if team is None:
        return
    if conn.execute(sa.select(team_table.c.id).where(team_table.c.name == team)).first() is None:
        raise _refuse(
            "team", f"'{team}' is not one of the clinic's teams; choose one, or ask an "
            "administrator to add it",
        )  # fmt: skip


def _refuse_birth_after_records(conn: sa.Connection, patient_id: int, born: object) -> None:
    """A birth date after any of the patient's records is refused, as the import
    refuses a record dated before its patient's birth."""
    if not isinstance(born, dt.date):
        return
    earliest = earliest_record(conn, patient_id)
    if earliest is not None and earliest[0] < born:
        day, what = earliest
        raise _refuse(
            "birth_date",
            f"{born.isoformat()} is after the patient's {what.replace('_', ' ')} of "
            f"{day.isoformat()}; a record cannot be dated before birth",
        )


def earliest_record(conn: sa.Connection, patient_id: int) -> tuple[dt.date, str] | None:
    """The date and table of the patient's earliest live record (one query)."""
    from tracker.store.models import BoneScanMeasurement, LabResult, Procedure, TreatmentCourse

    parts = []
    for model, column in (
        (Injury, "date"),
        (ImagingStudy, "date"),
        (BoneScanMeasurement, "date"),
        (TreatmentCourse, "start_date"),
        (Procedure, "date"),
        (LabResult, "date"),
    ):
        t = table_of(model)
        parts.append(
            sa.select(t.c[column].label("day"), sa.literal(t.name).label("what")).where(
                t.c.patient_id == patient_id, t.c.voided_at.is_(None)
            )
        )
    union = sa.union_all(*parts).subquery()
    found = conn.execute(
        sa.select(union.c.day, union.c.what).order_by(union.c.day).limit(1)
    ).first()
    return (found.day, str(found.what)) if found is not None else None


def _locked(conn: sa.Connection, mrn: str, expected_version: int) -> dict[str, Any]:
    p = patient_table.c
    row = (
        conn.execute(
            sa.select(patient_table).where(p.mrn == mrn, p.voided_at.is_(None)).with_for_update()
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No patient with MRN {mrn}; check the number or add the patient.")
    if int(row["version"]) != int(expected_version):
        raise _stale(conn, int(row["id"]), mrn)
    return dict(row)


def _stale(conn: sa.Connection, patient_id: int, mrn: str) -> StaleRecord:
    who, when = last_change(conn, entity=PATIENT.entity, entity_id=patient_id)
    return StaleRecord(
        f"Patient {mrn} was changed by {who or 'someone else'} at {when:%Y-%m-%d %H:%M} UTC "
        "since you opened it"
    )


# ---------------------------------------------------------------- what was changed, and why


@dataclass(frozen=True)
class RecordChange:
    """One correction or void of a patient's record, as the audit trail kept it."""

    at: dt.datetime  # UTC
    username: str | None
    action: str  # correct or void
    entity: str  # the record's table
    entity_id: int | None
    what: tuple[str, ...]  # the values that name the record: agent, intent, start date ...
    changed: tuple[tuple[str, str, str], ...]  # (field, before, after), stored values
    reason: str | None  # why it was voided, or why a course was stopped


# the values that name a record of each table to a person
_NAMED_BY = {
    "patient": ("family_name", "given_name"),
    "injury": ("kind", "date"),
    "imaging_study": ("modality", "date"),
    "site_finding": ("site", "side"),
    "bone_scan_measurement": ("site", "side", "phase", "date"),
    "treatment_course": ("agent", "intent", "start_date"),
    "procedure": ("kind", "site", "side", "date"),
    "lab_result": ("analyte", "date"),
}
_BOOKKEEPING = frozenset(
    {"id", "patient_id", "study_id", "version", "voided_at", "voided_by", "voided_reason"}
    | {"created_at", "updated_at", "stop_reason", "findings"}
)
CHANGES_SHOWN = 20


def record_changes(
    *, engine: Engine, mrn: str, limit: int = CHANGES_SHOWN
) -> tuple[list[RecordChange], bool]:
    """The patient's latest corrections and voids, newest first (at most `limit`), and
    whether there are older ones. One query on the audit trail's (mrn, at) index."""
    from tracker.services.audit import audit_event

    a = audit_event.c
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(a.at, a.username, a.action, a.entity, a.entity_id, a.before, a.after)
            .where(a.mrn == mrn, a.action.in_(["correct", "void"]), a.entity.is_not(None))
            .order_by(a.at.desc(), a.id.desc())
            .limit(limit + 1)
        ).all()
    changes = []
    for row in found[:limit]:
        before = json.loads(row.before) if row.before else {}
        after = json.loads(row.after) if row.after else {}
        entity = str(row.entity)
        named = after if row.action == "correct" else before
        changes.append(
            RecordChange(
                at=row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC),
                username=row.username,
                action=str(row.action),
                entity=entity,
                entity_id=row.entity_id,
                what=tuple(
                    str(named[k]) for k in _NAMED_BY.get(entity, ()) if named.get(k) is not None
                ),
                changed=_changed(before, after) if row.action == "correct" else (),
                reason=after.get("voided_reason" if row.action == "void" else "stop_reason"),
            )
        )
    return changes, len(found) > limit


def _changed(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[tuple[str, str, str], ...]:
    out = [
        (name, _plain(before.get(name)), _plain(after.get(name)))
        for name in sorted(set(before) | set(after))
        if name not in _BOOKKEEPING and before.get(name) != after.get(name)
    ]
    if before.get("findings") != after.get("findings") and "findings" in after:
        out.append(("findings", _sites(before.get("findings")), _sites(after.get("findings"))))
    return tuple(out)


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def _sites(findings: Any) -> str:
    return "; ".join(f"{f.get('site')} {f.get('side')} HO {f.get('ho')}" for f in findings or [])


def course_stop_reasons(*, engine: Engine, mrn: str) -> dict[int, str]:
    """Why each of the patient's stopped courses was stopped (course id -> reason), as
    the stop form recorded it in the audit row; the latest stop of a course wins."""
    from tracker.services.audit import audit_event

    a = audit_event.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.entity_id, a.after)
            .where(a.mrn == mrn, a.entity == "treatment_course", a.action == "correct")
            .where(a.after.like('%"stop_reason"%'))
            .order_by(a.at, a.id)
        ).all()
    reasons: dict[int, str] = {}
    for course_id, after in rows:
        reason = json.loads(after).get("stop_reason") if after else None
        if course_id is not None and reason:
            reasons[int(course_id)] = str(reason)
    return reasons
