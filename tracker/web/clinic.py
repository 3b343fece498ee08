"""What every page needs to know about the request it serves: the clinic's protocol,
its today, an as-of date typed in a URL, and where a form may send the user next."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request

from tracker.errors import TrackerError

STAGES = ("none", "early", "mineralising", "mature")
READINESS = ("ready", "not_ready", "insufficient_data", "not_applicable")
FLAGS = (
    "new_site",
    "recurrence",
    "grade_increase",
    "progression_after_treatment",
    "rising_activity",
    "genetic_ho",
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


def parse_as_of(request: Request, text: str | None) -> dt.date:
    if not text:
        return today(request)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TrackerError(f"as_of '{text}' is not a date in the form YYYY-MM-DD.") from None


def safe_next(target: str | None) -> str:
    """Only local paths: an open redirect would let a link send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"
