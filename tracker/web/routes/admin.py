"""The admin's pages: audit trail, users and protocol."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

import tracker.web.identity as identity
from tracker import vocab
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.services.audit import record_views
from tracker.templating import words
from tracker.web.auth import (
    CAN_ADMINISTER,
    require,
)
from tracker.web.clinic import (
    protocol_of,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.flash import flash
from tracker.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/admin/audit")
def audit_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    since: Annotated[str | None, Query(alias="from")] = None,
    until: Annotated[str | None, Query(alias="to")] = None,
    action: str | None = None,
    user: str | None = None,
    mrn: str | None = None,
    after: str | None = None,
) -> Response:
    """The audit trail, 50 events a page, newest first, filtered by clinic days (from,
    to), action, user and MRN; every filter lives in the URL and empty means any. A
    filter the form would not send is refused in a sentence naming it, with the form."""
    from urllib.parse import urlencode

    from tracker.services.audit import AuditFilters

    require(viewer, CAN_ADMINISTER, "read the audit trail")
    raw = {"from": since, "to": until, "action": action, "user": user, "mrn": mrn}
    values = {name: (value or "").strip() for name, value in raw.items()}
    days, errors = _audit_filter_errors(values)
    protocol = protocol_of(request)
    context: dict[str, Any] = {
        "values": values,
        "errors": errors,
        "actions": vocab.values(vocab.AuditAction),
        "usernames": [u.username for u in identity.user_rows(engine=engine)],
        "zone_name": protocol.reminders.time_zone,
        "entries": [],
        "next_link": None,
        "first_link": None,
        "paged": bool(after),
    }
    if errors:
        return render(request, "audit.j2", context, status=422)
    filters = AuditFilters(
        since=days.get("from"),
        until=days.get("to"),
        action=values["action"] or None,
        username=values["user"] or None,
        mrn=values["mrn"] or None,
    )
    page = identity.audit_rows(
        engine=engine, filters=filters, zone=protocol.reminders.zone, after=after or None
    )
    shown = [(name, value) for name, value in values.items() if value]
    if page.next_after:
        context["next_link"] = f"/admin/audit?{urlencode([*shown, ('after', page.next_after)])}"
    if after:
        context["first_link"] = f"/admin/audit?{urlencode(shown)}" if shown else "/admin/audit"
    context["entries"] = page.entries
    # the page names the patients of its rows: a view of each (issue 15)
    record_views(
        engine=engine, actor=viewer.username, mrns=[e.mrn for e in page.entries if e.mrn],
        what="audit trail page", search=values,
    )  # fmt: skip
    return render(request, "audit.j2", context)


AUDIT_FILTER_WORDS = {"from": "From", "to": "To", "action": "Action", "user": "User"}
AUDIT_FILTER_WORDS["mrn"] = "Patient MRN"


def _audit_filter_errors(values: dict[str, str]) -> tuple[dict[str, dt.date], dict[str, str]]:
    """The from/to days, and a sentence for each filter its form would not send."""
    days: dict[str, dt.date] = {}
    errors: dict[str, str] = {}
    for name in ("from", "to"):
        if not values[name]:
            continue
        try:
            days[name] = dt.date.fromisoformat(values[name])
        except ValueError:
            errors[name] = (
                f"{AUDIT_FILTER_WORDS[name]}: ‘{values[name][:40]}’ is not a date; use the "
                "form YYYY-MM-DD, or leave it empty for any day."
            )
    if "from" in days and "to" in days and days["to"] < days["from"]:
        errors["to"] = (
            f"To: {days['to'].isoformat()} is before From ({days['from'].isoformat()}); "
            "choose a later day."
        )
    allowed = vocab.values(vocab.AuditAction)
    if values["action"] and values["action"] not in allowed:
        listed = ", ".join(words(choice) for choice in allowed)
        errors["action"] = (
            f"Action: ‘{values['action'][:40]}’ is not an action the trail records; choose "
            f"one of {listed}, or any."
        )
    for name, longest in (("user", 200), ("mrn", 64)):
        if len(values[name]) > longest:
            errors[name] = f"{AUDIT_FILTER_WORDS[name]}: type at most {longest} characters."
    return days, errors


@router.get("/admin/users")
def users_page(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    require(viewer, CAN_ADMINISTER, "manage users")
    return _users_page(request, engine)


def _clinic_time(request: Request, moment: dt.datetime | None) -> str:
    """A timestamp as the clinic reads it: its own time zone, to the minute."""
    if moment is None:
        return "never"
    if moment.tzinfo is None:  # SQLite keeps no zone; stored times are UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(protocol_of(request).reminders.zone).strftime("%Y-%m-%d %H:%M")


def _users_page(request: Request, engine: Any, *, status: int = 200, **context: Any) -> Response:
    """The list of users and the add form (users.j2 also shows one user, below);
    `context` overrides the add form's values and errors."""
    from tracker.web.formspec import NEW_USER

    users = identity.user_rows(engine=engine)
    page = {
        "view": "list",
        "users": users,
        "signed_in": {u.id: _clinic_time(request, u.last_signin_at) for u in users},
        "zone": protocol_of(request).reminders.time_zone,
        "new_user": NEW_USER,
        "values": {},
        "errors": {},
    }
    page.update(context)
    return render(request, "users.j2", page, status=status)


def _user_page(
    request: Request, engine: Any, user_id: int, *, status: int = 200, **context: Any
) -> Response:
    """One user's page: role and team, password reset, sign-in, API token. `context`
    overrides: a form's values and errors, a refusal (`error`), a temporary password
    or a token shown this once."""
    from tracker.services.teams import list_teams
    from tracker.web.formspec import TOKEN_NAME

    user = identity.user_by_id(engine=engine, user_id=user_id)
    page = {
        "view": "user",
        "u": user,
        "last_signin": _clinic_time(request, user.last_signin_at),
        "zone": protocol_of(request).reminders.time_zone,
        "roles": vocab.values(vocab.Role),
        "teams": [t.name for t in list_teams(engine=engine)],
        "values": {"role": user.role, "team": user.team or ""},
        "errors": {},
        "reset_values": {"how": "temporary"},
        "reset_errors": {},
        "error": None,
        "temporary": None,
        "token": None,
        "token_field": TOKEN_NAME,
        "token_values": {},
        "token_errors": {},
    }
    page.update(context)
    response = render(request, "users.j2", page, status=status)
    if page["temporary"] or page["token"]:  # shown once: never from a cache
        response.headers["Cache-Control"] = "no-store"
    return response


def _to_user(request: Request, user_id: int, notice: str) -> Response:
    flash(request, notice)
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


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
    return _to_user(
        request,
        user.id,
        f"Added {user.username} ({words(user.role)}); they can sign in now. "
        "Choose their team below.",
    )


@router.get("/admin/users/{user_id}")
def user_page(user_id: int, request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    require(viewer, CAN_ADMINISTER, "manage users")
    return _user_page(request, engine, user_id)


@router.post("/admin/users/{user_id}")
def save_user_page(
    user_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    role: Annotated[str, Form(max_length=100)] = "",
    team: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Change a user's role and team; each change is audited. The last active admin
    keeps the role, with the reason beside the field."""
    from tracker.services.users import set_role, set_team

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    values = {"role": role, "team": team}
    said: list[str] = []
    try:
        if role != user.role:
            if not role:
                raise ValidationFailed([Problem("user", None, "role", "is required")])
            # ends the user's sessions, but an admin changing their own keeps this one
            mine = viewer.session_nonce if user.id == viewer.user_id else None
            set_role(
                engine=engine,
                username=user.username,
                role=role,
                actor=viewer.username,
                keep_session=mine,
            )
            said.append(f"role {words(role)}")
        if (team.strip() or None) != user.team:
            changed = set_team(
                engine=engine, username=user.username, team=team, actor=viewer.username
            )
            said.append(f"team {words(changed.team)}" if changed.team else "no team")
    except ValidationFailed as failed:
        errors = {p.field: p.reason for p in failed.problems}
        return _user_page(request, engine, user_id, values=values, errors=errors, status=422)
    except (NotFound, Conflict):
        raise
    except TrackerError as refused:  # the last active admin
        return _user_page(
            request, engine, user_id, values=values, errors={"role": str(refused)}, status=409
        )
    if not said:
        return _to_user(request, user_id, f"Nothing to change for {user.username}.")
    notice = f"Saved {user.username}: {', '.join(said)}."
    if user.id == viewer.user_id and role != vocab.Role.admin:
        flash(request, notice + " You no longer manage users.")
        return RedirectResponse("/worklist", status_code=303)
    return _to_user(request, user_id, notice)


@router.post("/admin/users/{user_id}/password")
def reset_password_page(
    user_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    how: Annotated[str, Form(max_length=20)] = "temporary",
    password: Annotated[str, Form(max_length=1000)] = "",
    confirm: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Reset a password: a temporary one made here and shown this once, or one the
    admin types. Either way the user must choose their own at their next sign-in."""
    from tracker.services.users import reset_password

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    if user.id == viewer.user_id:
        raise TrackerError(
            "Change your own password on the change-password page (your name, top right)."
        )
    chosen = how == "chosen"
    try:
        if chosen and password != confirm:
            raise ValidationFailed(
                [Problem("user", None, "confirm", "the two passwords differ; type both again")]
            )
        given = reset_password(
            engine=engine,
            username=user.username,
            password=password if chosen else None,
            actor=viewer.username,
        )
    except ValidationFailed as failed:
        return _user_page(
            request,
            engine,
            user_id,
            reset_values={"how": "chosen" if chosen else "temporary"},
            reset_errors={p.field: p.reason for p in failed.problems},
            status=422,
        )
    if chosen:
        return _to_user(
            request,
            user_id,
            f"Reset the password of {user.username}: they must choose a new one when they "
            "next sign in.",
        )
    return _user_page(request, engine, user_id, temporary=given)


@router.post("/admin/users/{user_id}/disable")
def disable_user_page(
    user_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    """Sign a user out for good (until re-enabled); an admin cannot disable themselves,
    and nobody the last active admin."""
    from tracker.services.users import deactivate

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    try:
        deactivate(engine=engine, username=user.username, actor=viewer.username)
    except NotFound:
        raise
    except TrackerError as refused:
        return _user_page(request, engine, user_id, error=str(refused), status=400)
    return _to_user(
        request,
        user_id,
        f"Disabled {user.username}: they can no longer sign in, and their API tokens are revoked.",
    )


@router.post("/admin/users/{user_id}/enable")
def enable_user_page(
    user_id: int, request: Request, viewer: PageViewer, engine: EngineDep
) -> Response:
    from tracker.services.users import reactivate

    require(viewer, CAN_ADMINISTER, "manage users")
    user = identity.user_by_id(engine=engine, user_id=user_id)
    reactivate(engine=engine, username=user.username, actor=viewer.username)
    return _to_user(request, user_id, f"Re-enabled {user.username}: they can sign in again.")


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
        return _user_page(
            request,
            engine,
            user_id,
            token_values={"name": name},
            token_errors={p.field: p.reason for p in failed.problems},
            status=422,
        )
    return _user_page(
        request,
        engine,
        user_id,
        token={"username": user.username, "name": name.strip(), "value": token},
    )


@router.get("/admin/deliveries")
def deliveries_page(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    """Failed deliveries (issue 15): each reminder whose e-mail waits for a retry, with
    its patient, attempts, last error and next try, in clinic time."""
    from tracker.services.worklist import failed_deliveries
    from tracker.web.clinic import today

    require(viewer, CAN_ADMINISTER, "read the failed deliveries")
    rows = failed_deliveries(engine=engine, today=today(request))
    for row in rows:
        row["next_try"] = _clinic_time(request, row["next_attempt_at"])
    record_views(
        engine=engine, actor=viewer.username, mrns=[str(row["mrn"]) for row in rows],
        what="failed deliveries page",
    )  # fmt: skip
    zone = protocol_of(request).reminders.time_zone
    return render(request, "deliveries.j2", {"rows": rows, "zone": zone})


@router.get("/admin/pacs")
def pacs_page(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    """The PACS feed (issue 17): where it reads, the dates read completely, the last
    successful poll, the last error and the back-off, in clinic time."""
    import os

    from tracker.pacs import PacsSettings, read_state

    require(viewer, CAN_ADMINISTER, "read the PACS feed's state")
    pacs = PacsSettings.from_environ(os.environ)
    state = read_state(engine=engine)
    zone = protocol_of(request).reminders.time_zone
    return render(
        request,
        "pacs.j2",
        {
            "url": pacs.url if pacs else None,
            "every": pacs.poll_minutes if pacs else None,
            "state": state,
            "success": f"{_clinic_time(request, state.last_success_at)} ({zone})"
            if state.last_success_at
            else None,
            "error_at": _clinic_time(request, state.last_error_at),
            "next_try": _clinic_time(request, state.next_attempt_at),
        },
    )


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
