"""Request dependencies: the viewer of a page or API call, and the CSRF check.

Pages accept the session cookie only; the API accepts a bearer token or the
session cookie (then unsafe methods need the X-CSRF-Token header, as forms need
their hidden field).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

import tracker.web.identity as identity
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


def _session_viewer(request: Request) -> Viewer | None:
    signer = signer_of(request)
    found = signer.read(request.cookies.get(SESSION_COOKIE))
    if found is None:
        return None
    user_id, nonce = found
    viewer = identity.viewer_by_id(engine=engine_of(request), user_id=user_id, nonce=nonce)
    if viewer is not None:
        request.state.csrf = signer.csrf_token(nonce)
    return viewer


async def page_viewer(request: Request) -> Viewer:
    """The signed-in user of a page; forms (POST) must carry this session's token."""
    viewer = _session_viewer(request)
    if viewer is None:
        raise NotSignedIn()
    request.state.viewer = viewer
    if request.method not in SAFE_METHODS:
        form = await request.form()
        token = form.get(CSRF_FIELD)
        if not signer_of(request).csrf_ok(viewer.session_nonce, str(token) if token else None):
            raise BadCsrf()
    return viewer


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
    viewer = _session_viewer(request)
    if viewer is None:
        raise NotSignedIn()
    if request.method not in SAFE_METHODS and not signer_of(request).csrf_ok(
        viewer.session_nonce, request.headers.get(CSRF_HEADER)
    ):
        raise BadCsrf()
    request.state.viewer = viewer
    return viewer


def engine_dep(request: Request) -> Engine:
    return engine_of(request)


PageViewer = Annotated[Viewer, Depends(page_viewer)]
ApiViewer = Annotated[Viewer, Depends(api_viewer)]
EngineDep = Annotated[Engine, Depends(engine_dep)]
