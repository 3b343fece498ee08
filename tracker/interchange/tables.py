"""Interchange rows in and out of the store, in bulk.

Reads give each CSV file's columns in canonical text form (the exact text that
export writes), so comparing an incoming row with a stored one is comparing
strings. Writes go through the driver's executemany, the fastest portable path
on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_format import FileFormat, number_texts
from tracker.progress import NoProgress, Progress
from tracker.store.models import (
    BoneScanMeasurement,
    ClinicalExam,
    DicomPendingSite,
    ImagingStudy,
    Injury,
    LabResult,
    Patient,
    Procedure,
    RangeOfMotion,
    SiteFinding,
    Team,
    TreatmentCourse,
    table_of,
)

CHUNK = 5000

patient = table_of(Patient)
study = table_of(ImagingStudy)
finding = table_of(SiteFinding)
team = table_of(Team)
pending_site = table_of(DicomPendingSite)

# The stored table behind each file other than patients and imaging.
SIMPLE_TABLES: dict[str, sa.Table] = {
    fmt.INJURIES.name: table_of(Injury),
    fmt.BONE_SCANS.name: table_of(BoneScanMeasurement),
    fmt.TREATMENTS.name: table_of(TreatmentCourse),
    fmt.PROCEDURES.name: table_of(Procedure),
    fmt.LABS.name: table_of(LabResult),
    fmt.EXAMS.name: table_of(ClinicalExam),
    fmt.ROM.name: table_of(RangeOfMotion),
}
# a study's natural key within its patient (csv_format.STUDY_COLUMNS are all its columns)
STUDY_COLUMNS = ("date", "modality", "accession")


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _select_for(file: FileFormat) -> sa.Select:
    # Voided rows are invisible to export and to the import's natural-key matching
    # (issue 6): a voided record never blocks re-entering the corrected one.
    if file is fmt.PATIENTS:
        return sa.select(*[patient.c[name] for name in file.column_names]).where(
            patient.c.voided_at.is_(None)
        )
    if file is fmt.IMAGING:
        columns = [
            patient.c.mrn
            if name == "mrn"
            else study.c[name]
            if name in fmt.STUDY_COLUMNS
            else finding.c[name]
            for name in file.column_names
        ]
        return (
            sa.select(*columns)
            .select_from(finding.join(study).join(patient))
            .where(finding.c.voided_at.is_(None), study.c.voided_at.is_(None))
            .where(patient.c.voided_at.is_(None))
        )
    table = SIMPLE_TABLES[file.name]
    columns = [patient.c.mrn if n == "mrn" else table.c[n] for n in file.column_names]
    return (
        sa.select(*columns)
        .select_from(table.join(patient))
        .where(table.c.voided_at.is_(None), patient.c.voided_at.is_(None))
    )


def _patient_id_column(file: FileFormat) -> sa.ColumnElement[Any]:
    if file is fmt.PATIENTS:
        return patient.c.id
    if file is fmt.IMAGING:
        return study.c.patient_id
    return SIMPLE_TABLES[file.name].c.patient_id


def read_canonical(
    conn: Connection, file: FileFormat, patient_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Stored rows of one file's kind as canonical text (all, or for some patients)."""
    query = _select_for(file)
    if patient_ids is None:
        rows = conn.execute(query).all()
    else:
        id_column = _patient_id_column(file)
        rows = []
        for part in chunks(list(patient_ids)):
            rows.extend(conn.execute(query.where(id_column.in_(part))).all())
    frame = pd.DataFrame(rows, columns=file.column_names, dtype=object)
    return canonical(frame, file)


def canonical(frame: pd.DataFrame, file: FileFormat) -> pd.DataFrame:
    """Every value as the text export writes: ISO dates, shortest numbers, '' for blank."""
    out = pd.DataFrame(index=frame.index)
    for column in file.columns:
        values = frame[column.name]
        if column.kind in ("float", "int"):
            numbers = pd.to_numeric(values, errors="coerce")
            if column.kind == "int":
                text = numbers.astype("Int64").astype(str)
                out[column.name] = text.where(numbers.notna(), "")
            else:
                out[column.name] = number_texts(numbers)
        elif column.kind == "date":
            out[column.name] = values.map(
                lambda v: v if isinstance(v, str) else v.isoformat(), na_action="ignore"
            ).fillna("")
        else:
            out[column.name] = values.fillna("").astype(str)
    return out


def patient_index(conn: Connection, mrns: Sequence[str]) -> pd.DataFrame:
    """Stored patients among `mrns`: columns mrn, id, birth_date (ISO text or None)."""
    rows: list[Any] = []
    query = sa.select(patient.c.mrn, patient.c.id, patient.c.birth_date)
    for part in chunks(list(mrns)):
        rows.extend(conn.execute(query.where(patient.c.mrn.in_(part))).all())
    frame = pd.DataFrame(rows, columns=["mrn", "id", "birth_date"], dtype=object)
    frame["birth_date"] = frame["birth_date"].map(lambda d: d.isoformat(), na_action="ignore")
    return frame


def study_index(
    conn: Connection, patient_ids: Sequence[int], *, with_indication: bool = False
) -> pd.DataFrame:
    """Stored imaging studies of these patients: id, patient_id, date (ISO), modality,
    accession (and indication, if asked)."""
    rows: list[Any] = []
    names = [*STUDY_COLUMNS, *(["indication"] if with_indication else [])]
    query = sa.select(study.c.id, study.c.patient_id, *[study.c[n] for n in names])
    for part in chunks(list(patient_ids)):
        live = study.c.voided_at.is_(None)
        rows.extend(conn.execute(query.where(study.c.patient_id.in_(part), live)).all())
    frame = pd.DataFrame(rows, columns=["study_id", "patient_id", *names], dtype=object)
    frame["date"] = frame["date"].map(lambda d: d.isoformat(), na_action="ignore")
    return frame


def bulk_insert(
    conn: Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    progress: Progress | None = None,
) -> int:
    """Insert every row of `frame` (columns named as the table's) in driver batches.

    Missing values become NULL; dates are ISO text, which both SQLite (as stored by
    SQLAlchemy) and PostgreSQL (cast from an untyped parameter) accept.
    """
    if frame.empty:
        return 0
    progress = progress or NoProgress()
    names = list(frame.columns)
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([marker] * len(names))})"
    )
    columns = [_plain_values(frame[name]) for name in names]
    rows = list(zip(*columns, strict=True))
    for part in chunks(rows, 20_000):
        conn.exec_driver_sql(sql, list(part))
        progress.advance(len(part))
    return len(rows)


def _plain_values(series: pd.Series) -> list[Any]:
    """Python scalars with None for missing, as DB drivers expect."""
    return series.astype(object).where(series.notna(), None).tolist()


def _matched() -> sa.Exists:
    """A live finding of the pending site's study matches it: the same site, or any
    site when the header named none; likewise the side."""
    p, f = pending_site.c, finding.c
    return (
        sa.exists()
        .where(f.study_id == p.study_id, f.voided_at.is_(None))
        .where(sa.or_(p.site.is_(None), p.site == f.site))
        .where(sa.or_(p.side.is_(None), p.side == f.side))
    )


def complete_pending_sites(conn: Connection, study_ids: Iterable[int], actor: str) -> list[int]:
    """Mark completed (now, by `actor`) the pending DICOM sites of these studies that a
    live finding of the same study now matches (`_matched`). Set-based, one UPDATE per
    CHUNK studies; returns the ids completed. Runs in the caller's transaction."""
    now = dt.datetime.now(dt.UTC)
    return _set_status(
        conn,
        study_ids,
        (pending_site.c.status == "pending", _matched()),
        dict(status="completed", completed_at=now, completed_by=actor, updated_at=now),
    )


def reopen_pending_sites(conn: Connection, study_ids: Iterable[int]) -> list[int]:
    """The reverse: completed sites of these studies that no live finding matches any
    more (its finding was voided, or corrected to another site or side) wait again.
    Returns the ids reopened. Runs in the caller's transaction."""
    now = dt.datetime.now(dt.UTC)
    return _set_status(
        conn,
        study_ids,
        (pending_site.c.status == "completed", ~_matched()),
        dict(status="pending", completed_at=None, completed_by=None, updated_at=now),
    )


def _set_status(
    conn: Connection,
    study_ids: Iterable[int],
    where: tuple[sa.ColumnElement[bool], ...],
    values: dict[str, Any],
) -> list[int]:
    p = pending_site.c
    changed: list[int] = []
    for part in chunks(sorted({int(i) for i in study_ids})):
        result = conn.execute(
            sa.update(pending_site)
            .where(p.study_id.in_(part), *where)
            .values(**values)
            .returning(p.id)
        )
        changed += result.scalars().all()
    return sorted(changed)
