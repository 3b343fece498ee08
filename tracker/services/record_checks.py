"""Form values checked by the CSV import's own code (issue 6: one validation).

A form or API call becomes a small frame in the interchange file's format (one row
per finding or measurement), goes through the same column, rule and duplicate
checks as an imported file, plus the import's date-after-birth check, and any
problem comes back under the form's field path (`findings[1].brooker`) instead
of a file line.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd

from tracker.errors import Problem, ValidationFailed
from tracker.interchange.csv_format import FileFormat, format_number
from tracker.interchange.validate import check_columns, check_duplicates, check_rules

FIRST_LINE = 2  # the import counts the header as line 1
_REPEATS = re.compile(r"repeats line (\d+)")

# How a problem on (row index, CSV column) is named on the form.
FieldPath = Callable[[int, str], str]


def as_text(value: Any) -> str:
    """A value as the CSV file would hold it: ISO dates, canonical numbers, '' for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return format_number(value) if math.isfinite(value) else str(value)
    if isinstance(value, int | Decimal):
        return str(value)
    return str(value)


def check_rows(
    *,
    fmt: FileFormat,
    rows: Sequence[Mapping[str, Any]],
    field_path: FieldPath,
    source: str,
    birth_date: dt.date | None,
    today: dt.date,
) -> list[dict[str, Any]]:
    """Check rows (CSV column -> value) as the import would; return them typed.

    Raises ValidationFailed naming each bad value by its form field path."""
    frame = pd.DataFrame(
        [{name: as_text(row.get(name)) for name in fmt.column_names} for row in rows],
        columns=fmt.column_names,
        dtype=object,
    )
    frame.index = pd.RangeIndex(FIRST_LINE, len(frame) + FIRST_LINE, name="line")
    check = check_columns(frame, fmt, today)
    check_rules(check)
    check_duplicates(check)
    if birth_date is not None:
        _check_after_birth(check.rows, check.add, fmt, birth_date)
    problems = [_on_form(p, field_path, source) for p in check.problem_list()]
    if problems:
        raise ValidationFailed(set(problems))
    return [
        _plain_row({str(k): v for k, v in row.items()}) for row in check.rows.to_dict("records")
    ]


def _check_after_birth(
    rows: pd.DataFrame, add: Callable[..., None], fmt: FileFormat, birth: dt.date
) -> None:
    born = birth.isoformat()
    for column in fmt.columns:
        if column.kind != "date":
            continue
        value = rows[column.name]
        # ISO dates compare correctly as text, exactly as the import compares them.
        early = value.notna() & (value.fillna("9999") < born)
        add(early, column.name, value.fillna("") + " is before the patient's birth date " + born)


def _on_form(problem: Problem, field_path: FieldPath, source: str) -> Problem:
    index = (problem.line or FIRST_LINE) - FIRST_LINE
    reason = _REPEATS.sub(
        lambda m: "repeats " + field_path(int(m.group(1)) - FIRST_LINE, "").rstrip("."),
        problem.reason,
    )
    return Problem(source, None, field_path(index, problem.field), reason)


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Typed frame values as plain Python: dates, ints, floats, str or None."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[name] = None
        elif hasattr(value, "item"):  # numpy scalar
            out[name] = value.item()
        else:
            out[name] = value
    return out


def to_date(value: Any) -> dt.date | None:
    """An ISO text date from the checked frame as a date."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
