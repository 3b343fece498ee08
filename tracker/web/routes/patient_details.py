"""Adding a patient and editing one's demographics and team (issue 14).

The form's values go to `services.patients.add_patient` / `update_patient`, which
check them as a patients.csv row (one rule per value), version and audit them. A
refused value shows the form again with the reason beside its input; an edit that
lost a race (someone saved the patient first) is refused, never merged silently.
The MRN is fixed once stored: the edit form shows it, it does not offer to change it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Engine

from tracker import labels, vocab
from tracker.errors import Conflict, ValidationFailed
from tracker.services.audit import record_view
from tracker.services.patients import EDITABLE, add_patient, display_name, update_patient
from tracker.services.teams import list_teams
from tracker.web.auth import CAN_EDIT, Viewer, require
from tracker.web.clinic import protocol_of, today
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.flash import flash
from tracker.web.formspec import Field, choices
from tracker.web.render import render

router = APIRouter(include_in_schema=False)

MRN = Field("mrn", "MRN (hospital number)", required=True)
LABELS = {
    "mrn": MRN.label,
    "family_name": "Family name",
    "given_name": "Given name",
    "birth_date": "Birth date",
    "sex": "Sex",
    "team": "Team",
}
PREFILLED = ("mrn", "family_name", "given_name")  # ?mrn=... from a search that found nobody


def patient_fields(engine: Engine) -> tuple[Field, ...]:
    """The editable fields; the team is a choice of the clinic's stored teams."""
    teams = tuple(t.name for t in list_teams(engine=engine))
    return (
        Field("family_name", LABELS["family_name"]),
        Field("given_name", LABELS["given_name"]),
        Field("birth_date", LABELS["birth_date"], "date"),
        Field("sex", LABELS["sex"], "select", choices(vocab.Sex)),
        Field("team", LABELS["team"], "select", teams),
    )


def _show(
    request: Request,
    engine: Engine,
    *,
    heading: str,
    values: dict[str, str],
    patient: Any = None,
    version: int | None = None,
    failed: ValidationFailed | None = None,
    clash: str | None = None,
    status: int = 200,
) -> Response:
    fields = patient_fields(engine)
    shown = {f.name for f in fields} | ({"mrn"} if patient is None else set())
    errors: dict[str, str] = {}  # input name -> what is wrong, beside that input
    general: list[str] = []  # every problem, as a sentence, above the form
    unmarked = 0  # problems beside no input (a stale version)
    for said in labels.field_errors(failed.problems if failed else [], values=values):
        if said.path in shown:
            errors[said.path] = (
                f"{errors[said.path]}; {said.says}" if said.path in errors else said.says
            )
        else:
            unmarked += 1
        general.append(str(said))
    if clash:
        general.append(clash)
        unmarked += 1
    return render(
        request,
        "patient_form.j2",
        {
            "heading": heading,
            "patient": patient,
            "mrn_field": MRN,
            "fields": fields,
            "values": values,
            "errors": errors,
            "general": general,
            "unmarked": unmarked,
            "clash": clash,
            "version": version,
            "today": today(request),
            "mrn_q": quote(patient.mrn, safe="") if patient else "",
            "cancel": f"/patients/{quote(patient.mrn, safe='')}" if patient else "/patients",
        },
        status=status,
    )


async def _posted(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _stored(engine: Engine, mrn: str) -> Any:
    """The live patient row (NotFound otherwise), loaded with the story's own query."""
    from sqlmodel import Session

    from tracker.store.story import load_story

    with Session(engine) as session:
        patient = load_story(session, mrn).patient
        session.expunge_all()
    return patient


def _as_values(patient: Any) -> dict[str, str]:
    out = {}
    for name in ("mrn", *EDITABLE):
        value = getattr(patient, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else (value or "")
    return out


def _named(family: str | None, given: str | None, mrn: str) -> str:
    name = display_name(family, given)
    return f"{mrn} ({name})" if name else mrn


def _to_patient(mrn: str) -> Response:
    return RedirectResponse(f"/patients/{quote(mrn, safe='')}", status_code=303)


def _own_team(viewer: Viewer, engine: Engine) -> str:
    teams = {t.name for t in list_teams(engine=engine)}
    return viewer.team if viewer.team in teams else ""


@router.get("/patients/new")
def new_patient_form(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    require(viewer, CAN_EDIT, "add patients")
    values = {"team": _own_team(viewer, engine)}  # a unit mostly adds its own patients
    for name in PREFILLED:
        given = request.query_params.get(name, "")
        if given and len(given) <= 100:
            values[name] = given
    return _show(request, engine, heading="Add a patient", values=values)


@router.post("/patients/new")
async def add_patient_page(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    require(viewer, CAN_EDIT, "add patients")
    values = await _posted(request)
    try:
        saved = add_patient(
            engine=engine, actor=viewer.username, mrn=_blank_to_none(values.get("mrn")),
            **{name: _blank_to_none(values.get(name)) for name in EDITABLE},
            today=today(request), protocol=protocol_of(request),
        )  # fmt: skip
    except ValidationFailed as failed:
        return _show(
            request, engine, heading="Add a patient", values=values, failed=failed, status=422
        )
    except Conflict as clash:
        return _show(
            request, engine, heading="Add a patient", values=values, clash=str(clash), status=409
        )
    name = _named(_blank_to_none(values.get("family_name")), values.get("given_name"), saved.mrn)
    flash(request, f"Patient {name} added.")
    return _to_patient(saved.mrn)


@router.get("/patients/{mrn}/edit")
def edit_patient_form(
    mrn: str, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "edit patients")
    patient = _stored(engine, mrn)
    record_view(engine=engine, actor=viewer.username, mrn=patient.mrn, what="patient edit form")
    return _show(
        request,
        engine,
        heading="Edit patient",
        values=_as_values(patient),
        patient=patient,
        version=int(patient.version),
    )


@router.post("/patients/{mrn}/edit")
async def edit_patient(
    mrn: str, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "edit patients")
    patient = _stored(engine, mrn)
    values = await _posted(request)
    version = int(values["version"]) if values.get("version", "").isdigit() else 0
    # only what the form sent is changed; the MRN is not a field of this form
    changes = {name: _blank_to_none(values[name]) for name in EDITABLE if name in values}
    shown = dict(values, mrn=patient.mrn)
    try:
        saved = update_patient(
            engine=engine, actor=viewer.username, mrn=patient.mrn, expected_version=version,
            changes=changes, today=today(request), protocol=protocol_of(request),
        )  # fmt: skip
    except ValidationFailed as failed:
        return _show(
            request, engine, heading="Edit patient", values=shown, patient=patient,
            version=version, failed=failed, status=422,
        )  # fmt: skip
    except Conflict as clash:
        return _show(
            request, engine, heading="Edit patient", values=shown, patient=patient,
            version=version, clash=str(clash), status=409,
        )  # fmt: skip
    if saved.version == version:
        named = _named(patient.family_name, patient.given_name, patient.mrn)
        flash(request, f"Nothing changed for patient {named}.")
    else:
        stored = _stored(engine, patient.mrn)
        flash(
            request, f"Patient {_named(stored.family_name, stored.given_name, stored.mrn)} saved."
        )
    return _to_patient(patient.mrn)
