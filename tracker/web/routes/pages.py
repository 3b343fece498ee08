"""The pages: sign-in, worklist, patients, patient, board, import, reports, and the
admin's audit trail, users and protocol."""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile as StarletteUpload

import tracker.web.identity as identity
from tracker import vocab
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.web.auth import (
    CAN_ACKNOWLEDGE,
    CAN_ADMINISTER,
    CAN_EDIT,
    SESSION_COOKIE,
    SESSION_HOURS,
    BadCsrf,
    require,
    signer_of,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render
from tracker.web.views import (
    PatientFilters,
    open_reminders,
    patient_rows,
    patient_view,
    satisfying_link,
)

router = APIRouter(include_in_schema=False)
PRE_SESSION_COOKIE = "ho_pre"
LIST_LIMIT = 200

STAGES = ("none", "early", "mineralising", "mature")
READINESS = ("ready", "not_ready", "insufficient_data", "not_applicable")
FLAGS = (
    "new_site",
    "recurrence",
    "grade_increase",
    "progression_after_treatment",
    "rising_activity",
    "genetic_ho",
)


def protocol_of(request: Request) -> Any:
    return request.app.state.protocol


def protocol_name_of(request: Request) -> str:
    """Where the app's protocol came from, as reports and the board name it."""
    configured = request.app.state.settings.protocol_file
    return configured.name if configured is not None else "the spec's defaults"


def today(request: Request) -> dt.date:
    """The clinic's today: the app's clock (`app.state.today`, set by tests that
    need a fixed day), else the wall clock."""
    clock = getattr(request.app.state, "today", None)
    return clock() if clock is not None else dt.date.today()


def parse_as_of(request: Request, text: str | None) -> dt.date:
    if not text:
        return today(request)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TrackerError(f"as_of '{text}' is not a date in the form YYYY-MM-DD.") from None


def safe_next(target: str | None) -> str:
    """Only local paths: an open redirect would let a link send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"


# --- sign-in -------------------------------------------------------------------------------


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    return _signin_form(request, next_url=safe_next(next), error=None, username="")


def _signin_form(
    request: Request, *, next_url: str, error: str | None, username: str, status: int = 200
) -> Response:
    nonce = request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(16)
    response = render(
        request,
        "signin.j2",
        {
            "signin_csrf": signer_of(request).anonymous_csrf(nonce),
            "next_url": next_url,
            "error": error,
            "username": username,
        },
        status=status,
    )
    response.set_cookie(
        PRE_SESSION_COOKIE, nonce, httponly=True, samesite="lax", max_age=3600, path="/signin"
    )
    return response


@router.post("/signin")
def signin(
    request: Request,
    engine: EngineDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/worklist",
) -> Response:
    signer = signer_of(request)
    nonce = request.cookies.get(PRE_SESSION_COOKIE)
    if not nonce or not secrets.compare_digest(signer.anonymous_csrf(nonce), csrf_token):
        raise BadCsrf()
    address = request.client.host if request.client else "unknown"
    next_url = safe_next(next)
    if identity.too_many_failures(engine=engine, username=username, address=address):
        return _signin_form(
            request,
            next_url=next_url,
            error="Too many failed sign-ins for this name or from this computer; "
            "wait 15 minutes and try again.",
            username=username,
            status=429,
        )
    viewer = identity.sign_in(engine=engine, username=username, password=password, address=address)
    if viewer is None:
        return _signin_form(
            request,
            next_url=next_url,
            error="That user name and password do not match; check both and try again.",
            username=username,
            status=401,
        )
    cookie, _ = signer.cookie_for(viewer.user_id)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=SESSION_HOURS * 3600,
    )
    response.delete_cookie(PRE_SESSION_COOKIE, path="/signin")
    return response


@router.post("/signout")
def signout(viewer: PageViewer) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- worklist ------------------------------------------------------------------------------


@router.get("/")
def home(viewer: PageViewer) -> Response:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
def worklist_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    team: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    from tracker.services.teams import list_teams

    day = today(request)
    rows = open_reminders(engine=engine, team=team or None)
    for row in rows:
        row["record_link"] = satisfying_link(row)
        row["overdue"] = row["due"] < day
        row["may_ack"] = viewer.may(CAN_ACKNOWLEDGE) and (
            viewer.role != "surgeon" or row["rule"] == "readiness_review"
        )
    return render(
        request,
        "worklist.j2",
        {
            "rows": rows,
            "team": team or "",
            "teams": [t.name for t in list_teams(engine=engine)],
            "today": day,
            "done": request.query_params.get("done"),
        },
    )


@router.post("/reminders/{reminder_id}/acknowledge")
def acknowledge_page(
    reminder_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
) -> Response:
    from tracker.web.actions import acknowledge_reminder

    acknowledge_reminder(engine=engine, viewer=viewer, reminder_id=reminder_id)
    back = safe_next(request.headers.get("referer", "").partition(str(request.base_url)[:-1])[2])
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}done={reminder_id}", status_code=303)


# --- patients ------------------------------------------------------------------------------


@router.get("/patients")
def patients_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
    injury: Annotated[vocab.InjuryKind | None, Query()] = None,
    ho: Annotated[str | None, Query(pattern="^(yes|no|)$")] = None,
    stage: Annotated[str | None, Query(max_length=30)] = None,
    readiness: Annotated[str | None, Query(max_length=30)] = None,
    flag: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    from tracker.services.teams import list_teams

    for name, value, allowed in (
        ("stage", stage, STAGES),
        ("readiness", readiness, READINESS),
        ("flag", flag, FLAGS),
    ):
        if value and value not in allowed:
            raise ValidationFailed(
                [_problem(name, f"'{value}' is not one of {', '.join(allowed)}")]
            )
    filters = PatientFilters(
        q=q or None,
        team=team or None,
        injury=injury.value if injury else None,
        ho={"yes": True, "no": False}.get(ho or ""),
        stage=stage or None,
        readiness=readiness or None,
        flag=flag or None,
    )
    rows, total = patient_rows(
        engine=engine,
        filters=filters,
        as_of=today(request),
        protocol=protocol_of(request),
        limit=LIST_LIMIT,
    )
    return render(
        request,
        "patients.j2",
        {
            "rows": rows,
            "total": total,
            "limit": LIST_LIMIT,
            "f": filters,
            "ho": ho or "",
            "teams": [t.name for t in list_teams(engine=engine)],
            "injuries": vocab.values(vocab.InjuryKind),
            "stages": STAGES,
            "readiness_values": READINESS,
            "flags": FLAGS,
        },
    )


def _problem(field: str, reason: str) -> Any:
    return Problem("query", None, field, reason)


@router.get("/patients/{mrn}")
def patient_page(
    mrn: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    day = parse_as_of(request, as_of)
    view = patient_view(engine=engine, mrn=mrn, as_of=day, protocol=protocol_of(request))
    identity.log_view(engine=engine, viewer=viewer, mrn=mrn, what="patient page")
    for row in view.reminders:
        row["record_link"] = satisfying_link(row)
        row["may_ack"] = row["status"] in ("pending", "due", "sent") and (
            viewer.may(CAN_ACKNOWLEDGE)
            and (viewer.role != "surgeon" or row["rule"] == "readiness_review")
        )
    return render(
        request,
        "patient.j2",
        {
            "v": view,
            "p": view.story.patient,
            "mrn_q": quote(mrn, safe=""),
            "may_edit": viewer.may(CAN_EDIT),
            "has_figure": bool(view.assessment["sites"]),
            "done": request.query_params.get("done"),
        },
    )


@router.get("/patients/{mrn}/trend.svg")
def patient_trend_svg(
    mrn: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.reports.figures import figure_bytes, trend_figure
    from tracker.services.reports import patient_report

    day = parse_as_of(request, as_of)
    report = patient_report(engine=engine, mrn=mrn, as_of=day, protocol=protocol_of(request))
    return Response(figure_bytes(trend_figure(report.trend), "svg"), media_type="image/svg+xml")


@router.get("/patients/{mrn}/report.{fmt}")
def patient_report_download(
    mrn: str,
    fmt: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.services.reports import patient_report, write_patient_report

    _check_report_format(fmt)
    day = parse_as_of(request, as_of)
    report = patient_report(
        engine=engine,
        mrn=mrn,
        as_of=day,
        protocol=protocol_of(request),
        protocol_name=protocol_name_of(request),
    )
    identity.log_view(engine=engine, viewer=viewer, mrn=mrn, what=f"{fmt} report")
    with tempfile.TemporaryDirectory() as scratch:
        path = write_patient_report(report, Path(scratch), fmt)
        return _download(path)


def _check_report_format(fmt: str) -> None:
    if fmt not in ("html", "pdf"):
        raise TrackerError(f"'{fmt}' is not a report format here; use html or pdf.")


def _download(path: Path) -> Response:
    media = {".pdf": "application/pdf", ".html": "text/html; charset=utf-8"}[path.suffix]
    return Response(
        path.read_bytes(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
    )


# --- board ---------------------------------------------------------------------------------


@router.get("/board")
def board_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.services.reports import board_report

    day = parse_as_of(request, as_of)
    board = board_report(
        engine=engine,
        as_of=day,
        protocol=protocol_of(request),
        protocol_name=protocol_name_of(request),
        max_panels=0,
    )
    return render(request, "board.j2", {"b": board})


@router.get("/board/report.{fmt}")
def board_download(
    fmt: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.services.reports import board_report, write_board_report

    _check_report_format(fmt)
    board = board_report(
        engine=engine,
        as_of=parse_as_of(request, as_of),
        protocol=protocol_of(request),
        protocol_name=protocol_name_of(request),
    )
    with tempfile.TemporaryDirectory() as scratch:
        return _download(write_board_report(board, Path(scratch), fmt))


# --- CSV import ----------------------------------------------------------------------------


@router.get("/import")
def import_page(request: Request, viewer: PageViewer) -> Response:
    require(viewer, CAN_EDIT, "import records")
    return render(request, "import.j2", {"problems": None, "added": None})


@router.post("/import")
async def import_upload(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    from tracker.interchange.csv_import import import_folder

    require(viewer, CAN_EDIT, "import records")
    form = await request.form()
    files = [f for f in form.getlist("files") if isinstance(f, StarletteUpload | UploadFile)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        names = []
        for upload in files:
            name = Path(upload.filename or "").name
            if not name:
                continue
            (folder / name).write_bytes(await upload.read())
            names.append(name)
        if not names:
            return render(
                request,
                "import.j2",
                {"problems": None, "added": None, "error": "Choose one or more CSV files."},
                status=422,
            )
        try:
            summary = import_folder(engine, folder, actor=viewer.username)
        except ValidationFailed as failed:
            return render(
                request, "import.j2", {"problems": failed.problems, "added": None}, status=422
            )
    identity.log_event(engine=engine, viewer=viewer, action="import", detail=", ".join(names))
    return render(
        request,
        "import.j2",
        {"problems": None, "added": summary.added, "total": summary.total_added},
    )


# --- admin ---------------------------------------------------------------------------------


@router.get("/admin/audit")
def audit_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    mrn: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    require(viewer, CAN_ADMINISTER, "read the audit trail")
    events = identity.audit_rows(engine=engine, mrn=mrn or None, username=user or None)
    return render(request, "audit.j2", {"events": events, "mrn": mrn or "", "user": user or ""})


@router.get("/admin/users")
def users_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    done: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    require(viewer, CAN_ADMINISTER, "manage users")
    return _users_page(request, engine, done=done)


def _users_page(request: Request, engine: Any, *, status: int = 200, **context: Any) -> Response:
    """The users page; `context` overrides: the add form's values and errors, a refusal
    (`error`), a notice (`done`), a token shown once, or one row's token-name error."""
    from tracker.web.formspec import NEW_USER, TOKEN_NAME

    page = {
        "users": identity.user_rows(engine=engine),
        "new_user": NEW_USER,
        "token_field": TOKEN_NAME,
        "values": {},
        "errors": {},
        "error": None,
        "done": None,
        "token": None,
        "token_for": None,
        "token_values": {},
        "token_errors": {},
    }
    page.update(context)
    return render(request, "users.j2", page, status=status)


def _to_users(notice: str) -> Response:
    return RedirectResponse(f"/admin/users?{urlencode({'done': notice})}", status_code=303)


@router.post("/admin/users")
def add_user_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    username: Annotated[str, Form(max_length=1000)] = "",
    role: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    confirm: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Add a user as `ho-tracker users add` does; a refusal is shown beside its input,
    keeping the name and role typed (never the password)."""
    from tracker.services.users import add_user

    require(viewer, CAN_ADMINISTER, "manage users")
    values = {"username": username, "role": role}
    try:
        if password != confirm:
            raise ValidationFailed(
                [Problem("user", None, "confirm", "the two passwords differ; type both again")]
            )
        user = add_user(
            engine=engine, username=username, role=role, password=password, actor=viewer.username
        )
    except ValidationFailed as failed:
        errors = {p.field: p.reason for p in failed.problems}
        return _users_page(request, engine, values=values, errors=errors, status=422)
    except Conflict as clash:
        return _users_page(
            request, engine, values=values, errors={"username": str(clash)}, status=409
        )
    return _to_users(f"Added {user.username} ({user.role}); they can sign in now.")


@router.post("/admin/users/{user_id}/disable")
def disable_user_page(
    user_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    """Sign a user out for good (until re-enabled); an admin cannot disable themselves."""
    from tracker.services.users import deactivate

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    try:
        deactivate(engine=engine, username=user.username, actor=viewer.username)
    except NotFound:
        raise
    except TrackerError as refused:
        return _users_page(request, engine, error=str(refused), status=400)
    return _to_users(
        f"Disabled {user.username}: they can no longer sign in, and their API tokens are revoked."
    )


@router.post("/admin/users/{user_id}/enable")
def enable_user_page(
    user_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    from tracker.services.users import reactivate

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    reactivate(engine=engine, username=user.username, actor=viewer.username)
    return _to_users(f"Re-enabled {user.username}: they can sign in again.")


@router.post("/admin/users/{user_id}/token")
def issue_token_page(
    user_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Issue an API token and show it on this one page: only its hash is kept."""
    from tracker.services.users import issue_api_token

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    try:
        token = issue_api_token(
            engine=engine, username=user.username, name=name, actor=viewer.username
        )
    except ValidationFailed as failed:
        return _users_page(
            request,
            engine,
            token_for=user.id,
            token_values={"name": name},
            token_errors={p.field: p.reason for p in failed.problems},
            status=422,
        )
    response = _users_page(
        request, engine, token={"username": user.username, "name": name.strip(), "value": token}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/admin/protocol")
def protocol_page(request: Request, viewer: PageViewer) -> Response:
    require(viewer, CAN_ADMINISTER, "read the clinic protocol")
    return _protocol_page(request)


@router.post("/admin/protocol")
def check_protocol_page(
    request: Request,
    viewer: PageViewer,
    toml: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    """Check pasted protocol text: valid (with what it would change) or the loader's
    refusal naming the key. Nothing is written: the protocol is a deployed file."""
    from tracker.errors import ProtocolError
    from tracker.protocol import differences, parse_protocol

    require(viewer, CAN_ADMINISTER, "check a clinic protocol")
    values = {"toml": toml}
    if not toml.strip():
        errors = {"toml": "is required: paste the text of a protocol file"}
        return _protocol_page(request, values=values, errors=errors, status=422)
    try:
        proposed = parse_protocol(toml, where="pasted protocol")
    except ProtocolError as refused:
        return _protocol_page(request, values=values, errors={"toml": str(refused)}, status=422)
    return _protocol_page(
        request, values=values, changes=differences(protocol_of(request), proposed)
    )


def _protocol_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    changes: list[tuple[str, Any, Any]] | None = None,
    status: int = 200,
) -> Response:
    from tracker.protocol import settings_of, toml_text
    from tracker.services.assessment import DEFAULT_PROTOCOL_FILE
    from tracker.web.formspec import PROTOCOL_TEXT

    sections: dict[str, list[Any]] = {}
    for setting in settings_of(protocol_of(request)):
        sections.setdefault(setting.section, []).append(setting)
    configured = request.app.state.settings.protocol_file
    return render(
        request,
        "protocol.j2",
        {
            "protocol_file": str(configured or DEFAULT_PROTOCOL_FILE),
            "configured": configured is not None,
            "sections": sections,
            "toml_text": toml_text,
            "field": PROTOCOL_TEXT,
            "values": values or {},
            "errors": errors or {},
            "changes": changes,
        },
        status=status,
    )
