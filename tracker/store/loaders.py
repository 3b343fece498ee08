"""The one place that turns stored rows into staging records.

`patient_records` serves the single-patient path (CLI, API, report); `read_cohort`
reads every row assessment needs into pandas for the vectorised cohort path. Both
read the same columns, so the two paths see the same story.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from tracker.staging import records as rec
from tracker.staging.cohort import CohortFrames
from tracker.store.story import PatientStory, load_story


def patient_records(session: Session, mrn: str) -> rec.PatientRecords:
    """A patient's records for the staging core; NotFound if the mrn is unknown."""
    return story_records(load_story(session, mrn))


def story_records(story: PatientStory) -> rec.PatientRecords:
    return rec.PatientRecords(
        mrn=story.patient.mrn,
        injuries=tuple(rec.Injury(kind=i.kind, date=i.date) for i in story.injuries),
        findings=tuple(
            rec.Finding(
                date=item.study.date,
                modality=item.study.modality,
                site=f.site,
                side=f.side,
                ho=f.ho,
                soft_tissue=f.soft_tissue,
                calcification=f.calcification,
                cortex=f.cortex,
                trabeculae=f.trabeculae,
                vascularity=f.vascularity,
                uptake=f.uptake,
                brooker=f.brooker,
                della_valle=f.della_valle,
                size_mm=f.size_mm,
                indication=item.study.indication,
            )
            for item in story.studies
            for f in item.findings
        ),
        bone_scans=tuple(
            rec.BoneScan(date=s.date, site=s.site, side=s.side, phase=s.phase, ratio=s.ratio)
            for s in story.bone_scans
        ),
        courses=tuple(
            rec.Course(
                agent=c.agent,
                intent=c.intent,
                start_date=c.start_date,
                end_date=c.end_date,
                planned_weeks=c.planned_weeks,
            )
            for c in story.courses
        ),
        procedures=tuple(
            rec.Procedure(kind=p.kind, date=p.date, site=p.site, side=p.side)
            for p in story.procedures
        ),
        labs=tuple(
            rec.Lab(
                date=lab.date,
                analyte=lab.analyte,
                value=lab.value,
                ref_high=lab.ref_high,
                unit=lab.unit,
            )
            for lab in story.labs
        ),
        range_of_motion=tuple(
            rec.RangeOfMotion(
                date=m.date, site=m.site, side=m.side, movement=m.movement, degrees=m.degrees
            )
            for m in story.range_of_motion
        ),
        exams=tuple(
            rec.Exam(
                date=e.date,
                site=e.site,
                side=e.side,
                swelling=e.swelling,
                warmth=e.warmth,
                erythema=e.erythema,
                pain=e.pain,
            )
            for e in story.exams
        ),
    )


# Voided rows are invisible to every reader (issue 6), so each query keeps live rows only.
_QUERIES = {
    "patients": ("SELECT mrn FROM patient WHERE voided_at IS NULL", ()),
    "injuries": (
        "SELECT p.mrn, i.kind, i.date FROM injury i JOIN patient p ON p.id = i.patient_id "
        "WHERE i.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
    "findings": (
        "SELECT p.mrn, s.date, s.modality, f.site, f.side, f.ho, f.soft_tissue, "
        "f.calcification, f.cortex, f.trabeculae, f.vascularity, f.uptake, f.brooker, "
        "f.della_valle, f.size_mm FROM site_finding f "
        "JOIN imaging_study s ON s.id = f.study_id JOIN patient p ON p.id = s.patient_id "
        "WHERE f.voided_at IS NULL AND s.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
    "bone_scans": (
        "SELECT p.mrn, b.date, b.site, b.side, b.phase, b.ratio FROM bone_scan_measurement b "
        "JOIN patient p ON p.id = b.patient_id WHERE b.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
    "courses": (
        "SELECT p.mrn, c.agent, c.intent, c.start_date, c.end_date, c.planned_weeks "
        "FROM treatment_course c JOIN patient p ON p.id = c.patient_id "
        "WHERE c.voided_at IS NULL AND p.voided_at IS NULL",
        ("start_date", "end_date"),
    ),
    "procedures": (
        "SELECT p.mrn, r.kind, r.date, r.site, r.side FROM procedure r "
        "JOIN patient p ON p.id = r.patient_id WHERE r.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
    "labs": (
        "SELECT p.mrn, l.date, l.analyte, l.value, l.ref_high, l.unit FROM lab_result l "
        "JOIN patient p ON p.id = l.patient_id WHERE l.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
    # the bedside examination's range of motion (model-spec v2, section 10): rom_loss
    "range_of_motion": (
        "SELECT p.mrn, m.date, m.site, m.side, m.movement, m.degrees FROM range_of_motion m "
        "JOIN patient p ON p.id = m.patient_id WHERE m.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
}

# The bedside examination's signs, read like the frames above for the
# suspected_ho_imaging rule (the reminder planner); assessment does not need them, so
# they are not part of `CohortFrames`.
BEDSIDE_QUERIES = {
    "exams": (
        "SELECT p.mrn, e.date, e.site, e.side, e.swelling, e.warmth, e.erythema, e.pain "
        "FROM clinical_exam e JOIN patient p ON p.id = e.patient_id "
        "WHERE e.voided_at IS NULL AND p.voided_at IS NULL",
        ("date",),
    ),
}

_NUMBERS = {
    "brooker": pa.int64(),
    "size_mm": pa.float64(),
    "ratio": pa.float64(),
    "planned_weeks": pa.float64(),
    "value": pa.float64(),
    "ref_high": pa.float64(),
    "pain": pa.int64(),
    "degrees": pa.float64(),
}


def read_cohort(conn: Connection) -> CohortFrames:
    """Read every stored row that assessment needs (the cohort path's only I/O)."""
    return CohortFrames(**{name: read_table(conn, name) for name in TABLES})


TABLES = tuple(_QUERIES)
"""The `CohortFrames` fields, in the order `read_cohort` reads them."""


def read_table(conn: Connection, name: str) -> pd.DataFrame:
    """One of the cohort frames (`CohortFrames` field `name`), as `read_cohort` reads it,
    or one of the `BEDSIDE_QUERIES` frames."""
    sql, date_columns = _QUERIES[name] if name in _QUERIES else BEDSIDE_QUERIES[name]
    frame = read_frame(conn, sql, date_columns)
    for column in date_columns:
        frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    if "brooker" in frame:
        frame["brooker"] = pd.to_numeric(frame["brooker"]).astype("Int64")
    if "pain" in frame:
        frame["pain"] = pd.to_numeric(frame["pain"]).astype("Int64")
    return frame


def read_frame(conn: Connection, sql: str, date_columns: tuple[str, ...]) -> pd.DataFrame:
    """One query's rows as a frame, built column-wise by Arrow from the driver's plain
    tuples: a third of the time of handing SQLAlchemy rows to pandas, which probes
    every row object (bench/assess_bench.py). Dates stay ISO text on SQLite."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    date_type = pa.string() if conn.dialect.name == "sqlite" else pa.date32()
    types = [_NUMBERS.get(n, date_type if n in date_columns else pa.string()) for n in names]
    columns = pa.array(rows, type=pa.struct(list(zip(names, types, strict=True))))
    return pa.Table.from_struct_array(columns).to_pandas()
