"""The admin's pages: audit trail, users and protocol."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

import tracker.web.identity as identity
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.web.auth import (
    CAN_ADMINISTER,
    require,
)
from tracker.web.clinic import (
    protocol_of,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render

router = APIRouter(include_in_schema=False)


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
