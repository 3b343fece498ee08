"""`ho-tracker export DIR`: the whole store as interchange CSV v2.

Files are written in canonical form (ISO dates, shortest numbers, rows sorted by
natural key), so export, import into an empty database and export again gives
byte-identical files. Files are written to a temporary name and renamed, so a
failed export never leaves a half-written file behind.

Spreadsheet-safe (issue 15, OWASP CSV injection): a spreadsheet runs a cell that
begins with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula
(`=cmd|' /C calc'!A0`, `=HYPERLINK(...)`). Every CSV export (this one, and the
de-identified export built on it) therefore writes a *text* cell (an identifier, a
name, a note: csv_format's TEXT_KINDS) that begins with one of those characters,
after any quotes of its own, with one `'` in front: `=SUM(A1)` is written
`'=SUM(A1)`, and `'=SUM(A1)` is written `''=SUM(A1)`. Numbers and dates are written
by the format itself and never touched: `-0.5` in a numeric column is a number.

The import reads the rule backwards (`restore`): a text cell (trimmed, as the import
always trims) that begins with `'`, more quotes or none, then one of those characters
loses its first quote. Every other cell is read as it is (`O'Brien`, `'tis`). So
export -> import -> export gives the same bytes whether a value needed the quote or
not, and a stored value never gains or loses a character.

A cell holding a comma, a double quote or a line break (LF, or a lone CR, which
spreadsheets and the import also read as the end of a row) is quoted, as CSV does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from tracker.interchange import csv_format as fmt
from tracker.interchange import tables
from tracker.progress import NoProgress, Progress

FORMULA_START = "=+-@\t\r"  # OWASP CSV injection: what makes a cell a formula
_CLASS = "[=+\\-@\t\r]"
_NEEDS_QUOTE = f"^'*{_CLASS}"  # after any quotes of its own
_QUOTED = f"^'+{_CLASS}"  # how a neutralised cell reads back
_CSV_QUOTED = '[,"\n\r]'


def neutralise(texts: pd.Series) -> pd.Series:
    """Text cells as a spreadsheet may open them: a `'` in front of one that begins
    (after any quotes of its own) with a formula character. Missing values stay."""
    text = texts.astype(object)
    needs = text.str.match(_NEEDS_QUOTE).fillna(False).astype(bool)
    return text.where(~needs, "'" + text)


def restore(texts: pd.Series) -> pd.Series:
    """The import's reading of `neutralise`: the first quote of a cell that begins
    with quotes and then a formula character is taken off; `restore(neutralise(s))`
    is `s`."""
    text = texts.astype(object)
    quoted = text.str.match(_QUOTED).fillna(False).astype(bool)
    return text.where(~quoted, text.str.slice(1))


def text_columns(file: fmt.FileFormat) -> list[str]:
    return [c.name for c in file.columns if c.kind in fmt.TEXT_KINDS]


def write_csv(frame: pd.DataFrame, target: Path, *, text: list[str]) -> None:
    """Write `frame` as CSV (header, `\\n` line ends, UTF-8) to `target`, whole or not
    at all; the `text` columns are neutralised first."""
    cells = []
    for name in frame.columns:
        column = frame[name].astype(object)
        column = column.where(column.notna(), "").map(str)
        if name in text:
            column = neutralise(column)
        cells.append(_csv_cells(column))
    header = _csv_cells(pd.Series([str(c) for c in frame.columns], dtype=object))
    lines = [",".join(header.tolist())]
    if len(frame) and cells:
        rest: list = cells[1:]  # pandas-stubs type `others` as str only
        lines += cells[0].str.cat(rest, sep=",").tolist()
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    os.replace(partial, target)


def _csv_cells(column: pd.Series) -> pd.Series:
    """CSV's minimal quoting, plus a lone CR (which Python's csv leaves bare)."""
    quote = column.str.contains(_CSV_QUOTED, regex=True)
    return column.where(~quote, '"' + column.str.replace('"', '""', regex=False) + '"')


def stored_rows(conn: Connection, file: fmt.FileFormat) -> pd.DataFrame:
    """One file's stored rows as canonical text, sorted by natural key (not neutralised)."""
    frame = tables.read_canonical(conn, file)
    return frame.sort_values(list(file.key), kind="stable").reset_index(drop=True)


def export_folder(
    engine: Engine, folder: Path, *, progress: Progress | None = None
) -> dict[str, int]:
    """Write every interchange file into `folder`; return rows written per file."""
    progress = progress or NoProgress()
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    progress.start("Exporting", len(fmt.FORMATS))
    with engine.connect() as conn:
        for file in fmt.FORMATS:
            frame = stored_rows(conn, file)
            write_csv(frame, folder / file.name, text=text_columns(file))
            counts[file.name] = len(frame)
            progress.advance(1)
    return counts
