"""What every page needs to know about the request it serves: the clinic's protocol,
its today, an as-of date typed in a URL, and where a form may send the user next."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from tracker import values

STAGES = ("none", "early", "mineralising", "mature")
READINESS = ("ready", "not_ready", "insufficient_data", "not_applicable")
FLAGS = (
    "new_site",
    "recurrence",
    "grade_increase",
    "progression_after_treatment",
    "rising_activity",
    "genetic_ho",
    "rom_loss",
)


def protocol_of(request: Request) -> Any:
    return request.app.state.protocol


def protocol_name_of(request: Request) -> str:
    """Where the app's protocol came from, as reports and the board name it."""
    configured = request.app.state.settings.protocol_file
    return configured.name if configured is not None else "the spec's defaults"


def today(request: Request) -> dt.date:
    """The clinic's today: the app's clock (`app.state.today`, set by tests that
    need a fixed day), else the wall clock."""
    clock = getattr(request.app.state, "today", None)
    return clock() if clock is not None else dt.date.today()


class AsOfRefused(RequestValidationError):
    """An `as_of` in a URL that is not a date, or outside the dates `as_of` may take
    (tracker.values.as_of_problem): a 422 naming the `as_of` query field, as FastAPI
    names its own (the API's JSON `loc` is ["query", "as_of"]; a page says it in words)."""

    def __init__(self, text: str, reason: str) -> None:
        self.reason = reason  # the reason alone: "9999-12-31 is more than 366 days ahead"
        super().__init__([{"type": "value_error", "loc": ("query", "as_of"), "msg": reason,
                           "input": text}])  # fmt: skip


def check_as_of(request: Request, day: dt.date) -> dt.date:
    """`day` if `as_of` may take it: from EARLIEST_DATE to the clinic's today plus
    FUTURE_DAYS (the one check every page, report and API answer makes), else AsOfRefused."""
    problem = values.as_of_problem(day, today=today(request))
    if problem is not None:
        raise AsOfRefused(day.isoformat(), problem)
    return day


def parse_as_of(request: Request, text: str | None) -> dt.date:
    """The as-of date typed in a URL (empty: the clinic's today), checked by check_as_of."""
    if not text:
        return today(request)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise AsOfRefused(text, f"'{text}' is not a date in the form YYYY-MM-DD") from None
    return check_as_of(request, day)


def api_as_of(
    request: Request,
    as_of: Annotated[
        dt.date | None,
        Query(
            description=f"Assess as of this day (default today), from "
            f"{values.EARLIEST_DATE.isoformat()} to {values.FUTURE_DAYS} days ahead."
        ),
    ] = None,
) -> dt.date:
    """The API's `as_of` query parameter (FastAPI reads the date), with the same bounds."""
    return today(request) if as_of is None else check_as_of(request, as_of)


ApiAsOf = Annotated[dt.date, Depends(api_as_of)]


def safe_next(target: str | None) -> str:
    """Only local paths: an open redirect would let a link send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"
