"""One rule per value (issue 15): what an identifier, a piece of free text, a number
and a date may be, wherever it comes from.

CSV files, forms, the JSON API, FHIR and DICOM imports, the CLI and the user and
team services all check values with these definitions, so the same bad value gets
the same refusal through every entry point:

- identifiers (MRN, team, user name) have no control character at all, no space at
  either end, and a length limit;
- free text has no control character, except line breaks in notes;
- numbers are finite and within +/- NUMBER_LIMIT;
- dates run from EARLIEST_DATE to the clinic's today, or up to FUTURE_DAYS ahead
  where the record allows a future date; `as_of` has the same bounds.

The vectorised column checks of `interchange.validate` use the same patterns.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

EARLIEST_DATE = dt.date(1900, 1, 1)
FUTURE_DAYS = 366  # the bounded future a record (or as_of) may reach
NUMBER_LIMIT = 1e12

MRN_MAX = 64
TEAM_MAX = 100
USERNAME_MAX = 200
NAME_MAX = 200
NOTE_MAX = 2000
SHORT_TEXT_MAX = 300

# Every C0 control character and DEL; notes may hold line breaks (LF, and CR in CRLF).
CONTROL = "\x00-\x1f\x7f"
CONTROL_IN_NOTE = "\x00-\x09\x0b\x0c\x0e-\x1f\x7f"
CONTROL_RE = re.compile(f"[{CONTROL}]")
CONTROL_IN_NOTE_RE = re.compile(f"[{CONTROL_IN_NOTE}]")


def _named(character: str) -> str:
    names = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}
    return names.get(character, f"control character U+{ord(character):04X}")


def control_reason(character: str) -> str:
    """The refusal of a value holding the control character `character`."""
    return f"contains {_named(character)}, which is not allowed"


def longer_reason(limit: int) -> str:
    return f"is longer than {limit} characters"


def identifier_problem(text: str, *, limit: int) -> str | None:
    """Why `text` cannot be an identifier (MRN, team, user name), or None."""
    if text == "":
        return "is required"
    found = CONTROL_RE.search(text)
    if found:
        return control_reason(found.group())
    if text != text.strip():
        return "starts or ends with a space"
    if len(text) > limit:
        return longer_reason(limit)
    return None


# An MRN is also a part of the address of the patient's pages and API (`/patients/{mrn}`),
# where a `/` cannot stand: such a patient could be stored but never opened.
MRN_FORBIDDEN = "/"
MRN_FORBIDDEN_REASON = "contains a '/', which is not allowed in an MRN"


def mrn_problem(text: str) -> str | None:
    """Why `text` cannot be an MRN, or None: an identifier without a '/'."""
    problem = identifier_problem(text, limit=MRN_MAX)
    if problem is None and MRN_FORBIDDEN in text:
        return MRN_FORBIDDEN_REASON
    return problem


def text_problem(text: str, *, limit: int, line_breaks: bool = False) -> str | None:
    """Why `text` cannot be free text (a note when `line_breaks`), or None."""
    found = (CONTROL_IN_NOTE_RE if line_breaks else CONTROL_RE).search(text)
    if found:
        return control_reason(found.group())
    if len(text) > limit:
        return longer_reason(limit)
    return None


NUMBER_OUTSIDE = f"is outside -{NUMBER_LIMIT:.0e} to {NUMBER_LIMIT:.0e}".replace("+", "")


def number_problem(value: float) -> str | None:
    """Why `value` cannot be a recorded number, or None."""
    if not math.isfinite(value):
        return "is not a finite number"
    if abs(value) > NUMBER_LIMIT:
        return NUMBER_OUTSIDE
    return None


def latest_date(today: dt.date, *, future: bool = False) -> dt.date:
    """The last date a value may take: today, or FUTURE_DAYS ahead where allowed."""
    return today + dt.timedelta(days=FUTURE_DAYS) if future else today


def date_problem(value: dt.date, *, today: dt.date, future: bool = False) -> str | None:
    """Why `value` cannot be a recorded date, or None."""
    if value < EARLIEST_DATE:
        return str(early_reason(value.isoformat()))
    if value > latest_date(today, future=future):
        return str(late_reason(value.isoformat(), future=future))
    return None


# The words of a refused date, from its ISO text; `text` may be a pandas Series of
# them (the vectorised CSV checks), so the words are built by concatenation.
def early_reason(text: Any) -> Any:
    return text + f" is before {EARLIEST_DATE.isoformat()}"


def late_reason(text: Any, *, future: bool = False) -> Any:
    return text + (f" is more than {FUTURE_DAYS} days ahead" if future else " is in the future")


def as_of_problem(value: dt.date, *, today: dt.date) -> str | None:
    """`as_of` has the bounds of a date that may reach the bounded future."""
    return date_problem(value, today=today, future=True)
