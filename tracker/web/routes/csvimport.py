"""The CSV import page."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUpload

import tracker.web.identity as identity
from tracker.errors import ValidationFailed
from tracker.web.auth import (
    CAN_EDIT,
    require,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render

router = APIRouter(include_in_schema=False)


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
