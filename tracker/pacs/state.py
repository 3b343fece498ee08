"""The feed's position and health, kept in `pacs_poll_state` (one row), and the
faults a poll can meet, each as a sentence."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker.errors import TrackerError
from tracker.store.models import PacsPollState, table_of, utcnow

log = logging.getLogger("tracker.pacs")

_state = table_of(PacsPollState)
# back-off after failures in a row: 1, 2, 4 ... minutes, never more than an hour
BACKOFF_CAP_MINUTES = 60


class PacsFault(TrackerError):
    """The PACS could not be read (down, slow, refused, broken answer); the sentence
    says which, for the admin page and the log."""

    # what the poll had done before the fault (its windows written so far stay)
    report: Any = None


@dataclass(frozen=True)
class PollState:
    complete_through: dt.date | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0
    next_attempt_at: datetime | None = None


def backoff(failures: int) -> timedelta:
    """How long to wait after `failures` failed polls in a row (1 -> 1 minute)."""
    return timedelta(minutes=min(2 ** max(failures - 1, 0), BACKOFF_CAP_MINUTES))


def read_state(*, engine: Engine) -> PollState:
    with engine.connect() as conn:
        return _read(conn)


def _read(conn: Connection) -> PollState:
    row = conn.execute(sa.select(_state).where(_state.c.id == 1)).mappings().first()
    if row is None:
        return PollState()
    return PollState(**{k: _aware(v) for k, v in row.items() if k != "id"})


def _aware(value: Any) -> Any:
    # SQLite hands timestamps back naive; they were written in UTC
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _ensure_row(conn: Connection) -> None:
    if conn.execute(sa.select(_state.c.id).where(_state.c.id == 1)).first() is None:
        conn.execute(sa.insert(_state).values(id=1, failures=0))


def advance(conn: Connection, through: dt.date) -> None:
    """Move the position to `through` (never back), in the caller's transaction: the
    window's studies and the new position are written together."""
    _ensure_row(conn)
    conn.execute(
        sa.update(_state)
        .where(
            _state.c.id == 1,
            sa.or_(_state.c.complete_through.is_(None), _state.c.complete_through < through),
        )
        .values(complete_through=through)
    )


def claim(*, engine: Engine, now: datetime, lease: timedelta) -> bool:
    """Take the next scheduled poll if it is due (no attempt time, or that time has
    come), pushing the attempt time out by `lease`: of two schedulers on one
    database only one polls, and a poll killed midway is retried after the lease."""
    with engine.begin() as conn:
        _ensure_row(conn)
        taken = conn.execute(
            sa.update(_state)
            .where(
                _state.c.id == 1,
                sa.or_(_state.c.next_attempt_at.is_(None), _state.c.next_attempt_at <= now),
            )
            .values(next_attempt_at=now + lease)
        )
        return bool(taken.rowcount)


def record_success(*, engine: Engine, now: datetime, poll_minutes: int) -> None:
    with engine.begin() as conn:
        _ensure_row(conn)
        conn.execute(
            sa.update(_state)
            .where(_state.c.id == 1)
            .values(
                last_success_at=now,
                failures=0,
                next_attempt_at=now + timedelta(minutes=poll_minutes),
            )
        )


def record_failure(*, engine: Engine, fault: PacsFault, now: datetime | None = None) -> PollState:
    """Keep the error and the back-off; log it once, when it is new or differs from
    the last error (a PACS down all night is one line, not one per retry)."""
    now = now or utcnow()
    said = str(fault)[:500]
    with engine.begin() as conn:
        _ensure_row(conn)
        before = _read(conn)
        failures = before.failures + 1
        conn.execute(
            sa.update(_state)
            .where(_state.c.id == 1)
            .values(
                last_error=said,
                last_error_at=now,
                failures=failures,
                next_attempt_at=now + backoff(failures),
            )
        )
        after = _read(conn)
    if before.failures == 0 or before.last_error != said:
        log.warning("PACS poll failed: %s", said)
    return after


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def status_sentences(state: PollState) -> list[str]:
    """The feed's health in words, for `pacs status`, the admin page and /healthz."""
    said = [
        f"Every study up to {state.complete_through:%Y-%m-%d} has been read."
        if state.complete_through is not None
        else "No study date has been read completely yet.",
        f"Last successful poll: {_when(state.last_success_at)}."
        if state.last_success_at is not None
        else "No poll has succeeded yet.",
    ]
    if state.last_error is not None and state.last_error_at is not None:
        said.append(f"Last error: {state.last_error} ({_when(state.last_error_at)}).")
    if state.failures:
        said.append(f"Failed polls in a row: {state.failures}.")
    if state.next_attempt_at is not None:
        said.append(f"Next poll: not before {_when(state.next_attempt_at)}.")
    return said


def health(*, engine: Engine, url: str) -> dict[str, Any]:
    """The feed's state for `/healthz` detail (admins only): the PACS address, the
    dates read, the last successful poll and the last error, in words and as data."""
    state = read_state(engine=engine)

    def stamp(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "url": url,
        "complete_through": (
            state.complete_through.isoformat() if state.complete_through is not None else None
        ),
        "last_success_at": stamp(state.last_success_at),
        "last_error": state.last_error,
        "last_error_at": stamp(state.last_error_at),
        "failures": state.failures,
        "next_attempt_at": stamp(state.next_attempt_at),
        "said": status_sentences(state),
    }
