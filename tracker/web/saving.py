"""Form values in, `tracker.services.records` calls out: the one place that knows how
the record services are called, shared by the forms and the API.

Values stay the strings the form sent (blank means absent): the services validate
them with the CSV import's own checks and name the field of any refused value.
Every save, correction, stop and void passes the app's clinic protocol, so the
services re-plan the patient's reminders before the response (model-spec section 9).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.errors import NotFound
from tracker.protocol import Protocol
from tracker.store.models import Patient, table_of
from tracker.store.story import load_story
from tracker.web.formspec import FormSpec, row_count

# the add service of each form
ADDERS = {
    "injuries": "add_injury",
    "imaging": "add_imaging_study",
    "bone-scans": "add_bone_scan",
    "courses": "start_course",
    "procedures": "add_procedure",
    "labs": "add_lab",
}
CORRECTORS = {
    "injuries": "correct_injury",
    "imaging": "correct_imaging_study",
    "bone-scans": "correct_bone_scan",
    "courses": "correct_course",
    "procedures": "correct_procedure",
    "labs": "correct_lab",
}


def _records() -> Any:
    from tracker.services import records

    return records


def check_patient(*, engine: Engine, mrn: str) -> None:
    p = table_of(Patient).c
    with engine.connect() as conn:
        if conn.execute(sa.select(p.id).where(p.mrn == mrn)).first() is None:
            raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def split(spec: FormSpec, values: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The top fields and the rows that have anything filled in (empty rows dropped,
    so "leave empty if not needed" holds)."""
    top = {f.name: _blank_to_none(values.get(f.name)) for f in spec.fields}
    rows: list[dict[str, Any]] = []
    if spec.rows_name:
        for i in range(row_count(values, spec, None)):
            row = {
                f.name: _blank_to_none(values.get(f"{spec.rows_name}[{i}].{f.name}"))
                for f in spec.row_fields
            }
            if any(v is not None for v in row.values()):
                # a correction names the stored finding it changes
                named = values.get(f"{spec.rows_name}[{i}].id", "")
                if named.isdigit():
                    row["id"] = named
                rows.append(row)
    return top, rows


def add(
    *,
    spec: FormSpec,
    engine: Engine,
    actor: str,
    mrn: str,
    values: dict[str, str],
    protocol: Protocol | None = None,
) -> Any:
    top, rows = split(spec, values)
    if spec.rows_name:
        top[spec.rows_name] = rows
    adder = getattr(_records(), ADDERS[spec.slug])
    return adder(engine=engine, actor=actor, mrn=mrn, protocol=protocol, **top)


def correct(
    *,
    spec: FormSpec,
    engine: Engine,
    actor: str,
    mrn: str,
    record_id: int,
    expected_version: int,
    values: dict[str, str],
    protocol: Protocol | None = None,
) -> Any:
    top, rows = split(spec, values)
    if spec.rows_name:
        top[spec.rows_name] = rows
    corrector = getattr(_records(), CORRECTORS[spec.slug])
    return corrector(
        engine=engine,
        actor=actor,
        record_id=record_id,
        expected_version=expected_version,
        changes=top,
        protocol=protocol,
    )


def void(
    *,
    spec: FormSpec,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    reason: Any,
    protocol: Protocol | None = None,
) -> Any:
    """Void one record of the form's kind (a study with its findings), with a reason."""
    return _records().void_record(
        engine=engine,
        actor=actor,
        entity=spec.entity,
        record_id=record_id,
        expected_version=expected_version,
        reason=reason,
        protocol=protocol,
    )


def stop(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    course_id: int,
    expected_version: int,
    values: dict[str, str],
    protocol: Protocol | None = None,
) -> Any:
    return _records().stop_course(
        engine=engine,
        actor=actor,
        course_id=course_id,
        expected_version=expected_version,
        end_date=_blank_to_none(values.get("end_date")),
        reason=_blank_to_none(values.get("reason")),
        protocol=protocol,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def current_values(
    *, spec: FormSpec, engine: Engine, mrn: str, record_id: int
) -> tuple[dict[str, str], int]:
    """The stored record as form values, and its version (for the conflict check)."""
    with Session(engine) as session:
        story = load_story(session, mrn)
    found: Any = None
    rows: list[Any] = []
    if spec.slug == "imaging":
        for item in story.studies:
            if item.study.id == record_id:
                found, rows = item.study, item.findings
    else:
        pools: dict[str, list[Any]] = {
            "injuries": story.injuries,
            "bone-scans": story.bone_scans,
            "courses": story.courses,
            "procedures": story.procedures,
            "labs": story.labs,
        }
        found = next((r for r in pools[spec.slug] if r.id == record_id), None)
        if spec.slug == "bone-scans" and found is not None:
            rows = [found]
    if found is None:
        raise NotFound(f"{spec.title} {record_id} is not a record of {mrn}.")
    values = {f.name: _text(getattr(found, f.name, None)) for f in spec.fields}
    if spec.slug == "bone-scans":
        values["date"] = _text(found.date)
    for i, row in enumerate(rows):
        if spec.slug == "imaging":
            values[f"{spec.rows_name}[{i}].id"] = str(row.id)
        for f in spec.row_fields:
            values[f"{spec.rows_name}[{i}].{f.name}"] = _text(getattr(row, f.name, None))
    return values, int(getattr(found, "version", 1) or 1)
