"""The surgeons' board (50 sites a page, from the stored site assessments) and its
reports (the whole cohort)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tracker.services.audit import record_views
from tracker.services.board import BoardCursor, BoardPage, board_page
from tracker.services.site_assessments import (
    FLAGS,
    READINESS,
    STAGES,
    refresh_all,
    site_filters,
    spoken_date,
)
from tracker.web.auth import require
from tracker.web.clinic import (
    parse_as_of,
    protocol_name_of,
    protocol_of,
    safe_next,
    today,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.flash import flash
from tracker.web.render import render
from tracker.web.routes.patients import _check_report_format, _download

router = APIRouter(include_in_schema=False)

# Refreshing assesses the whole cohort again: the board's readers and the admins may.
CAN_REFRESH = frozenset({"surgeon", "admin"})

Choice = Annotated[str | None, Query(max_length=40)]


@router.get("/board")
def board_page_view(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
    stage: Choice = None,
    readiness: Choice = None,
    flag: Choice = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    filters = site_filters(stage=stage, readiness=readiness, flag=flag)
    page = board_page(
        engine=engine,
        today=today(request),
        protocol=protocol_of(request),
        as_of=parse_as_of(request, as_of) if as_of else None,
        filters=filters,
        after=BoardCursor.parse(after),
    )
    kept = {
        "as_of": as_of or "",
        "stage": filters.stage or "",
        "readiness": filters.readiness or "",
        "flag": filters.flag or "",
    }
    # a row per patient shown on this page (issue 15), as the patient search logs
    record_views(
        engine=engine, actor=viewer.username, mrns=[row.mrn for row in page.rows],
        what="board", search=kept,
    )  # fmt: skip
    return render(
        request,
        "board.j2",
        {
            "b": page,
            "stale_since": spoken_date(page.state.as_of) if page.state.as_of else None,
            "may_refresh": viewer.may(CAN_REFRESH),
            "choices": {"stage": STAGES, "readiness": READINESS, "flag": FLAGS},
            "kept": kept,
            "protocol_name": protocol_name_of(request),
            "first_url": _url(kept),
            "stored_url": _url({**kept, "as_of": ""}),
            "next_url": _url(kept, page) if page.next_after else None,
            "here": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


def _url(kept: dict[str, str], page: BoardPage | None = None) -> str:
    """The board with these filters, from the first page or after this one."""
    query: dict[str, Any] = {k: v for k, v in kept.items() if v}
    if page is not None and page.next_after is not None:
        query["after"] = str(page.next_after)
    return "/board" + (f"?{urlencode(query)}" if query else "")


@router.post("/board/refresh")
def board_refresh(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    back: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """Assess every patient again as of today and store the calls the board reads."""
    require(viewer, CAN_REFRESH, "refresh the board (a surgeon or an admin may)")
    done = refresh_all(engine=engine, as_of=today(request), protocol=protocol_of(request))
    flash(
        request,
        f"Board refreshed: {_many(done.sites, 'site')} of {_many(done.patients, 'patient')} "
        f"assessed as of {spoken_date(done.as_of)}.",
    )
    target = safe_next(back) if back and back.startswith("/board") else "/board"
    return RedirectResponse(target, status_code=303)


def _many(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


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
    shown = [site.mrn for site in board.sites] + [m.mrn for m in board.reminders or ()]
    record_views(engine=engine, actor=viewer.username, mrns=shown, what=f"board report, {fmt}")
    with tempfile.TemporaryDirectory() as scratch:
        return _download(write_board_report(board, Path(scratch), fmt))
