"""The CSV import page."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUpload

from tracker import labels
from tracker.errors import ValidationFailed
from tracker.web.auth import (
    CAN_EDIT,
    require,
)
from tracker.web.clinic import protocol_of, today
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/import")
def import_page(request: Request, viewer: PageViewer) -> Response:
    require(viewer, CAN_EDIT, "import records")
    return render(request, "import.j2", {"problems": None, "added": None})


@router.post("/import")
async def import_upload(request: Request, viewer: PageViewer, engine: EngineDep) -> Response:
    from tracker.services.imports import import_records

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
            with (folder / name).open("wb") as copy:  # in chunks, never whole in memory
                shutil.copyfileobj(upload.file, copy, 1 << 20)
            names.append(name)
        if not names:
            return render(
                request,
                "import.j2",
                {"problems": None, "added": None, "error": "Choose one or more CSV files."},
                status=422,
            )
        try:
            summary = import_records(  # and refreshes the board's calls of its patients
                engine=engine,
                folder=folder,
                actor=viewer.username,
                today=today(request),
                protocol=protocol_of(request),
                source="CSV upload of " + ", ".join(names),  # a row per patient, same transaction
            )
        except ValidationFailed as failed:
            return render(
                request, "import.j2", {"problems": failed.problems, "added": None}, status=422
            )
    return render(
        request,
        "import.j2",
        {
            "problems": None,
            "added": summary.added,
            "total": summary.total_added,
            "added_words": rows_added(summary.added),
        },
    )


def rows_added(added: dict[str, int]) -> list[str]:
    """What an import added, per file, as the records are called: {'patients.csv': 1,
    'imaging.csv': 4} -> ['1 patient', '4 site findings'] (a row of imaging.csv is one
    site's finding)."""
    from tracker.interchange import tables

    kinds = {
        "patients.csv": tables.patient.name,
        "imaging.csv": tables.finding.name,
        **{name: table.name for name, table in tables.SIMPLE_TABLES.items()},
    }
    return [
        labels.count(n, labels.entity(kinds.get(name, name.removesuffix(".csv"))))
        for name, n in added.items()
        if n
    ]
