"""Request dependencies: the viewer of a page or API call, and the CSRF check.

Pages accept the session cookie only; the API accepts a bearer token or the
session cookie (then unsafe methods need the X-CSRF-Token header, as forms need
their hidden field).

A user whose password an admin reset must choose a new one first (issue 14): until
they do, every page but the change-password page and sign-out sends them there, and
the API refuses their session (not their API tokens, which the reset does not touch).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine

import tracker.web.identity as identity
from tracker.config import Settings
from tracker.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    BadCsrf,
    NotSignedIn,
    Viewer,
    engine_of,
    signer_of,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHANGE_PASSWORD_PATH = "/account/password"


class PasswordChangeDue(HTTPException):
    """Sends a page request to the change-password page, keeping where it was going."""

    def __init__(self, request: Request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        next_part = f"?next={quote(target)}" if request.method in SAFE_METHODS else ""
        super().__init__(303, headers={"Location": CHANGE_PASSWORD_PATH + next_part})


def _session(request: Request) -> identity.SessionUser | None:
    """The live server-side session the cookie names (issue 15), if any."""
    signer = signer_of(request)
    session_id = signer.read(request.cookies.get(SESSION_COOKIE))
    if session_id is None:
        return None
    settings: Settings = request.app.state.settings
    idle = dt.timedelta(minutes=settings.session_idle_minutes)
    session = identity.session_user(engine=engine_of(request), session_id=session_id, idle=idle)
    if session is not None and session.viewer.session_nonce is not None:
        request.state.csrf = signer.csrf_token(session.viewer.session_nonce)
    return session


async def _page_session(request: Request) -> identity.SessionUser:
    """The signed-in user of a page; forms (POST) must carry this session's token."""
    session = _session(request)
    if session is None:
        raise NotSignedIn()
    viewer = session.viewer
    request.state.viewer = viewer
    if request.method not in SAFE_METHODS:
        form = await request.form()
        token = form.get(CSRF_FIELD)
        if not signer_of(request).csrf_ok(viewer.session_nonce, str(token) if token else None):
            raise BadCsrf()
    return session


async def page_viewer(request: Request) -> Viewer:
    """The signed-in user of a page, once any password change an admin asked for is done."""
    session = await _page_session(request)
    if session.must_change_password:
        raise PasswordChangeDue(request)
    return session.viewer


async def account_session(request: Request) -> identity.SessionUser:
    """The signed-in user, even with a password change due: for the change-password
    page itself and for signing out."""
    return await _page_session(request)


def api_viewer(request: Request) -> Viewer:
    """A bearer token's user, else the session's (with the CSRF header on writes)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        viewer = identity.viewer_by_token(engine=engine_of(request), token=token.strip())
        if viewer is None:
            raise NotSignedIn()
        request.state.viewer = viewer
        return viewer
    session = _session(request)
    if session is None:
        raise NotSignedIn()
    if session.must_change_password:
        raise HTTPException(
            403, "Choose a new password first: an admin reset it. Sign in to the web app."
        )
    viewer = session.viewer
    if request.method not in SAFE_METHODS and not signer_of(request).csrf_ok(
        viewer.session_nonce, request.headers.get(CSRF_HEADER)
    ):
        raise BadCsrf()
    request.state.viewer = viewer
    return viewer


def engine_dep(request: Request) -> Engine:
    return engine_of(request)


PageViewer = Annotated[Viewer, Depends(page_viewer)]
AccountSession = Annotated[identity.SessionUser, Depends(account_session)]
ApiViewer = Annotated[Viewer, Depends(api_viewer)]
EngineDep = Annotated[Engine, Depends(engine_dep)]
