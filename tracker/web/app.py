"""The web app: `create_app` builds it over one engine; `serve` runs it under uvicorn.

Errors a user can cause (TrackerError) become HTTP statuses here and nowhere else:
ValidationFailed 422 with field paths, NotFound 404, Conflict 409, any other 400.
Pages get a readable page, the API gets JSON.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp

from tracker import labels
from tracker.config import Settings, get_settings
from tracker.errors import Conflict, NotFound, TrackerError, ValidationFailed
from tracker.services.assessment import protocol_from
from tracker.store import database
from tracker.web.auth import BadCsrf, NotAllowed, NotSignedIn, SessionSigner
from tracker.web.deps import ApiViewer
from tracker.web.headers import SecurityHeaders
from tracker.web.render import render
from tracker.web.secret import secret_key

log = logging.getLogger("tracker.web")
STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/v1"


class TrackerApp(FastAPI):
    """FastAPI with the security headers and upload limit (tracker.web.headers) outside
    everything, Starlette's own 500 response included."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return SecurityHeaders(
            super().build_middleware_stack(),
            max_upload_bytes=settings.max_upload_bytes,
            behind_https=settings.behind_https,
        )


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    secret: str | None = None,
    run_scheduler: bool = False,
) -> FastAPI:
    """The app over `engine` (default: the settings' database, made ready as the CLI
    does). `run_scheduler` also runs the reminder jobs in this process."""
    settings = settings or get_settings()
    if engine is None:
        engine = database.make_engine(settings.database_url)
        database.ensure_ready(engine)
    key = secret_key(engine, secret)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if run_scheduler:
            from tracker.reminders.jobs import start_background_scheduler

            scheduler = start_background_scheduler(engine=engine, settings=settings)
        try:
            yield
        finally:
            if scheduler is not None:  # within a few seconds, whatever is due (issue 14)
                scheduler.stop()

    app = TrackerApp(
        title="ho-tracker",
        version="1",
        description="Heterotopic ossification tracker: patients, records, assessment, "
        "reminders. Authenticate with `Authorization: Bearer TOKEN` "
        "(`ho-tracker users token NAME`).",
        lifespan=lifespan,
        # no docs page: Swagger UI needs a CDN or inline script (issue 15); the document
        # itself is served below, to signed-in callers only
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.signer = SessionSigner(key)
    app.state.protocol = protocol_from(settings.protocol_file)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    from tracker.web.routes import (
        admin,
        api,
        board,
        csvimport,
        fhir,
        forms,
        patient_details,
        patients,
        signin,
        worklist,
    )

    # patient_details before patients: /patients/new is not a patient's MRN
    for pages in (signin, worklist, patient_details, patients, board, csvimport, admin):
        app.include_router(pages.router)
    app.include_router(forms.router)
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(fhir.router)

    @app.get(f"{API_PREFIX}/openapi.json", include_in_schema=False)
    def openapi_document(_viewer: ApiViewer) -> dict[str, Any]:
        return app.openapi()

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> dict[str, Any]:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        answer: dict[str, Any] = {"status": "ok"}
        detail = _admin_detail(request, engine)
        if detail:
            answer["detail"] = detail
        return answer

    _add_error_handlers(app)
    return app


def _admin_detail(request: Request, engine: Engine) -> dict[str, Any]:
    """What `/healthz` adds for an admin (session or token): the PACS feed's last
    successful poll and last error (issue 17). Probes, signed out, get the status."""
    import os

    from tracker.pacs import PacsSettings
    from tracker.pacs.state import health
    from tracker.web.deps import api_viewer

    try:
        viewer = api_viewer(request)
    except (NotSignedIn, BadCsrf, HTTPException):
        return {}
    if viewer.role != "admin":
        return {}
    try:
        pacs = PacsSettings.from_environ(os.environ)
    except TrackerError as refused:
        return {"pacs": {"said": [str(refused)]}}
    return {"pacs": health(engine=engine, url=pacs.url)} if pacs is not None else {}


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def problems_json(failed: ValidationFailed) -> list[dict[str, Any]]:
    """`{"loc": [...field path...], "msg": ...}` like FastAPI's own 422s."""
    out = []
    for problem in failed.problems:
        loc: list[str | int] = ["body"]
        for part in problem.field.replace("]", "").split("."):
            name, _, index = part.partition("[")
            loc.append(name)
            if index.isdigit():
                loc.append(int(index))
        out.append({"loc": loc, "msg": problem.reason, "type": "value_error"})
    return out


def _add_error_handlers(app: FastAPI) -> None:
    def page_or_json(request: Request, status: int, title: str, message: str) -> Response:
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=status)
        return render(request, "error.j2", {"title": title, "message": message}, status=status)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        if is_api(request):
            return JSONResponse(
                {"detail": "Sign in first: send `Authorization: Bearer TOKEN`."},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, exc: NotAllowed) -> Response:
        return page_or_json(
            request, 403, "Not allowed", f"Your role may not {exc.what}; ask an administrator."
        )

    @app.exception_handler(BadCsrf)
    async def bad_csrf(request: Request, _exc: BadCsrf) -> Response:
        return page_or_json(
            request,
            403,
            "Form expired",
            "This form was not sent from this session (missing or stale security token); "
            "go back, reload the page and try again.",
        )

    @app.exception_handler(ValidationFailed)
    async def validation_failed(request: Request, exc: ValidationFailed) -> Response:
        if is_api(request):
            return JSONResponse({"detail": problems_json(exc)}, status_code=422)
        said = exc.sentences()  # "Finding 2 (right hip): HO is required", not field paths
        message = said[0] if len(said) == 1 else f"{labels.count(len(said), 'problem')} found:"
        return render(
            request,
            "error.j2",
            {"title": "Not saved", "message": message, "problems": said if len(said) > 1 else []},
            status=422,
        )

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return page_or_json(request, 404, "Not found", str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        return page_or_json(request, 409, "Not saved: someone else saved first", str(exc))

    @app.exception_handler(TrackerError)
    async def tracker_error(request: Request, exc: TrackerError) -> Response:
        return page_or_json(request, 400, "Cannot do that", str(exc))

    @app.exception_handler(sa.exc.DataError)
    async def data_error(request: Request, exc: sa.exc.DataError) -> Response:
        # A value the database cannot hold (say, a NUL byte in text on PostgreSQL) is
        # the caller's mistake, not a server fault.
        log.info("refused a value the database cannot store: %s", exc.orig)
        return page_or_json(
            request, 422, "Not saved", "A value cannot be stored (out of range or bad text)."
        )

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_api(request):
            detail = [
                {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                for e in exc.errors()
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        message = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:])}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return page_or_json(request, 422, "Cannot read the request", message)
