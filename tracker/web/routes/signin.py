"""Signing in and out, and changing one's own password (also the page a user whose
password an admin reset is held on until they choose a new one, issue 14)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

import tracker.web.identity as identity
from tracker.errors import Problem, ValidationFailed
from tracker.web.auth import (
    SESSION_COOKIE,
    SESSION_HOURS,
    BadCsrf,
    signer_of,
)
from tracker.web.clinic import (
    safe_next,
)
from tracker.web.deps import CHANGE_PASSWORD_PATH, AccountSession, EngineDep
from tracker.web.flash import flash
from tracker.web.render import render

router = APIRouter(include_in_schema=False)
PRE_SESSION_COOKIE = "ho_pre"


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    return _signin_form(request, next_url=safe_next(next), error=None, username="")


def _signin_form(
    request: Request,
    *,
    next_url: str,
    error: str | None,
    username: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    nonce = request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(16)
    response = render(
        request,
        "signin.j2",
        {
            "signin_csrf": signer_of(request).anonymous_csrf(nonce),
            "next_url": next_url,
            "error": error,
            "errors": errors or {},
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
    blank = {
        field: reason
        for field, value, reason in (
            ("username", username, "Type your user name."),
            ("password", password, "Type your password."),
        )
        if not value.strip()
    }
    if blank:  # nothing to check yet: not a failed sign-in, nothing counted
        return _signin_form(
            request, next_url=next_url, error=None, errors=blank, username=username, status=422
        )
    wait = identity.sign_in_wait(engine=engine, username=username, address=address)
    if wait:  # growing delays after failures (issue 15); this attempt is not counted
        refused = _signin_form(
            request,
            next_url=next_url,
            error="Too many failed sign-ins for this name or from this computer; "
            f"wait {wait} second{'s' if wait != 1 else ''} and try again.",
            username=username,
            status=429,
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    viewer = identity.sign_in(engine=engine, username=username, password=password, address=address)
    if viewer is None:
        return _signin_form(
            request,
            next_url=next_url,
            error="That user name and password do not match; check both and try again.",
            username=username,
            status=401,
        )
    # a session held on the server (issue 15): the cookie carries only its id
    cookie = signer.cookie_for(identity.start_session(engine=engine, user_id=viewer.user_id))
    # a password an admin reset sends the first page on to the change-password page
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
def signout(session: AccountSession, engine: EngineDep) -> Response:
    """End the session on the server, so a copy of its cookie is refused too."""
    identity.end_session(engine=engine, viewer=session.viewer)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get(CHANGE_PASSWORD_PATH)
def change_password_page(
    request: Request, session: AccountSession, next: str | None = None
) -> Response:
    return _change_form(request, session, next_url=safe_next(next))


def _change_form(
    request: Request,
    session: identity.SessionUser,
    *,
    next_url: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "change_password.j2",
        {
            "password_due": session.must_change_password,
            "next_url": next_url,
            "errors": errors or {},
        },
        status=status,
    )


@router.post(CHANGE_PASSWORD_PATH)
def change_password(
    request: Request,
    session: AccountSession,
    engine: EngineDep,
    current_password: Annotated[str, Form(max_length=1000)] = "",
    new_password: Annotated[str, Form(max_length=1000)] = "",
    confirm: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/worklist",
) -> Response:
    """The current password, then the new one twice; a refusal is shown beside its
    field and every password is typed again (none is ever sent back)."""
    from tracker.services.users import change_password as change

    next_url = safe_next(next)
    try:
        if new_password != confirm:
            raise ValidationFailed(
                [Problem("user", None, "confirm", "differs from the new password; type both again")]
            )
        change(
            engine=engine,
            username=session.viewer.username,
            current=current_password,
            new=new_password,
            keep_session=session.viewer.session_nonce,  # this one: other sessions end
        )
    except ValidationFailed as failed:
        errors = {p.field: p.reason for p in failed.problems}
        return _change_form(request, session, next_url=next_url, errors=errors, status=422)
    flash(request, "Your password is changed; use the new one from now on.")
    if next_url == CHANGE_PASSWORD_PATH:
        next_url = "/worklist"
    return RedirectResponse(next_url, status_code=303)
