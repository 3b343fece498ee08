"""Adding, correcting and voiding clinical records (issue 6), for the web app and CLI.

Every function is keyword-only and takes `engine`, `actor` (the username) and plain
values: strings as a form sends them (blank means absent) or typed values. Values
are checked by the CSV import's own code (`record_checks`), so the app refuses
exactly what an import refuses; problems name the form field
(`findings[1].brooker`, `measurements[0].ratio`, `end_date`).

Each change and its audit row commit in one transaction. Corrections carry the
version the user started from: if someone saved in between, `Conflict` is raised
and nothing is written. Records are never deleted, only voided with a reason.

Every service also takes `protocol` (the clinic protocol of the caller, the web app's
for its forms and API): given, the patient's reminders are re-planned right after
the change commits, as of today in the clinic's time zone (or `today`), so the
worklist follows the record at once (model-spec section 9, v2; `follow_record`).
A bulk import does not go through here: the next plan run plans it.

Public surface (all return `Saved`, or a tuple of them for several measurements):
    add_injury(*, engine, actor, mrn, kind, date, notes=None, today=None)
    add_imaging_study(*, engine, actor, mrn, date, modality, findings, accession=None,
                      notes=None, today=None)          # findings: list of dicts
    add_bone_scan(*, engine, actor, mrn, date, measurements, today=None) -> tuple[Saved, ...]
    add_bone_scan_study(*, engine, actor, mrn, date, sites, modality="bone_scan",
                        accession=None, notes=None, today=None)  # study + findings + ratios
    start_course(*, engine, actor, mrn, agent, intent, start_date, end_date=None,
                 planned_weeks=None, dose=None, dose_unit=None, site=None, side=None, today=None)
    stop_course(*, engine, actor, course_id, expected_version, end_date, reason, today=None)
    add_procedure(*, engine, actor, mrn, kind, date, site, side, notes=None, today=None)
    add_lab(*, engine, actor, mrn, date, analyte, value, unit, ref_low=None, ref_high=None,
            today=None)
    add_exam(*, engine, actor, mrn, date, site, side, swelling=None, warmth=None,
             erythema=None, pain=None, notes=None, today=None)          # v2, section 10
    add_range_of_motion(*, engine, actor, mrn, date, site, side, measurements,
                        today=None) -> tuple[Saved, ...]  # measurements: movement, degrees
    correct_injury / correct_imaging_study / correct_site_finding / correct_bone_scan /
    correct_course / correct_procedure / correct_lab / correct_exam / correct_range_of_motion
        (*, engine, actor, record_id, expected_version, changes, today=None)
    void_record(*, engine, actor, entity, record_id, expected_version, reason)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.errors import Problem, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.protocol import Protocol
from tracker.services.imaging_records import (
    add_bone_scan_study,
    add_imaging_study,
    correct_imaging_study,
    correct_site_finding,
    sync_pending,
)
from tracker.services.record_checks import check_rows
from tracker.services.record_store import (
    BONE_SCAN,
    COURSE,
    EXAM,
    FINDING,
    INJURY,
    KINDS,
    LAB,
    PROCEDURE,
    ROM,
    STUDY,
    Saved,
    audit,
    bump,
    correct_flat,
    create,
    current,
    finding_table,
    follow_record,
    owner_of,
    patient_by_mrn,
    record_snapshot,
    refuse_unknown_in_rows,
    rows_path,
    store_rows,
    stored_together,
    without_timestamps,
)
from tracker.values import NOTE_MAX, text_problem

__all__ = [
    "Saved",
    "add_bone_scan",
    "add_bone_scan_study",
    "add_exam",
    "add_imaging_study",
    "add_injury",
    "add_lab",
    "add_procedure",
    "add_range_of_motion",
    "correct_bone_scan",
    "correct_course",
    "correct_exam",
    "correct_imaging_study",
    "correct_injury",
    "correct_lab",
    "correct_procedure",
    "correct_range_of_motion",
    "correct_site_finding",
    "start_course",
    "stop_course",
    "void_record",
]

# ---------------------------------------------------------------- injuries, labs, ...


def add_injury(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    kind: Any,
    date: Any,
    notes: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Record an injury (kind from model-spec section 1, date not in the future)."""
    values = {"kind": kind, "date": date, "notes": notes}
    return create(engine, actor, mrn, INJURY, values, today, protocol)


def add_procedure(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    kind: Any,
    date: Any,
    site: Any,
    side: Any,
    notes: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Record a procedure (a resection starts the site afresh, model-spec section 3)."""
    values = {"kind": kind, "date": date, "site": site, "side": side, "notes": notes}
    return create(engine, actor, mrn, PROCEDURE, values, today, protocol)


def add_lab(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    analyte: Any,
    value: Any,
    unit: Any,
    ref_low: Any = None,
    ref_high: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Record a lab result; above ref_high counts as elevated."""
    values = {
        "date": date,
        "analyte": analyte,
        "value": value,
        "unit": unit,
        "ref_low": ref_low,
        "ref_high": ref_high,
    }
    return create(engine, actor, mrn, LAB, values, today, protocol)


def start_course(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    agent: Any,
    intent: Any,
    start_date: Any,
    end_date: Any = None,
    planned_weeks: Any = None,
    dose: Any = None,
    dose_unit: Any = None,
    site: Any = None,
    side: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Start a treatment course (end_date on or after start_date when given)."""
    values = {
        "agent": agent,
        "intent": intent,
        "start_date": start_date,
        "end_date": end_date,
        "planned_weeks": planned_weeks,
        "dose": dose,
        "dose_unit": dose_unit,
        "site": site,
        "side": side,
    }
    return create(engine, actor, mrn, COURSE, values, today, protocol)


def _reason(reason: Any, required: str) -> tuple[str, str | None]:
    """A void or stop reason, trimmed, and why it is refused (None if it is not): it is
    required, and is free text like a note by tracker.values, whichever way it came in
    (the forms' textarea, the API's VoidIn, the CLI): line breaks may stand in it, no
    other control character, at most NOTE_MAX characters."""
    text = "" if reason is None else str(reason).strip()
    if text == "":
        return text, required
    return text, text_problem(text, limit=NOTE_MAX, line_breaks=True)


def stop_course(
    *,
    engine: Engine,
    actor: str,
    course_id: int,
    expected_version: int,
    end_date: Any,
    reason: Any,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Stop a running course on `end_date`; the reason is kept in the audit row."""
    problems = []
    if end_date in (None, ""):
        problems.append(Problem(COURSE.entity, None, "end_date", "is required"))
    text, problem = _reason(reason, "is required: say why it stopped")
    if problem is not None:
        problems.append(Problem(COURSE.entity, None, "reason", problem))
    if problems:
        raise ValidationFailed(problems)
    return correct_flat(
        engine,
        actor,
        COURSE,
        course_id,
        expected_version,
        {"end_date": end_date},
        today,
        extra={"stop_reason": text},
        protocol=protocol,
    )


def correct_injury(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change an injury's kind, date or notes (only the fields in `changes`)."""
    return correct_flat(
        engine, actor, INJURY, record_id, expected_version, changes, today, protocol=protocol
    )


def correct_procedure(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change a procedure's fields (only those in `changes`)."""
    return correct_flat(
        engine, actor, PROCEDURE, record_id, expected_version, changes, today, protocol=protocol
    )


def correct_lab(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change a lab result's fields (only those in `changes`)."""
    return correct_flat(
        engine, actor, LAB, record_id, expected_version, changes, today, protocol=protocol
    )


def correct_course(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change a treatment course's fields (only those in `changes`)."""
    return correct_flat(
        engine, actor, COURSE, record_id, expected_version, changes, today, protocol=protocol
    )


# ---------------------------------------------------------------- bone scans

MEASUREMENT_FIELDS = tuple(c for c in fmt.BONE_SCANS.column_names if c not in ("mrn", "date"))


def add_bone_scan(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    measurements: Sequence[Mapping[str, Any]],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> tuple[Saved, ...]:
    """Record the measurements of one scan day: each a dict of site, side, phase and
    ratio, or lesion_counts and reference_counts (the ratio is computed from them)."""
    given_today, today = today, today or dt.date.today()
    if not measurements:
        raise ValidationFailed(
            [Problem(BONE_SCAN.entity, None, "measurements", "give at least one measurement")]
        )
    refuse_unknown_in_rows(BONE_SCAN, measurements, MEASUREMENT_FIELDS, "measurements")
    path = rows_path("measurements", ("date",))
    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            rows = check_rows(
                fmt=fmt.BONE_SCANS,
                rows=[{**row, "date": date, "mrn": owner.mrn} for row in measurements],
                field_path=path,
                source=BONE_SCAN.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            saved = store_rows(
                conn, BONE_SCAN, rows, owner=owner, actor=actor, named=lambda i: path(i, "ratio")
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    return follow_record(tuple(saved), engine=engine, protocol=protocol, today=given_today)


def correct_bone_scan(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change one measurement. `changes` holds its fields, or (as the form sends it)
    `date` plus `measurements` with exactly one row."""
    flat = dict(changes)
    rows = flat.pop("measurements", None)
    if rows is not None:
        if len(rows) != 1:
            raise ValidationFailed(
                [
                    Problem(
                        BONE_SCAN.entity,
                        None,
                        "measurements",
                        "a correction changes one measurement; add the others as a new scan",
                    )
                ]
            )
        flat.update(rows[0])
    if flat.get("ratio") in (None, "") and "lesion_counts" in flat:
        # counts given without a ratio: the ratio follows from them (model-spec section 1)
        flat["ratio"] = None
    return correct_flat(
        engine, actor, BONE_SCAN, record_id, expected_version, flat, today, protocol=protocol
    )


# ---------------------------------------------------------------- bedside examination


def add_exam(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    site: Any,
    side: Any,
    swelling: Any = None,
    warmth: Any = None,
    erythema: Any = None,
    pain: Any = None,
    notes: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Record the bedside examination of one joint (model-spec v2, section 10): each
    sign yes or no (blank when not examined), pain 0-10."""
    values = {
        "date": date,
        "site": site,
        "side": side,
        "swelling": swelling,
        "warmth": warmth,
        "erythema": erythema,
        "pain": pain,
        "notes": notes,
    }
    return create(engine, actor, mrn, EXAM, values, today, protocol)


def correct_exam(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change an examination's fields (only those in `changes`)."""
    return correct_flat(
        engine, actor, EXAM, record_id, expected_version, changes, today, protocol=protocol
    )


ROM_FIELDS = ("movement", "degrees")


def add_range_of_motion(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    site: Any,
    side: Any,
    measurements: Sequence[Mapping[str, Any]],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> tuple[Saved, ...]:
    """Record the range of motion of one joint on one day, several movements at once:
    each a dict of movement and degrees (0-200). All are stored, or none; problems are
    named `measurements[i].degrees`."""
    given_today, today = today, today or dt.date.today()
    if not measurements:
        raise ValidationFailed(
            [Problem(ROM.entity, None, "measurements", "give at least one movement")]
        )
    refuse_unknown_in_rows(ROM, measurements, ROM_FIELDS, "measurements")
    path = rows_path("measurements", ("date", "site", "side"))
    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            joint = {"date": date, "site": site, "side": side, "mrn": owner.mrn}
            rows = check_rows(
                fmt=fmt.ROM,
                rows=[{**{k: row.get(k) for k in ROM_FIELDS}, **joint} for row in measurements],
                field_path=path,
                source=ROM.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            saved = store_rows(
                conn, ROM, rows, owner=owner, actor=actor, named=lambda i: path(i, "movement")
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    return follow_record(tuple(saved), engine=engine, protocol=protocol, today=given_today)


def correct_range_of_motion(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change one range-of-motion measurement's fields (only those in `changes`)."""
    return correct_flat(
        engine, actor, ROM, record_id, expected_version, changes, today, protocol=protocol
    )


# ---------------------------------------------------------------- voiding


def void_record(
    *,
    engine: Engine,
    actor: str,
    entity: str,
    record_id: int,
    expected_version: int,
    reason: Any,
    protocol: Protocol | None = None,
) -> Saved:
    """Void a record with a reason: it stays stored and audited but no reader sees it.

    `entity` is the table name (injury, imaging_study, site_finding,
    bone_scan_measurement, treatment_course, procedure, lab_result, clinical_exam,
    range_of_motion, patient).
    Voiding a study voids its findings with it."""
    kind = KINDS.get(entity)
    if kind is None:
        raise ValidationFailed(
            [Problem("void", None, "entity", f"'{entity}' is not one of {', '.join(KINDS)}")]
        )
    text, problem = _reason(reason, "is required: say why the record is void")
    if problem is not None:
        raise ValidationFailed([Problem(kind.entity, None, "reason", problem)])
    with engine.begin() as conn:
        before = current(conn, kind, record_id, expected_version)
        snapshot = record_snapshot(conn, kind, record_id)
        owner = owner_of(conn, kind, before)
        now = dt.datetime.now(dt.UTC)
        void = {"voided_at": now, "voided_reason": text, "voided_by": actor}
        version = bump(conn, kind, record_id, expected_version, void)
        if kind is STUDY:
            conn.execute(
                sa.update(finding_table)
                .where(finding_table.c.study_id == record_id, finding_table.c.voided_at.is_(None))
                .values(**void, version=finding_table.c.version + 1)
            )
        if kind is FINDING:  # a DICOM site this finding completed waits for one again
            sync_pending(conn, actor, before["study_id"], owner.mrn)
        audit(
            conn,
            actor,
            vocab.AuditAction.void,
            kind,
            record_id,
            owner.mrn,
            without_timestamps(snapshot),
        )
    saved = Saved(kind.entity, record_id, version, owner.mrn)
    return follow_record(saved, engine=engine, protocol=protocol, today=None)
