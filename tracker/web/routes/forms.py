"""The record forms: add and correct each kind of record, stop a course.

Every form opens with the patient's banner (name, birth date, age, sex, MRN, team),
its dates set to the clinic's today, and its first field focused. Opened from a
reminder ("Record it", `?reminder=ID&next=/worklist?...`), it names the reminder it
closes, fills in its site, side and due date, and after saving goes back to `next`
(a local page only) with a notice saying what was saved and whether the reminder
closed. A refused save shows the form again with what the user typed and each
problem beside its input; a save that lost a race (someone saved first) is refused
with the other person's change named, never silently overwritten.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tracker import labels
from tracker.errors import Conflict, NotFound, StaleRecord, ValidationFailed
from tracker.services.audit import record_view
from tracker.web import exam_form, saving
from tracker.web.auth import CAN_EDIT, require
from tracker.web.clinic import safe_next, today
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.flash import flash
from tracker.web.formspec import (
    COURSE_STOP,
    EXAM,
    FORMS,
    NEW_FORMS,
    Field,
    FormSpec,
    grid_names,
    row_count,
)
from tracker.web.render import render

router = APIRouter(include_in_schema=False)
ROW_LABELS = {"findings": "Site finding", "measurements": "Measurement", "sites": "Site"}
VOID_REASON = Field("reason", "Reason for voiding", "textarea", required=True)
# where a form came from and goes back to: carried by the form, never shown as text
CARRIED = ("reminder", "next")


def _spec(slug: str, forms: dict[str, FormSpec] = FORMS) -> FormSpec:
    spec = forms.get(slug)
    if spec is None:
        raise NotFound(f"There is no '{slug}' form; use one of {', '.join(forms)}.")
    return spec


def day(value: dt.date) -> str:
    """A clinical date as the forms and notices say it: '3 Dec 2026'."""
    return f"{value.day} {value:%b %Y}"


def _closes(reminder: saving.ReminderToClose | None) -> str | None:
    """The reminder a form closes, in words: 'bone scan for maturity at left hip, due
    3 Dec 2026'."""
    if reminder is None:
        return None
    where = f" at {labels.place(reminder.site, reminder.side)}" if reminder.site else ""
    return f"{labels.rule(reminder.rule)}{where}, due {day(reminder.due)}"


def _reminder(request: Request, mrn: str, values: dict[str, str]) -> Any:
    """The reminder named by the form (`reminder`), if any; NotFound if it is not one of
    this patient's (a link never closes another patient's reminder)."""
    given = values.get("reminder", "")
    if not given.isdigit():
        return None
    return saving.reminder_of(engine=request.app.state.engine, mrn=mrn, reminder_id=int(given))


def _focus(
    spec_fields: Any, rows_name: str | None, row_names: list[str], rows: int, errors: dict[str, str]
) -> str:
    """The input to focus: the first one marked with a problem, else the first field."""
    names = [f.name for f in spec_fields]
    if rows_name:
        names += [f"{rows_name}[{i}].{n}" for i in range(rows) for n in row_names]
    marked = [n for n in names if n in errors]
    return marked[0] if marked else (names[0] if names else "")


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
    engine = request.app.state.engine
    banner = saving.patient_banner(engine=engine, mrn=mrn)
    reminder = _reminder(request, mrn, values)
    void_url = f"/patients/{mrn_q}/{spec.slug}/{record_id}/void" if record_id else None
    rows_name = spec.rows_name if fields is None else None
    shown_rows = row_count(values, spec, rows)
    row_names = [f.name for f in spec.row_fields] + grid_names(spec)
    errors = errors or {}
    exam: dict[str, Any] = {}
    if spec is EXAM:  # the bedside examination: one joint, a row per movement
        values = exam_form.relist(values) if exam_form.needs_listing(values) else values
        exam = exam_form.context(engine, mrn, values)
    return render(
        request,
        "exam_form.j2" if spec is EXAM else "record_form.j2",
        {
            **exam,
            "heading": heading,
            "mrn": mrn,
            "mrn_q": mrn_q,
            "patient": banner,
            "today": today(request),
            "spec_fields": fields or spec.fields,
            "rows_name": rows_name,
            "row_fields": spec.row_fields,
            "grid_rows": spec.grid_rows,
            "grid_fields": spec.grid_fields,
            "marked_rows": [*spec.row_fields, *(Field(n, n) for n in grid_names(spec))],
            "row_label": ROW_LABELS.get(spec.rows_name or "", "Row"),
            "rows": shown_rows,
            "values": values,
            "errors": errors,
            "general": general or [],
            "version": version,
            "focus": _focus(fields or spec.fields, rows_name, row_names, shown_rows, errors),
            "carried": {k: values[k] for k in CARRIED if values.get(k)},
            "closes": _closes(reminder) if reminder is not None and reminder.open else None,
            "closed": reminder if reminder is not None and not reminder.open else None,
            "cancel": _after(mrn, values),
            "bone_scan_form": spec.slug == "bone-scans" and fields is None and record_id is None,
            "imaging_form": spec.slug == "imaging" and record_id is None,
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


def _errors(
    failed: ValidationFailed,
    values: dict[str, str] | None = None,
    fields: tuple[Field, ...] = (),
) -> tuple[dict[str, str], list[str]]:
    """The problems in words (tracker.labels): beside each input what is wrong with it
    ("HO is required"), and for the summary every problem as a whole sentence that
    names its row by what was typed there ("Finding 2 (right hip): HO is required").
    `fields` give a form's own names for its top fields ("Reason for voiding")."""
    said = labels.field_errors(
        failed.problems, values=values, labels={f.name: f.label for f in fields}
    )
    by_field: dict[str, str] = {}
    for error in said:
        by_field[error.path] = (
            f"{by_field[error.path]}; {error.says}" if error.path in by_field else error.says
        )
    return by_field, list(dict.fromkeys(str(error) for error in said))


def _after(mrn: str, values: dict[str, str]) -> str:
    """Where the user goes after the form: the local page they came from (`next`, say
    the worklist with its filters), else the patient."""
    given = values.get("next") or None
    if given and safe_next(given) == given:
        return given
    return f"/patients/{quote(mrn, safe='')}"


def _back(mrn: str, values: dict[str, str]) -> Response:
    return RedirectResponse(_after(mrn, values), status_code=303)


def _what(spec: FormSpec, values: dict[str, str]) -> str:
    """What was saved, in words: 'radiograph of the left hip, 2 Nov 2026'."""
    v = values.get
    places = []
    if spec.rows_name:
        for i in range(row_count(values, spec, None)):
            at = f"{spec.rows_name}[{i}]"
            if v(f"{at}.site"):
                places.append(labels.place(v(f"{at}.site"), v(f"{at}.side")))
    where = ", ".join(places)
    head = {
        "injuries": labels.words(v("kind")),
        "imaging": labels.words(v("modality")),
        "bone-scans": labels.words(v("modality") or "bone_scan"),
        "courses": f"{labels.words(v('agent'))} for {labels.words(v('intent'))}",
        "procedures": labels.words(v("kind")),
        "labs": f"{labels.words(v('analyte'))} {v('value') or ''} {v('unit') or ''}".strip(),
        "examination": labels.place(v("site"), v("side")),
        "range-of-motion": (
            f"{labels.place(v('site'), v('side'))} {labels.words(v('movement'))} "
            f"{v('degrees') or ''}°"
        ),
    }.get(spec.slug, "")
    if spec is EXAM:
        return ", ".join(part for part in (head, _said_date(v("date") or "")) if part)
    if spec.slug == "procedures" and v("site"):
        where = labels.place(v("site"), v("side"))
    when = _said_date(v("date") or v("start_date") or "")
    said = head + (f" of the {where}" if where else "")
    return ", ".join(part for part in (said, when) if part)


def _said_date(text: str) -> str:
    try:
        return day(dt.date.fromisoformat(text))
    except ValueError:
        return text


def _notice(request: Request, spec: FormSpec, mrn: str, values: dict[str, str]) -> str:
    """The one-time notice after a save: what was saved for whom, and what became of
    the reminder the form was opened from."""
    banner = saving.patient_banner(engine=request.app.state.engine, mrn=mrn)
    said = f"{spec.title} saved for {_who(banner)}: {_what(spec, values)}."
    reminder = _reminder(request, mrn, values)
    if reminder is not None:
        if reminder.status == "satisfied":
            said += f" Reminder closed: {_closes(reminder)}."
        elif reminder.open:
            said += (
                f" The reminder {_closes(reminder)} is still open: this record does not "
                "satisfy it (check the site, side, modality and date), or acknowledge it."
            )
    return said


def _who(banner: saving.PatientBanner) -> str:
    from tracker.services.patients import display_name

    name = display_name(banner.family_name, banner.given_name)
    return f"{name} ({banner.mrn})" if name else banner.mrn


def _defaults(request: Request, spec: FormSpec, mrn: str) -> dict[str, str]:
    """A new form's values: today in its date fields (or the due date of the reminder
    it was opened from, if that is not after today), what the link fills in, and the
    reminder's site and side in the first row (both sides of a screen with no side)."""
    query = {k: v for k, v in request.query_params.items() if len(v) <= 2000}
    values = {k: query[k] for k in CARRIED if query.get(k)}
    values.update({f.name: f.default for f in spec.fields if f.default})
    reminder = _reminder(request, mrn, values)
    clinic_day = today(request)
    when = min(reminder.due, clinic_day) if reminder is not None else clinic_day
    dated = [f for f in spec.fields if f.kind == "date" and f.required]
    for f in dated[:1]:
        values[f.name] = when.isoformat()
    prefill = {k: v for k, v in query.items() if len(v) <= 100 and k not in CARRIED}
    for f in spec.fields:
        if f.name in prefill:
            values[f.name] = prefill[f.name]
    if spec.rows_name:
        first = f"{spec.rows_name}[0]"
        for f in spec.row_fields:
            if f.name in prefill:
                values[f"{first}.{f.name}"] = prefill[f.name]
        if reminder is not None and reminder.site:
            values[f"{first}.site"], values[f"{first}.side"] = reminder.site, reminder.side or ""
        elif reminder is not None and values.get(f"{first}.site") and not prefill.get("side"):
            # a screen of a paired site looks at both sides (hip ultrasound screen)
            values[f"{first}.side"] = "left"
            values[f"{spec.rows_name}[1].site"] = values[f"{first}.site"]
            values[f"{spec.rows_name}[1].side"] = "right"
    return values


@router.get("/patients/{mrn}/{slug}/new")
def new_record_form(mrn: str, slug: str, request: Request, viewer: PageViewer) -> Response:
    require(viewer, CAN_EDIT, "add records")
    spec = _spec(slug, NEW_FORMS)
    saving.check_patient(engine=request.app.state.engine, mrn=mrn)
    values = _defaults(request, spec, mrn)
    # the form's banner shows the patient (issue 15: every view is logged)
    what = f"add {spec.title.lower()} form"
    record_view(engine=request.app.state.engine, actor=viewer.username, mrn=mrn, what=what)
    return _show(request, mrn=mrn, spec=spec, heading=f"Add {spec.title.lower()}", values=values)


@router.post("/patients/{mrn}/{slug}/new")
async def add_record(
    mrn: str, slug: str, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "add records")
    spec = _spec(slug, NEW_FORMS)
    values = await _typed(request)
    heading = f"Add {spec.title.lower()}"
    _reminder(request, mrn, values)  # another patient's reminder: refused before saving
    if "more_rows" in values and "save" not in values:
        wanted = int(values["more_rows"]) if values["more_rows"].isdigit() else None
        return _show(request, mrn=mrn, spec=spec, heading=heading, values=values, rows=wanted)
    try:
        saving.add(
            spec=spec, engine=engine, actor=viewer.username, mrn=mrn, values=values,
            protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, general = _errors(failed, values)
        if spec is EXAM:  # each problem named by its joint and movement
            said = labels.field_errors(failed.problems, values=values, labels={})
            errors, general = exam_form.messages(said, values)
        return _show(
            request, mrn=mrn, spec=spec, heading=heading, values=values, errors=errors,
            general=general, status=422,
        )  # fmt: skip
    flash(request, _notice(request, spec, mrn, values))
    return _back(mrn, values)


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
    given_next = request.query_params.get("next", "")
    if given_next and len(given_next) <= 2000:
        values["next"] = given_next
    what = f"correct {spec.title.lower()} form"
    record_view(engine=engine, actor=viewer.username, mrn=mrn, what=what)
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
        errors, general = _errors(failed, values)
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
    banner = saving.patient_banner(engine=engine, mrn=mrn)
    flash(request, f"{spec.title} corrected for {_who(banner)}: {_what(spec, values)}.")
    return _back(mrn, values)


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
        errors, _ = _errors(failed, typed, (VOID_REASON,))
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
    banner = saving.patient_banner(engine=engine, mrn=mrn)
    flash(request, f"{spec.title} voided for {_who(banner)}: {_what(spec, stored)}.")
    return _back(mrn, typed)


@router.get("/patients/{mrn}/courses/{course_id}/stop")
def stop_course_form(
    mrn: str, course_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "stop courses")
    _, version = saving.current_values(
        spec=FORMS["courses"], engine=engine, mrn=mrn, record_id=course_id
    )
    record_view(engine=engine, actor=viewer.username, mrn=mrn, what="stop course form")
    return _show(
        request, mrn=mrn, spec=COURSE_STOP, heading="Stop course",
        values={"end_date": today(request).isoformat()}, version=version,
        fields=COURSE_STOP.fields,
    )  # fmt: skip


@router.post("/patients/{mrn}/courses/{course_id}/stop")
async def stop_course(
    mrn: str, course_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    require(viewer, CAN_EDIT, "stop courses")
    course, _ = _owned(FORMS["courses"], engine, mrn, course_id)
    values = await _typed(request)
    version = int(values["version"]) if values.get("version", "").isdigit() else 0
    try:
        saving.stop(
            engine=engine, actor=viewer.username, mrn=mrn, course_id=course_id,
            expected_version=version, values=values, protocol=request.app.state.protocol,
        )  # fmt: skip
    except ValidationFailed as failed:
        errors, general = _errors(failed, values, COURSE_STOP.fields)
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
    banner = saving.patient_banner(engine=engine, mrn=mrn)
    agent = f"{labels.words(course.get('agent'))} for {labels.words(course.get('intent'))}"
    ended = _said_date(values.get("end_date", ""))
    flash(request, f"Course stopped for {_who(banner)}: {agent}, ended {ended}.")
    return _back(mrn, values)
