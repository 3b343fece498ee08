"""The shared steps of the record services: find the patient, check a record as its
interchange row, refuse duplicates and stale versions, write the audit row.

`records` and `imaging_records` build the public services from these; nothing here
commits on its own, every step runs inside the caller's transaction, except
`follow_record`, which re-plans the patient's reminders once the change committed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker.errors import Conflict, NotFound, Problem, StaleRecord, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_format import FileFormat
from tracker.protocol import Protocol
from tracker.services.audit import last_change, write_event
from tracker.services.record_checks import check_rows, to_date
from tracker.store.models import (
    BoneScanMeasurement,
    ClinicalExam,
    ImagingStudy,
    Injury,
    LabResult,
    Patient,
    Procedure,
    RangeOfMotion,
    SiteFinding,
    TreatmentCourse,
    table_of,
)


@dataclass(frozen=True)
class Saved:
    """A record as stored: its table, id, new version and patient; a study's findings."""

    entity: str
    id: int
    version: int
    mrn: str
    children: tuple[Saved, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One record type: its table, the interchange file it is checked as, a label."""

    entity: str
    table: sa.Table
    file: FileFormat
    label: str

    @property
    def columns(self) -> list[str]:
        """The file's columns stored on this table."""
        return [c for c in self.file.column_names if c in self.table.c and c != "mrn"]


patient_table = table_of(Patient)
study_table = table_of(ImagingStudy)
finding_table = table_of(SiteFinding)

INJURY = Kind("injury", table_of(Injury), fmt.INJURIES, "Injury")
STUDY = Kind("imaging_study", study_table, fmt.IMAGING, "Imaging study")
FINDING = Kind("site_finding", finding_table, fmt.IMAGING, "Site finding")
BONE_SCAN = Kind(
    "bone_scan_measurement", table_of(BoneScanMeasurement), fmt.BONE_SCANS, "Bone-scan measurement"
)
COURSE = Kind("treatment_course", table_of(TreatmentCourse), fmt.TREATMENTS, "Treatment course")
PROCEDURE = Kind("procedure", table_of(Procedure), fmt.PROCEDURES, "Procedure")
LAB = Kind("lab_result", table_of(LabResult), fmt.LABS, "Lab result")
EXAM = Kind("clinical_exam", table_of(ClinicalExam), fmt.EXAMS, "Clinical examination")
ROM = Kind("range_of_motion", table_of(RangeOfMotion), fmt.ROM, "Range-of-motion measurement")
PATIENT = Kind("patient", patient_table, fmt.PATIENTS, "Patient")
KINDS = {
    k.entity: k
    for k in (INJURY, STUDY, FINDING, BONE_SCAN, COURSE, PROCEDURE, LAB, EXAM, ROM, PATIENT)
}
STUDY_FIELDS = fmt.STUDY_COLUMNS  # date, modality, accession, indication (v2)
STUDY_KEY_FIELDS = ("date", "modality", "accession")  # a study's natural key in its patient
FINDING_FIELDS = tuple(c for c in fmt.IMAGING.column_names if c not in ("mrn", *STUDY_FIELDS))


log = logging.getLogger("tracker.records")
Changed = TypeVar("Changed", Saved, tuple[Saved, ...])


def follow_record(
    saved: Changed, *, engine: Engine, protocol: Protocol | None, today: dt.date | None
) -> Changed:
    """The worklist follows the record (model-spec section 9, v2): once a record of a
    patient is stored, corrected or voided, that patient's reminders are re-planned
    (`planner.plan_patient`: the plan's own rules and comparison, that patient's rows
    alone) as of `today`, else today in the clinic's time zone, so a reminder the
    record satisfies is closed, and one a void reopens is open, before the caller
    answers; its stored site assessments (the board's) are refreshed the same way.
    Every record service ends here: the forms and the API pass the clinic
    protocol they run under. Without a protocol (bulk tools, tests of the services
    alone) nothing is planned; the next plan run picks the change up.

    The record is committed by now, so a failed re-plan is logged, not raised: the
    user's save stands, and the next plan run re-plans the patient."""
    if protocol is None:
        return saved
    mrn = saved[0].mrn if isinstance(saved, tuple) else saved.mrn
    from tracker.reminders.planner import plan_patient
    from tracker.store.models import utcnow

    now = utcnow()
    as_of = today or now.astimezone(protocol.reminders.zone).date()
    try:
        plan_patient(engine=engine, mrn=mrn, as_of=as_of, protocol=protocol, now=now)
    except Exception:  # noqa: BLE001 - the record is stored; the next plan run catches up
        log.exception("reminders of %s not re-planned after a change of its records", mrn)
    # the board and the patient search read the stored site assessments: this
    # patient's are assessed again in the same way (services/site_assessments.py)
    from tracker.services.site_assessments import refresh_patient

    try:
        refresh_patient(engine=engine, mrn=mrn, as_of=as_of, protocol=protocol)
    except Exception:  # noqa: BLE001 - the record is stored; the daily refresh catches up
        log.exception("stored assessments of %s not refreshed after a change of its records", mrn)
    return saved


def flat_path(_index: int, column: str) -> str:
    return column


def rows_path(rows_name: str, shared: Sequence[str]) -> Any:
    def path(index: int, column: str) -> str:
        if column in shared or column in ("mrn", "file"):
            return column
        return f"{rows_name}[{index}].{column}"

    return path


# ---------------------------------------------------------------- the patient


@dataclass(frozen=True)
class Owner:
    id: int
    mrn: str
    birth_date: dt.date | None


def patient_by_mrn(conn: Connection, mrn: str) -> Owner:
    p = patient_table.c
    row = conn.execute(
        sa.select(p.id, p.mrn, p.birth_date).where(p.mrn == mrn, p.voided_at.is_(None))
    ).first()
    if row is None:
        raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")
    return Owner(row.id, row.mrn, row.birth_date)


def patient_by_id(conn: Connection, patient_id: int) -> Owner:
    p = patient_table.c
    row = conn.execute(sa.select(p.id, p.mrn, p.birth_date).where(p.id == patient_id)).one()
    return Owner(row.id, row.mrn, row.birth_date)


# ---------------------------------------------------------------- shared steps


def record_snapshot(conn: Connection, kind: Kind, record_id: int) -> dict[str, Any]:
    """The stored record as the audit keeps it (a study with its live findings)."""
    row = conn.execute(sa.select(kind.table).where(kind.table.c.id == record_id)).mappings().one()
    shown = {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
    if kind is STUDY:
        findings = conn.execute(
            sa.select(finding_table)
            .where(finding_table.c.study_id == record_id, finding_table.c.voided_at.is_(None))
            .order_by(finding_table.c.id)
        ).mappings()
        shown["findings"] = [
            {k: v for k, v in f.items() if k not in ("created_at", "updated_at")} for f in findings
        ]
    return shown


def duplicate(
    conn: Connection, kind: Kind, key: Mapping[str, Any], *, exclude: int | None = None
) -> int | None:
    """The id of a live record with the same natural key, if one is stored."""
    t = kind.table
    query = sa.select(t.c.id).where(t.c.voided_at.is_(None))
    for name, value in key.items():
        query = query.where(t.c[name].is_(None) if value is None else t.c[name] == value)
    if exclude is not None:
        query = query.where(t.c.id != exclude)
    return conn.execute(query.limit(1)).scalar()


def refuse_duplicate(
    conn: Connection,
    kind: Kind,
    key: Mapping[str, Any],
    field: str,
    *,
    exclude: int | None = None,
) -> None:
    found = duplicate(conn, kind, key, exclude=exclude)
    if found is not None:
        same = ", ".join(k for k in key if k not in ("patient_id", "study_id"))
        raise ValidationFailed(
            [
                Problem(
                    kind.entity,
                    None,
                    field,
                    f"the same {kind.label.lower()} ({same}) is already recorded as "
                    f"{kind.entity} {found}; correct that one instead",
                )
            ]
        )


def insert_row(conn: Connection, kind: Kind, values: Mapping[str, Any]) -> int:
    result = conn.execute(sa.insert(kind.table).values(**values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def stored_together(error: sa.exc.IntegrityError) -> Conflict:
    return Conflict(
        "Someone stored the same record while you were saving; nothing was written. "
        f"Reload the patient and check before saving again. ({error.orig})"
    )


def typed(kind: Kind, row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in columns:
        column = kind.file.column(name)
        value = row.get(name)
        out[name] = to_date(value) if column.kind == "date" else value
    return out


def store_rows(
    conn: Connection,
    kind: Kind,
    rows: Iterable[Mapping[str, Any]],
    *,
    owner: Owner,
    actor: str,
    named: Callable[[int], str],
) -> list[Saved]:
    """Store checked rows of `kind` for `owner`, in order: each typed, refused if a live
    record of the patient has the same natural key (the problem named `named(i)` for
    row i, as the caller's form or file names it), inserted and audited. The Saved of
    each, in the same order."""
    saved: list[Saved] = []
    for i, row in enumerate(rows):
        stored = {"patient_id": owner.id, **typed(kind, row, kind.columns)}
        key = {k: stored[k] for k in kind.file.key if k != "mrn"}
        refuse_duplicate(conn, kind, {"patient_id": owner.id, **key}, named(i))
        record_id = insert_row(conn, kind, stored)
        audit(conn, actor, "create", kind, record_id, owner.mrn, None)
        saved.append(Saved(kind.entity, record_id, 1, owner.mrn))
    return saved


def create(
    engine: Engine,
    actor: str,
    mrn: str,
    kind: Kind,
    values: Mapping[str, Any],
    today: dt.date | None,
    protocol: Protocol | None = None,
) -> Saved:
    """Check one flat record as its CSV row, store it with its audit row (then
    `follow_record`)."""
    given_today, today = today, today or dt.date.today()
    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            (row,) = check_rows(
                fmt=kind.file,
                rows=[{**values, "mrn": owner.mrn}],
                field_path=flat_path,
                source=kind.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            last_key = kind.file.key[-1]
            (saved,) = store_rows(
                conn, kind, [row], owner=owner, actor=actor, named=lambda _: last_key
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


def audit(
    conn: Connection,
    actor: str,
    action: str,
    kind: Kind,
    record_id: int,
    mrn: str,
    before: dict[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    after = record_snapshot(conn, kind, record_id)
    if extra:
        after = {**after, **extra}
    write_event(
        conn,
        actor=actor,
        action=action,
        entity=kind.entity,
        entity_id=record_id,
        mrn=mrn,
        before=before,
        after=after,
    )
    return after


def current(conn: Connection, kind: Kind, record_id: int, expected_version: int) -> dict[str, Any]:
    """The live record to change, refused if someone changed it since it was opened."""
    row = (
        conn.execute(sa.select(kind.table).where(kind.table.c.id == record_id).with_for_update())
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"There is no {kind.label.lower()} {record_id}.")
    if row["voided_at"] is not None:
        raise Conflict(
            f"{kind.label} {record_id} was voided by {row['voided_by']} "
            f"({row['voided_reason']}); it can no longer be changed."
        )
    if int(row["version"]) != int(expected_version):
        raise stale(conn, kind, record_id)
    return dict(row)


def stale(conn: Connection, kind: Kind, record_id: int) -> StaleRecord:
    """The refusal of a change to a record someone changed since it was opened."""
    who, when = last_change(conn, entity=kind.entity, entity_id=record_id)
    return StaleRecord(
        f"{kind.label} {record_id} was changed by {who or 'someone else'} at "
        f"{when:%Y-%m-%d %H:%M} UTC since you opened it"
    )


def bump(
    conn: Connection, kind: Kind, record_id: int, expected_version: int, values: Mapping[str, Any]
) -> int:
    """Write a change only if the version is still the one the user started from."""
    t = kind.table
    result = conn.execute(
        sa.update(t)
        .where(t.c.id == record_id, t.c.version == expected_version)
        .values(**values, version=expected_version + 1, updated_at=dt.datetime.now(dt.UTC))
    )
    if result.rowcount != 1:
        raise stale(conn, kind, record_id)  # a concurrent save won since our read
    return expected_version + 1


def refuse_unknown(kind: Kind, changes: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValidationFailed(
            Problem(
                kind.entity,
                None,
                name,
                f"is not a field of a {kind.label.lower()}; allowed: {', '.join(allowed)}",
            )
            for name in unknown
        )


def correct_flat(
    engine: Engine,
    actor: str,
    kind: Kind,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None,
    extra: Mapping[str, Any] | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Correct one flat record's fields (then `follow_record`)."""
    given_today, today = today, today or dt.date.today()
    refuse_unknown(kind, changes, kind.columns)
    try:
        with engine.begin() as conn:
            before = current(conn, kind, record_id, expected_version)
            owner = patient_by_id(conn, before["patient_id"])
            merged = {name: before[name] for name in kind.columns}
            merged.update(changes)
            (row,) = check_rows(
                fmt=kind.file,
                rows=[{**merged, "mrn": owner.mrn}],
                field_path=flat_path,
                source=kind.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            values = typed(kind, row, kind.columns)
            key = {k: values[k] for k in kind.file.key if k != "mrn"}
            refuse_duplicate(
                conn, kind, {"patient_id": owner.id, **key}, kind.file.key[-1], exclude=record_id
            )
            version = bump(conn, kind, record_id, expected_version, values)
            audit(
                conn,
                actor,
                "correct",
                kind,
                record_id,
                owner.mrn,
                without_timestamps(before),
                extra,
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(kind.entity, record_id, version, owner.mrn)
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


def without_timestamps(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}


def refuse_unknown_in_rows(
    kind: Kind, rows: Sequence[Mapping[str, Any]], allowed: Sequence[str], name: str
) -> None:
    """Refuse keys that are not fields of `kind` in any row of the list `name`,
    each named by its path (`findings[1].colour`)."""
    problems = [
        Problem(
            kind.entity,
            None,
            f"{name}[{i}].{key}",
            f"is not a field of a {kind.label.lower()}; allowed: {', '.join(allowed)}",
        )
        for i, row in enumerate(rows)
        for key in sorted(set(row) - set(allowed) - {"id"})
    ]
    if problems:
        raise ValidationFailed(problems)


def owner_of(conn: Connection, kind: Kind, row: Mapping[str, Any]) -> Owner:
    if kind is PATIENT:
        return Owner(row["id"], row["mrn"], row["birth_date"])
    if kind is FINDING:
        patient_id = conn.execute(
            sa.select(study_table.c.patient_id).where(study_table.c.id == row["study_id"])
        ).scalar_one()
        return patient_by_id(conn, patient_id)
    return patient_by_id(conn, row["patient_id"])
