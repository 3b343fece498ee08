"""The surgeons' board and its reports."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tracker.web.clinic import (
    parse_as_of,
    protocol_name_of,
    protocol_of,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render
from tracker.web.routes.patients import _check_report_format, _download

router = APIRouter(include_in_schema=False)


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
