"""The record forms: add and correct each kind of record, stop a course.

A refused save shows the form again with what the user typed and each problem
beside its input; a save that lost a race (someone saved first) is refused with
the other person's change named, never silently overwritten.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tracker.errors import Conflict, NotFound, StaleRecord, ValidationFailed
from tracker.web import saving
from tracker.web.auth import CAN_EDIT, require
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.formspec import COURSE_STOP, FORMS, Field, FormSpec, row_count
from tracker.web.render import render

router = APIRouter(include_in_schema=False)
ROW_LABELS = {"findings": "Site finding", "measurements": "Measurement"}
VOID_REASON = Field("reason", "Reason for voiding", "textarea", required=True)


def _spec(slug: str) -> FormSpec:
    spec = FORMS.get(slug)
    if spec is None:
        raise NotFound(f"There is no '{slug}' form; use one of {', '.join(FORMS)}.")
    return spec


def _show(
    request: Request,
    *,
    mrn: str,
    spec: FormSpec,
    heading: str,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    general: list[str] | None = None,
    version: int | None = None,
    rows: int | None = None,
    status: int = 200,
    fields: Any = None,
    record_id: int | None = None,
    void_values: dict[str, str] | None = None,
    void_errors: dict[str, str] | None = None,
) -> Response:
    mrn_q = quote(mrn, safe="")
    void_url = f"/patients/{mrn_q}/{spec.slug}/{record_id}/void" if record_id else None
    return render(
        request,
        "record_form.j2",
        {
            "heading": heading,
            "mrn": mrn,
            "mrn_q": mrn_q,
            "spec_fields": fields or spec.fields,
            "rows_name": spec.rows_name if fields is None else None,
            "row_fields": spec.row_fields,
            "row_label": ROW_LABELS.get(spec.rows_name or "", "Row"),
            "rows": row_count(values, spec, rows),
            "values": values,
            "errors": errors or {},
            "general": general or [],
            "version": version,
            "void_url": void_url,
            "void_field": VOID_REASON,
            "void_values": void_values or {},
            "void_errors": void_errors or {},
        },
        status=status,
    )


async def _typed(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v.strip() for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _errors(failed: ValidationFailed) -> tuple[dict[str, str], list[str]]:
    by_field: dict[str, str] = {}
    for problem in failed.problems:
        by_field[problem.field] = (
            f"{by_field[problem.field]}; {problem.reason}"
            if problem.field in by_field
            else problem.reason
        )
    general = [f"{p.field}: {p.reason}" for p in failed.problems]
    return by_field, general


def _back(mrn: str, message: str) -> Response:
    return RedirectResponse(
        f"/patients/{quote(mrn, safe='')}?{urlencode({'done': message})}", status_code=303
    )


@router.get("/patients/{mrn}/{slug}/new")
def new_record_form(mrn: str, slug: str, request: Request, viewer: PageViewer) -> Response:
    require(viewer, CAN_EDIT, "add records")
    spec = _spec(slug)
    prefill = {k: v for k, v in request.query_params.items() if len(v) <= 100}
    values: dict[str, str] = {}
    for f in spec.fields:
        if f.name in prefill:
            values[f.name] = prefill[f.name]
    if spec.rows_name:
        for f in spec.row_fields:
            if f.name in prefill:
                values[f"{spec.rows_name}[0].{f.name}"] = prefill[f.name]
    saving.check_patient(engine=request.app.state.engine, mrn=mrn)
    return _show(request, mrn=mrn, spec=spec, heading=f"Add {spec.title.lower()}", values=values)


@router.post("/patients/{mrn}/{slug}/new")
async def add_record(
    mrn: str, slug: str, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "add records")
    spec = _spec(slug)
    values = await _typed(request)
    heading = f"Add {spec.title.lower()}"
    if "more_rows" in values and "save" not in values:
        wanted = int(values["more_rows"]) if values["more_rows"].isdigit() else None
        return _show(request, mrn=mrn, spec=spec, heading=heading, values=values, rows=wanted)
    try:
        saving.add(
            spec=spec, engine=engine, actor=viewer.username, mrn=mrn, values=values,
            protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, general = _errors(failed)
        return _show(
            request, mrn=mrn, spec=spec, heading=heading, values=values, errors=errors,
            general=general, status=422,
        )  # fmt: skip
    return _back(mrn, f"{spec.title} saved.")


@router.get("/patients/{mrn}/{slug}/{record_id}/edit")
def edit_record_form(
    mrn: str, slug: str, record_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "correct records")
    spec = _spec(slug)
    values, version = saving.current_values(spec=spec, engine=engine, mrn=mrn, record_id=record_id)
    if spec.rows_name == "findings":  # ?site=&side= prefill the first new finding (DICOM sites)
        stored = sum(1 for key in values if key.startswith("findings[") and key.endswith("].id"))
        for f in spec.row_fields:
            given = request.query_params.get(f.name, "")
            if given and len(given) <= 100:
                values[f"findings[{stored}].{f.name}"] = given
    return _show(
        request, mrn=mrn, spec=spec, heading=f"Correct {spec.title.lower()}", values=values,
        version=version, record_id=record_id,
    )  # fmt: skip


@router.post("/patients/{mrn}/{slug}/{record_id}/edit")
async def correct_record(
    mrn: str, slug: str, record_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "correct records")
    spec = _spec(slug)
    _owned(spec, engine, mrn, record_id)
    values = await _typed(request)
    version = int(values["version"]) if values.get("version", "").isdigit() else 0
    heading = f"Correct {spec.title.lower()}"
    if "more_rows" in values and "save" not in values:
        wanted = int(values["more_rows"]) if values["more_rows"].isdigit() else None
        return _show(
            request, mrn=mrn, spec=spec, heading=heading, values=values, version=version,
            rows=wanted, record_id=record_id,
        )  # fmt: skip
    try:
        saving.correct(
            spec=spec, engine=engine, actor=viewer.username, mrn=mrn, record_id=record_id,
            expected_version=version, values=values, protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, general = _errors(failed)
        return _show(
            request, mrn=mrn, spec=spec, heading=heading, values=values, errors=errors,
            general=general, version=version, status=422, record_id=record_id,
        )  # fmt: skip
    except Conflict as clash:
        return _show(
            request, mrn=mrn, spec=spec, heading=heading, values=values,
            errors={"version": str(clash)}, general=[str(clash)], version=version, status=409,
            record_id=record_id,
        )  # fmt: skip
    return _back(mrn, f"{spec.title} corrected.")


def _owned(spec: FormSpec, engine: Any, mrn: str, record_id: int) -> tuple[dict[str, str], int]:
    """A record is changed only under its own patient's address (NotFound otherwise),
    so the page a clinician acted from always names the patient whose record changed.
    Returns the stored record as form values, and its version."""
    return saving.current_values(spec=spec, engine=engine, mrn=mrn, record_id=record_id)


@router.post("/patients/{mrn}/{slug}/{record_id}/void")
async def void_record(
    mrn: str, slug: str, record_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    """Void a record with a reason; a blank reason shows the correction form again with
    the error beside the reason. A stale version (someone changed the record since the
    form was opened) shows the form again with the record as it is now and the reason
    kept, so the clinician can look before voiding it again."""
    require(viewer, CAN_EDIT, "void records")
    spec = _spec(slug)
    stored, stored_version = _owned(spec, engine, mrn, record_id)
    typed = await _typed(request)
    version = int(typed["version"]) if typed.get("version", "").isdigit() else 0
    try:
        saving.void(
            spec=spec, engine=engine, actor=viewer.username, record_id=record_id,
            expected_version=version, reason=typed.get("reason"),
            protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, _ = _errors(failed)
        return _show(
            request, mrn=mrn, spec=spec, heading=f"Correct {spec.title.lower()}", values=stored,
            version=version, record_id=record_id, void_values=typed, void_errors=errors,
            status=422,
        )  # fmt: skip
    except StaleRecord as clash:  # `stored` was read after that change: show it
        message = f"{clash.changed}. It is shown here as it is now: void it again if it should go."
        return _show(
            request, mrn=mrn, spec=spec, heading=f"Correct {spec.title.lower()}", values=stored,
            version=stored_version, record_id=record_id, void_values=typed,
            void_errors={"version": message}, status=409,
        )  # fmt: skip
    return _back(mrn, f"{spec.title} voided.")


@router.get("/patients/{mrn}/courses/{course_id}/stop")
def stop_course_form(
    mrn: str, course_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "stop courses")
    _, version = saving.current_values(
        spec=FORMS["courses"], engine=engine, mrn=mrn, record_id=course_id
    )
    return _show(
        request, mrn=mrn, spec=COURSE_STOP, heading="Stop course", values={}, version=version,
        fields=COURSE_STOP.fields,
    )  # fmt: skip


@router.post("/patients/{mrn}/courses/{course_id}/stop")
async def stop_course(
    mrn: str, course_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "stop courses")
    _owned(FORMS["courses"], engine, mrn, course_id)
    values = await _typed(request)
    version = int(values["version"]) if values.get("version", "").isdigit() else 0
    try:
        saving.stop(
            engine=engine, actor=viewer.username, mrn=mrn, course_id=course_id,
            expected_version=version, values=values, protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, general = _errors(failed)
        return _show(
            request, mrn=mrn, spec=COURSE_STOP, heading="Stop course", values=values,
            errors=errors, general=general, version=version, status=422,
            fields=COURSE_STOP.fields,
        )  # fmt: skip
    except Conflict as clash:
        return _show(
            request, mrn=mrn, spec=COURSE_STOP, heading="Stop course", values=values,
            errors={"version": str(clash)}, general=[str(clash)], version=version, status=409,
            fields=COURSE_STOP.fields,
        )  # fmt: skip
    return _back(mrn, "Course stopped.")
