"""`ho-tracker export DIR`: the whole store as interchange CSV v1.

Files are written in canonical form (ISO dates, shortest numbers, rows sorted by
natural key), so export, import into an empty database and export again gives
byte-identical files. Files are written to a temporary name and renamed, so a
failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine

from tracker.interchange import csv_format as fmt
from tracker.interchange import tables
from tracker.progress import NoProgress, Progress


def export_folder(
    engine: Engine, folder: Path, *, progress: Progress | None = None
) -> dict[str, int]:
    """Write all seven interchange files into `folder`; return rows written per file."""
    progress = progress or NoProgress()
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    progress.start("Exporting", len(fmt.FORMATS))
    with engine.connect() as conn:
        for file in fmt.FORMATS:
            frame = tables.read_canonical(conn, file)
            frame = frame.sort_values(list(file.key), kind="stable")
            target = folder / file.name
            partial = target.with_name(f".{file.name}.partial")
            frame.to_csv(partial, index=False, lineterminator="\n", encoding="utf-8")
            os.replace(partial, target)
            counts[file.name] = len(frame)
            progress.advance(1)
    return counts
