"""The JSON API under /api/v1: the same services and the same assessment as the CLI.

Bodies are typed with the vocabulary, so the OpenAPI document lists the allowed
values; everything the types cannot say (a scan before birth, an end before its
start) is refused by the record services with the field's path, as a 422.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from tracker import vocab
from tracker.protocol import Protocol
from tracker.services.patients import list_patients
from tracker.web import saving
from tracker.web.actions import acknowledge_reminder
from tracker.web.auth import CAN_EDIT, Viewer, api_error_responses, require
from tracker.web.deps import ApiViewer, EngineDep, api_viewer
from tracker.web.formspec import FORMS
from tracker.web.identity import log_view
from tracker.web.views import open_reminders, patient_view

router = APIRouter(dependencies=[Depends(api_viewer)], responses=api_error_responses())

Mrn = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$")]
Text = Annotated[str | None, Field(default=None, max_length=2000, pattern=r"^[^\x00]*$")]
Short = Annotated[str | None, Field(default=None, max_length=100, pattern=r"^[^\x00]*$")]
Positive = Annotated[float, Field(gt=0, lt=1e12)]
Number = Annotated[float, Field(ge=-1e12, le=1e12)]
MaxDate = dt.date(9999, 12, 31)


def _protocol(request: Request) -> Any:
    return request.app.state.protocol


# the clinic protocol the app runs under: a save re-plans the patient's reminders with it
ProtocolDep = Annotated[Protocol, Depends(_protocol)]


# --- reading ---------------------------------------------------------------------------------


@router.get("/patients", summary="Find patients")
def api_patients(
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
    as_of: Annotated[dt.date | None, Query(le=MaxDate)] = None,
) -> dict[str, Any]:
    view = patient_view(
        engine=engine, mrn=mrn, as_of=as_of or dt.date.today(), protocol=_protocol(request)
    )
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="api patient")
    p = view.story.patient
    return {
        "mrn": p.mrn,
        "family_name": p.family_name,
        "given_name": p.given_name,
        "birth_date": p.birth_date,
        "sex": p.sex,
        "team": p.team,
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
    as_of: Annotated[dt.date | None, Query(le=MaxDate)] = None,
) -> dict[str, Any]:
    view = patient_view(
        engine=engine, mrn=mrn, as_of=as_of or dt.date.today(), protocol=_protocol(request)
    )
    log_view(engine=engine, viewer=viewer, mrn=mrn, what="api assessment")
    return view.assessment


def _reminder(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "mrn", "team", "rule", "site", "side", "due", "status", "detail", "late")
    return {k: row.get(k) for k in keys}


@router.get("/reminders", summary="The worklist: reminders not yet closed")
def api_reminders(
    engine: EngineDep,
    team: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
) -> list[dict[str, Any]]:
    return [_reminder(r) for r in open_reminders(engine=engine, team=team or None)]


@router.post("/reminders/{reminder_id}/acknowledge", summary="Acknowledge a reminder")
def api_acknowledge(
    reminder_id: Annotated[int, Path(ge=1, le=2**31 - 1)], viewer: ApiViewer, engine: EngineDep
) -> dict[str, Any]:
    previous = acknowledge_reminder(engine=engine, viewer=viewer, reminder_id=reminder_id)
    return {"id": reminder_id, "status": "acknowledged", "previous": previous}


# --- writing ---------------------------------------------------------------------------------


class InjuryIn(BaseModel):
    kind: vocab.InjuryKind
    date: Annotated[dt.date, Field(le=MaxDate)]
    notes: Text = None


class FindingIn(BaseModel):
    site: vocab.Site
    side: vocab.Side
    ho: vocab.HoPresence
    soft_tissue: vocab.SoftTissue | None = None
    calcification: vocab.Calcification | None = None
    cortex: vocab.Cortex | None = None
    trabeculae: vocab.Trabeculae | None = None
    vascularity: vocab.Vascularity | None = None
    uptake: vocab.Uptake | None = None
    brooker: Annotated[int | None, Field(ge=0, le=4)] = None
    della_valle: vocab.DellaValle | None = None
    size_mm: Positive | None = None
    notes: Text = None


class ImagingStudyIn(BaseModel):
    date: Annotated[dt.date, Field(le=MaxDate)]
    modality: vocab.Modality
    accession: Short = None
    notes: Text = None
    findings: Annotated[list[FindingIn], Field(min_length=1, max_length=20)]


class MeasurementIn(BaseModel):
    site: vocab.Site
    side: vocab.Side
    phase: vocab.Phase
    ratio: Positive | None = None
    lesion_counts: Positive | None = None
    reference_counts: Positive | None = None
    reference_region: Short = None


class BoneScanIn(BaseModel):
    date: Annotated[dt.date, Field(le=MaxDate)]
    measurements: Annotated[list[MeasurementIn], Field(min_length=1, max_length=20)]


class CourseIn(BaseModel):
    agent: vocab.Agent
    intent: vocab.Intent
    start_date: Annotated[dt.date, Field(le=MaxDate)]
    planned_weeks: Annotated[float | None, Field(gt=0, le=520)] = None
    dose: Positive | None = None
    dose_unit: Short = None
    site: vocab.Site | None = None
    side: vocab.Side | None = None


class ProcedureIn(BaseModel):
    kind: vocab.ProcedureKind
    date: Annotated[dt.date, Field(le=MaxDate)]
    site: vocab.Site
    side: vocab.Side
    notes: Text = None


class LabIn(BaseModel):
    date: Annotated[dt.date, Field(le=MaxDate)]
    analyte: vocab.Analyte
    value: Number
    # checked against its analyte's units with the form's and the import's words (422)
    unit: Annotated[
        str,
        Field(
            min_length=1,
            max_length=30,
            pattern=r"^[^\x00]*$",
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
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
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


class VoidIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
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
