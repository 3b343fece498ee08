"""Form values in, `tracker.services.records` calls out: the one place that knows how
the record services are called, shared by the forms and the API.

Values stay the strings the form sent (blank means absent): the services validate
them with the CSV import's own checks and name the field of any refused value.
Every save, correction, stop and void passes the app's clinic protocol, so the
services re-plan the patient's reminders before the response (model-spec section 9).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker import vocab
from tracker.errors import NotFound, Problem, ValidationFailed
from tracker.interchange.csv_format import format_number
from tracker.protocol import Protocol
from tracker.store.models import Patient, Reminder, table_of
from tracker.store.story import load_story
from tracker.templating import words
from tracker.web.formspec import (
    BONE_SCAN_STUDY,
    EXAM,
    FormSpec,
    fits,
    grid_names,
    row_count,
    too_many_rows,
)

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
    "examination": "correct_exam",
    "range-of-motion": "correct_range_of_motion",
}


def _records() -> Any:
    from tracker.services import records

    return records


def check_patient(*, engine: Engine, mrn: str) -> None:
    p = table_of(Patient).c
    with engine.connect() as conn:
        if conn.execute(sa.select(p.id).where(p.mrn == mrn)).first() is None:
            raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")


@dataclass(frozen=True)
class PatientBanner:
    """Who a form is about, as `_banner.j2` shows it (any object with these names will
    do there): so nobody enters a scan on the wrong patient."""

    mrn: str
    family_name: str | None
    given_name: str | None
    birth_date: dt.date | None
    sex: str | None
    team: str | None


def patient_banner(*, engine: Engine, mrn: str) -> PatientBanner:
    """The live patient's banner (one query); NotFound if there is no such patient."""
    p = table_of(Patient).c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.team).where(
                p.mrn == mrn, p.voided_at.is_(None)
            )
        ).first()
    if row is None:
        raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")
    return PatientBanner(*row)


@dataclass(frozen=True)
class ReminderToClose:
    """The reminder a form was opened from ("Record it"), as the form names it."""

    id: int
    rule: str
    site: str | None
    side: str | None
    due: dt.date
    status: str

    @property
    def open(self) -> bool:
        return self.status in ("pending", "due", "sent")


def reminder_of(*, engine: Engine, mrn: str, reminder_id: int) -> ReminderToClose:
    """One of the patient's reminders; NotFound if it is not theirs (a form of one
    patient never names, nor closes, another patient's reminder)."""
    r, p = table_of(Reminder).c, table_of(Patient).c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(r.id, r.rule, r.site, r.side, r.due, r.status)
            .join_from(table_of(Reminder), table_of(Patient), r.patient_id == p.id)
            .where(r.id == reminder_id, p.mrn == mrn)
        ).first()
    if row is None:
        raise NotFound(f"Reminder {reminder_id} is not a reminder of {mrn}.")
    return ReminderToClose(*row)


def _a(text: str) -> str:
    return ("an " if text[:1] in "aeiou" else "a ") + text


def misfits(spec: FormSpec, values: dict[str, str]) -> list[Problem]:
    """Values given for a finding's feature its study's modality cannot show (an
    ultrasound with a Brooker grade): each refused beside its input, with the fix."""
    modality = values.get("modality") or None
    if not spec.rows_name or modality not in vocab.values(vocab.Modality):
        return []  # an unknown modality is refused by the service, beside its own input
    problems = []
    for i in range(row_count(values, spec, None)):
        for f in spec.row_fields:
            name = f"{spec.rows_name}[{i}].{f.name}"
            if values.get(name) and not fits(f, modality):
                applies = ", ".join(words(m) for m in f.modalities)
                problems.append(
                    Problem(
                        spec.entity,
                        None,
                        name,
                        f"does not apply to {_a(words(modality))} (only to {applies}); "
                        "leave it blank or change the modality",
                    )
                )
    return problems


def _refuse_misfits(spec: FormSpec, values: dict[str, str]) -> None:
    """Refuse values a modality cannot show, and rows beyond the form's limit (every
    row sent is saved or the form is refused: none is dropped)."""
    problems = misfits(spec, values)
    beyond = too_many_rows(spec, values)
    if beyond is not None:
        problems.append(Problem(spec.entity, None, *beyond))
    if problems:
        raise ValidationFailed(problems)


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def split(spec: FormSpec, values: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The top fields and the rows that have anything filled in (empty rows dropped,
    so "leave empty if not needed" holds)."""
    top = {f.name: _blank_to_none(values.get(f.name)) for f in spec.fields}
    rows: list[dict[str, Any]] = []
    if spec.rows_name:
        for i in range(row_count(values, spec, None)):
            at = f"{spec.rows_name}[{i}]"
            row: dict[str, Any] = {
                f.name: _blank_to_none(values.get(f"{at}.{f.name}")) for f in spec.row_fields
            }
            for name in grid_names(spec):  # a bone-scan site's ratios, per phase
                row[name] = _blank_to_none(values.get(f"{at}.{name}"))
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
    _refuse_misfits(spec, values)
    top, rows = split(spec, values)
    if spec is EXAM:
        return add_examination(engine, actor, mrn, values, top, protocol)
    if spec.rows_name:
        top[spec.rows_name] = rows
    adder = getattr(
        _records(), "add_bone_scan_study" if spec is BONE_SCAN_STUDY else ADDERS[spec.slug]
    )
    return adder(engine=engine, actor=actor, mrn=mrn, protocol=protocol, **top)


ROM_INPUTS = ("movement", "degrees")


def add_examination(
    engine: Engine,
    actor: str,
    mrn: str,
    values: dict[str, str],
    top: dict[str, Any],
    protocol: Protocol | None,
) -> Any:
    """The examination form: its signs and the movements given degrees (a movement
    row left blank is skipped), stored together or not at all. A refusal names the
    input the form showed (`measurements[4].degrees`), skipped rows counted."""
    from tracker.services.exam_records import add_examination as store

    joint = {k: top.pop(k) for k in ("date", "site", "side")}
    shown: list[int] = []  # the form's row index of each measurement sent on
    measured: list[dict[str, Any]] = []
    for i in range(row_count(values, EXAM, None)):
        at = f"measurements[{i}]"
        if _blank_to_none(values.get(f"{at}.degrees")) is None:
            continue
        shown.append(i)
        measured.append({f: _blank_to_none(values.get(f"{at}.{f}")) for f in ROM_INPUTS})
    try:
        return store(
            engine=engine, actor=actor, mrn=mrn, exam=top, measurements=measured,
            protocol=protocol, **joint,
        )  # fmt: skip
    except ValidationFailed as failed:
        raise ValidationFailed([_shown_row(p, shown) for p in failed.problems]) from failed


def _shown_row(problem: Problem, shown: list[int]) -> Problem:
    head, dot, rest = problem.field.partition("].")
    if not dot or not head.startswith("measurements["):
        return problem
    index = head[len("measurements[") :]
    if not index.isdigit() or int(index) >= len(shown):
        return problem
    field = f"measurements[{shown[int(index)]}].{rest}"
    return Problem(problem.source, problem.line, field, problem.reason)


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
    _refuse_misfits(spec, values)
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
    if isinstance(value, float):  # in full: a form shown rounded would save it rounded
        return format_number(value)
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
            "examination": story.exams,
            "range-of-motion": story.range_of_motion,
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
