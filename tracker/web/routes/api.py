"""The JSON API under /api/v1: the same services and the same assessment as the CLI.

Bodies are typed with the vocabulary, so the OpenAPI document lists the allowed
values. Text and numbers are typed with the rules of `tracker.values` and the CSV
column they become (one rule per value): the same limits and the same words as the
CSV import and the forms. A field no body has is refused, naming it (a misspelt
`note` is never dropped silently). Everything the types cannot say (a scan before
birth, an end before its start, a date in the future) is refused by the record
services with the field's path, as a 422.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from tracker import values, vocab
from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_format import FileFormat, format_number
from tracker.protocol import Protocol
from tracker.services.audit import record_views
from tracker.services.patients import list_patients
from tracker.services.worklist import (
    MAX_PAGE,
    PAGE_SIZE,
    Cursor,
    DueWindow,
    WorklistFilters,
    worklist,
)
from tracker.web import saving
from tracker.web.actions import acknowledge_reminder
from tracker.web.auth import CAN_EDIT, Viewer, api_error_responses, require
from tracker.web.clinic import ApiAsOf
from tracker.web.deps import ApiViewer, EngineDep, api_viewer
from tracker.web.formspec import FORMS, MAX_ROWS
from tracker.web.identity import log_view
from tracker.web.views import patient_view

router = APIRouter(dependencies=[Depends(api_viewer)], responses=api_error_responses())

Mrn = Annotated[str, Path(min_length=1, max_length=values.MRN_MAX, pattern=r"^[^\x00-\x1f\x7f/]+$")]


# --- body types: the rules of tracker.values, with the limits of the CSV columns ------------


def _refuse(problem: str | None) -> None:
    if problem is not None:  # the reason alone, as the CSV import and the forms word it
        raise PydanticCustomError("value_error", problem)


def _text_rule(column: fmt.Column) -> Any:
    """The CSV column's own rule for text (validate._text_column), on the value as the
    import reads it (trimmed); a blank value means absent there, and here."""
    assert column.max_length is not None
    limit = column.max_length

    def check(value: str | None) -> str | None:
        text = (value or "").strip()
        if text == "":
            return value
        if column.name == "mrn":
            _refuse(values.mrn_problem(text))
        elif column.kind == "identifier":
            _refuse(values.identifier_problem(text, limit=limit))
        else:
            _refuse(values.text_problem(text, limit=limit, line_breaks=column.kind == "note"))
        return value

    return AfterValidator(check)


def _rule_of(file: FileFormat, name: str) -> Any:
    return _text_rule(file.column(name))


def _limit_of(file: FileFormat, name: str) -> Any:
    return Field(default=None, json_schema_extra={"maxLength": file.column(name).max_length})


def _number_rule(*, positive: bool) -> Any:
    def check(value: float | None) -> float | None:
        if value is None:
            return None
        _refuse(values.number_problem(value))
        if positive and value <= 0:
            _refuse(f"{format_number(value)} must be greater than 0")
        return value

    return AfterValidator(check)


_NUMBER_SCHEMA = {"minimum": -values.NUMBER_LIMIT, "maximum": values.NUMBER_LIMIT}
Number = Annotated[float, _number_rule(positive=False), Field(json_schema_extra=_NUMBER_SCHEMA)]
Positive = Annotated[
    float,
    _number_rule(positive=True),
    Field(json_schema_extra={"exclusiveMinimum": 0, "maximum": values.NUMBER_LIMIT}),
]


def _day_rule(value: dt.date) -> dt.date:
    if value < values.EARLIEST_DATE:
        _refuse(str(values.early_reason(value.isoformat())))
    return value


# A clinical date: from values.EARLIEST_DATE; the services refuse one after today.
Day = Annotated[
    dt.date,
    AfterValidator(_day_rule),
    Field(description=f"YYYY-MM-DD, from {values.EARLIEST_DATE.isoformat()} to today"),
]
Note = Annotated[
    str | None, _rule_of(fmt.INJURIES, "notes"), _limit_of(fmt.INJURIES, "notes")
]  # every notes column has values.NOTE_MAX


class Body(BaseModel):
    """A request body: a field it does not have is refused with a 422 naming it."""

    model_config = ConfigDict(extra="forbid")


def _protocol(request: Request) -> Any:
    return request.app.state.protocol


# the clinic protocol the app runs under: a save re-plans the patient's reminders with it
ProtocolDep = Annotated[Protocol, Depends(_protocol)]


# --- reading ---------------------------------------------------------------------------------


@router.get("/patients", summary="Find patients")
def api_patients(
    viewer: ApiViewer,
    engine: EngineDep,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    team: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    injury: vocab.InjuryKind | None = None,
    ho: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    rows = list_patients(
        engine=engine,
        team=team or None,
        injury=injury.value if injury else None,
        with_ho=ho,
        search=q or None,
        limit=limit,
    )
    # a row per patient returned (issue 15), as the search page logs its rows
    search = {"q": q, "team": team, "injury": injury.value if injury else None, "ho": ho}
    record_views(
        engine=engine, actor=viewer.username, mrns=[str(r.mrn) for r in rows],
        what="api patient search", search=search,
    )  # fmt: skip
    return [
        {
            "mrn": r.mrn,
            "name": r.name,
            "birth_date": r.birth_date,
            "sex": r.sex,
            "team": r.team,
            "injuries": r.injuries.split(", ") if r.injuries else [],
            "ho_sites": r.ho_sites,
            "last_imaging": r.last_imaging,
        }
        for r in rows
    ]


@router.get("/patients/{mrn}", summary="A patient's story, assessment and reminders")
def api_patient(
    mrn: Mrn,
    request: Request,
    viewer: ApiViewer,
    engine: EngineDep,
    as_of: ApiAsOf,
) -> dict[str, Any]:
    view = patient_view(engine=engine, mrn=mrn, as_of=as_of, protocol=_protocol(request))
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="api patient")
    p = view.story.patient
    return {
        "mrn": p.mrn,
        "family_name": p.family_name,
        "given_name": p.given_name,
        "birth_date": p.birth_date,
        "sex": p.sex,
        "team": p.team,
        "version": p.version,  # send it back to edit the patient (PATCH, 409 if stale)
        "timeline": [
            {"date": e.date, "kind": e.kind, "summary": e.summary, "details": list(e.details)}
            for e in view.events
        ],
        "assessment": view.assessment,
        "reminders": [_reminder(r) for r in view.reminders],
    }


@router.get("/patients/{mrn}/assessment", summary="Model-spec section 8 assessment")
def api_assessment(
    mrn: Mrn,
    request: Request,
    viewer: ApiViewer,
    engine: EngineDep,
    as_of: ApiAsOf,
) -> dict[str, Any]:
    view = patient_view(engine=engine, mrn=mrn, as_of=as_of, protocol=_protocol(request))
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="api assessment")
    return view.assessment


def _reminder(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "mrn", "name", "team", "rule", "site", "side", "due", "status", "detail")
    return {**{k: row.get(k) for k in keys}, "late": bool(row.get("late")),
            "days_overdue": row.get("days_overdue")}  # fmt: skip


@router.get(
    "/reminders",
    summary="The worklist: reminders not yet closed, most overdue first",
    description="A page of at most `limit` rows in the worklist's order (due date, then "
    "id). When more follow, the `Link` header names the next page "
    '(`<...&cursor=2026-11-03.812>; rel="next"`); pass its `cursor` on.',
)
def api_reminders(
    request: Request,
    response: Response,
    viewer: ApiViewer,
    engine: EngineDep,
    team: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    rule: vocab.ReminderRule | None = None,
    status: Literal["pending", "due", "sent"] | None = None,
    window: DueWindow | None = None,
    mine: Annotated[bool, Query(description="Only the caller's own team.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9.-]*$")] = None,
) -> list[dict[str, Any]]:
    from urllib.parse import urlencode

    from tracker.web.clinic import today

    filters = WorklistFilters(team=team or None, rule=rule, status=status, window=window, mine=mine)
    page = worklist(
        engine=engine,
        today=today(request),
        filters=filters,
        my_team=viewer.team,
        after=Cursor.parse(cursor, name="cursor"),
        limit=limit,
    )
    if page.next is not None:
        query = {**filters.query(), "limit": str(limit), "cursor": str(page.next)}
        response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    record_views(
        engine=engine, actor=viewer.username, mrns=[str(r["mrn"]) for r in page.rows],
        what="api worklist", search=filters.query(),
    )  # fmt: skip
    return [_reminder(r) for r in page.rows]


@router.post("/reminders/{reminder_id}/acknowledge", summary="Acknowledge a reminder")
def api_acknowledge(
    reminder_id: Annotated[int, Path(ge=1, le=2**31 - 1)], viewer: ApiViewer, engine: EngineDep
) -> dict[str, Any]:
    done = acknowledge_reminder(engine=engine, viewer=viewer, reminder_id=reminder_id)
    return {"id": reminder_id, "status": "acknowledged", "previous": done.previous}


# --- writing ---------------------------------------------------------------------------------


class InjuryIn(Body):
    kind: vocab.InjuryKind
    date: Day
    notes: Note = None


class FindingIn(Body):
    site: vocab.Site
    side: vocab.Side
    ho: vocab.HoPresence
    soft_tissue: vocab.SoftTissue | None = None
    calcification: vocab.Calcification | None = None
    cortex: vocab.Cortex | None = None
    trabeculae: vocab.Trabeculae | None = None
    vascularity: vocab.Vascularity | None = None
    uptake: vocab.Uptake | None = None
    # the grade's bounds are the CSV column's, refused with its words by the services
    brooker: Annotated[
        int | None,
        Field(json_schema_extra={"minimum": vocab.BROOKER_MIN, "maximum": vocab.BROOKER_MAX}),
    ] = None
    della_valle: vocab.DellaValle | None = None
    size_mm: Positive | None = None
    notes: Note = None


class ImagingStudyIn(Body):
    date: Day
    modality: vocab.Modality
    accession: Annotated[
        str | None, _rule_of(fmt.IMAGING, "accession"), _limit_of(fmt.IMAGING, "accession")
    ] = None
    notes: Note = None
    findings: Annotated[list[FindingIn], Field(min_length=1, max_length=MAX_ROWS)]


class MeasurementIn(Body):
    site: vocab.Site
    side: vocab.Side
    phase: vocab.Phase
    ratio: Positive | None = None
    lesion_counts: Positive | None = None
    reference_counts: Positive | None = None
    reference_region: Annotated[
        str | None,
        _rule_of(fmt.BONE_SCANS, "reference_region"),
        _limit_of(fmt.BONE_SCANS, "reference_region"),
    ] = None


class BoneScanIn(Body):
    date: Day
    measurements: Annotated[list[MeasurementIn], Field(min_length=1, max_length=MAX_ROWS)]


class CourseIn(Body):
    agent: vocab.Agent
    intent: vocab.Intent
    start_date: Day
    planned_weeks: Annotated[
        Positive | None, Field(json_schema_extra={"maximum": fmt.PLANNED_WEEKS_MAX})
    ] = None
    dose: Positive | None = None
    dose_unit: Annotated[
        str | None, _rule_of(fmt.TREATMENTS, "dose_unit"), _limit_of(fmt.TREATMENTS, "dose_unit")
    ] = None
    site: vocab.Site | None = None
    side: vocab.Side | None = None


class ProcedureIn(Body):
    kind: vocab.ProcedureKind
    date: Day
    site: vocab.Site
    side: vocab.Side
    notes: Note = None


class LabIn(Body):
    date: Day
    analyte: vocab.Analyte
    value: Number
    # checked against its analyte's units with the form's and the import's words (422)
    unit: Annotated[
        str,
        _text_rule(fmt.LABS.column("unit")),
        Field(
            min_length=1,
            json_schema_extra={"maxLength": fmt.LABS.column("unit").max_length},
            description="One of the analyte's units (model-spec v2, section 1): "
            + "; ".join(f"{a} {', '.join(u)}" for a, u in vocab.LAB_UNITS.items()),
        ),
    ]
    ref_low: Number | None = None
    ref_high: Number | None = None


def _as_form(body: BaseModel, rows_name: str | None) -> dict[str, str]:
    """A body as the values a form would send, so both go through one validation."""
    values: dict[str, str] = {}
    data = body.model_dump(mode="json")
    for key, value in data.items():
        if key == rows_name:
            for i, row in enumerate(value):
                for name, item in row.items():
                    values[f"{rows_name}[{i}].{name}"] = _text(item)
        else:
            values[key] = _text(value)
    return values


def _text(value: Any) -> str:
    """A value as the form would send it; a number in full (not rounded to 6 digits)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _add(
    slug: str, body: BaseModel, mrn: str, viewer: Viewer, engine: Any, protocol: Protocol
) -> dict[str, Any]:
    require(viewer, CAN_EDIT, "add records")
    spec = FORMS[slug]
    saving.check_patient(engine=engine, mrn=mrn)
    saved = saving.add(
        spec=spec, engine=engine, actor=viewer.username, mrn=mrn,
        values=_as_form(body, spec.rows_name), protocol=protocol,
    )  # fmt: skip
    return {"mrn": mrn, "saved": spec.entity, "id": _id_of(saved)}


def _id_of(saved: Any) -> Any:
    if isinstance(saved, tuple | list):  # several bone-scan measurements
        return [getattr(s, "id", None) for s in saved]
    return getattr(saved, "id", None)


@router.post("/patients/{mrn}/injuries", status_code=201, summary="Add an injury")
def api_add_injury(
    mrn: Mrn, body: InjuryIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("injuries", body, mrn, viewer, engine, protocol)


@router.post("/patients/{mrn}/imaging", status_code=201, summary="Add an imaging study")
def api_add_imaging(
    mrn: Mrn, body: ImagingStudyIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("imaging", body, mrn, viewer, engine, protocol)


@router.post("/patients/{mrn}/bone-scans", status_code=201, summary="Add bone-scan measurements")
def api_add_bone_scan(
    mrn: Mrn, body: BoneScanIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("bone-scans", body, mrn, viewer, engine, protocol)


@router.post("/patients/{mrn}/courses", status_code=201, summary="Start a treatment course")
def api_add_course(
    mrn: Mrn, body: CourseIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("courses", body, mrn, viewer, engine, protocol)


@router.post("/patients/{mrn}/procedures", status_code=201, summary="Add a procedure")
def api_add_procedure(
    mrn: Mrn, body: ProcedureIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("procedures", body, mrn, viewer, engine, protocol)


@router.post("/patients/{mrn}/labs", status_code=201, summary="Add a lab result")
def api_add_lab(
    mrn: Mrn, body: LabIn, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> Any:
    return _add("labs", body, mrn, viewer, engine, protocol)


# --- voiding ---------------------------------------------------------------------------------

RecordKind = Literal["injuries", "imaging", "bone-scans", "courses", "procedures", "labs"]


class VoidIn(Body):
    # free text like a note (kept in the audit row): line breaks, no other control character
    reason: Annotated[str, _text_rule(fmt.INJURIES.column("notes")), Field(min_length=1)]
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]


@router.post("/records/{entity}/{record_id}/void", summary="Void a record, with a reason")
def api_void(
    entity: RecordKind,
    record_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: VoidIn,
    viewer: ApiViewer,
    engine: EngineDep,
    protocol: ProtocolDep,
) -> dict[str, Any]:
    """The record (a study with its findings) stays stored and audited but is no longer
    read; `version` is the one the caller saw (409 if it changed since)."""
    require(viewer, CAN_EDIT, "void records")
    spec = FORMS[entity]
    saved = saving.void(
        spec=spec, engine=engine, actor=viewer.username, record_id=record_id,
        expected_version=body.version, reason=body.reason, protocol=protocol,
    )  # fmt: skip
    return {
        "mrn": saved.mrn,
        "voided": spec.entity,
        "id": saved.id,
        "version": saved.version,
        "reason": body.reason.strip(),
    }


# --- patients: add one, edit one's demographics and team ---------------------------------------

Name = Annotated[
    str | None, _rule_of(fmt.PATIENTS, "family_name"), _limit_of(fmt.PATIENTS, "family_name")
]
Team = Annotated[str | None, _rule_of(fmt.PATIENTS, "team"), _limit_of(fmt.PATIENTS, "team")]
BirthDate = Annotated[Day | None, Field(description="YYYY-MM-DD, from 1900-01-01 to today")]


class PatientIn(Body):
    """A new patient. Values are checked as a patients.csv row would be (the same MRN,
    name and date rules); the team must be one of the clinic's teams."""

    mrn: Annotated[
        str,
        _text_rule(fmt.MRN),
        Field(min_length=1, json_schema_extra={"maxLength": values.MRN_MAX}),
    ]
    family_name: Name = None
    given_name: Name = None
    birth_date: BirthDate = None
    sex: vocab.Sex | None = None
    team: Team = None


class PatientChange(Body):
    """Only the fields sent are changed (null clears one); `version` is the one the
    caller read (`GET /patients/{mrn}`), 409 if the patient changed since. The MRN is
    never changed: the EHR, PACS and imports find the patient by it."""

    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    family_name: Name = None
    given_name: Name = None
    birth_date: BirthDate = None
    sex: vocab.Sex | None = None
    team: Team = None


@router.post("/patients", status_code=201, summary="Add a patient")
def api_add_patient(
    body: PatientIn, request: Request, viewer: ApiViewer, engine: EngineDep, protocol: ProtocolDep
) -> dict[str, Any]:
    from tracker.services.patients import add_patient
    from tracker.web.clinic import today

    require(viewer, CAN_EDIT, "add patients")
    values = body.model_dump(mode="json")
    saved = add_patient(
        engine=engine, actor=viewer.username, today=today(request), protocol=protocol, **values
    )
    return {"mrn": saved.mrn, "id": saved.id, "version": saved.version}


@router.patch("/patients/{mrn}", summary="Edit a patient's demographics or team")
def api_edit_patient(
    mrn: Mrn,
    body: PatientChange,
    request: Request,
    viewer: ApiViewer,
    engine: EngineDep,
    protocol: ProtocolDep,
) -> dict[str, Any]:
    from tracker.services.patients import update_patient
    from tracker.web.clinic import today

    require(viewer, CAN_EDIT, "edit patients")
    changes = body.model_dump(mode="json", exclude_unset=True)
    version = changes.pop("version")
    saved = update_patient(
        engine=engine, actor=viewer.username, mrn=mrn, expected_version=version,
        changes=changes, today=today(request), protocol=protocol,
    )  # fmt: skip
    return {"mrn": saved.mrn, "version": saved.version, "changed": saved.version != version}
