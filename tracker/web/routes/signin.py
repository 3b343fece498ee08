"""Signing in and out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

import tracker.web.identity as identity
from tracker.web.auth import (
    SESSION_COOKIE,
    SESSION_HOURS,
    BadCsrf,
    signer_of,
)
from tracker.web.clinic import (
    safe_next,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render

router = APIRouter(include_in_schema=False)
PRE_SESSION_COOKIE = "ho_pre"


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
