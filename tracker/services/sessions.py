"""Web sessions held on the server (issue 15).

Public surface:
    MAX_AGE                                       # a session's whole life, however busy
    session_hash(session_id) -> str               # what is stored: the id's SHA-256
    start_session(conn, *, user_id) -> str        # the new session's id, for the cookie
    end_sessions(conn, user_id, reason, keep=None) -> int
    end_session(conn, *, session_hash, reason) -> None
    live_session(*, engine, session_id, idle) -> LiveSession | None

A session is a row of `web_session`; the browser's cookie carries (signed) a random
id of which only the SHA-256 is stored. Each request reads the row and its user in
one indexed query and refuses a session that was ended, whose user is disabled, that
has been idle longer than the configured time, or that is older than `MAX_AGE`.
Ending a session is a write to that row, so it takes effect at once on every app
process. An ended row stays ended: re-enabling a user revives none of their sessions.

`last_seen_at` is written at most about once a minute per session, not on every
page view (a page view should not have to be a write on SQLite).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker.store.models import UserAccount, WebSession, table_of

MAX_AGE = dt.timedelta(hours=12)
TOUCH_EVERY = dt.timedelta(minutes=1)
# ended and expired rows are kept a while (who was signed in when), then pruned
KEEP_ENDED = dt.timedelta(days=7)

web_session = table_of(WebSession)
user_account = table_of(UserAccount)


@dataclass(frozen=True)
class LiveSession:
    """A session that may be used, and the user it acts for."""

    id: int
    session_hash: str
    user_id: int
    username: str
    role: str
    team: str | None
    must_change_password: bool


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every stored timestamp is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def start_session(conn: Connection, *, user_id: int) -> str:
    """A new session for `user_id`; returns its id (only its hash is stored). Rows
    long dead are pruned on the way."""
    now = _now()
    s = web_session.c
    conn.execute(sa.delete(web_session).where(s.created_at < now - MAX_AGE - KEEP_ENDED))
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(web_session).values(
            session_hash=session_hash(session_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
        )
    )
    return session_id


def end_sessions(conn: Connection, user_id: int, reason: str, keep: str | None = None) -> int:
    """End every live session of a user, but the one whose hash is `keep` (the
    request's own, when a user changes their own password); the number ended."""
    s = web_session.c
    query = sa.update(web_session).where(s.user_id == user_id, s.ended_at.is_(None))
    if keep is not None:
        query = query.where(s.session_hash != keep)
    result = conn.execute(query.values(ended_at=_now(), ended_reason=reason[:40]))
    return int(result.rowcount or 0)


def end_session(conn: Connection, *, session_hash: str, reason: str) -> None:
    """End one session (signing out)."""
    s = web_session.c
    conn.execute(
        sa.update(web_session)
        .where(s.session_hash == session_hash, s.ended_at.is_(None))
        .values(ended_at=_now(), ended_reason=reason[:40])
    )


def live_session(*, engine: Engine, session_id: str, idle: dt.timedelta) -> LiveSession | None:
    """The session a cookie names if it may still be used, in one indexed query (and
    a write at most once a minute, or once when it has just run out)."""
    s, u = web_session.c, user_account.c
    digest = session_hash(session_id)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                s.id,
                s.created_at,
                s.last_seen_at,
                s.ended_at,
                s.user_id,
                u.username,
                u.role,
                u.active,
                u.team,
                u.must_change_password,
            )
            .select_from(web_session.join(user_account, s.user_id == u.id))
            .where(s.session_hash == digest)
        ).first()
    if row is None or row.ended_at is not None or not row.active:
        return None
    now = _now()
    seen = _utc(row.last_seen_at)
    ran_out = None
    if now - _utc(row.created_at) > MAX_AGE:
        ran_out = "expired"
    elif now - seen > idle:
        ran_out = "idle"
    if ran_out is not None:
        with engine.begin() as conn:
            end_session(conn, session_hash=digest, reason=ran_out)
        return None
    # a quarter of the idle time when that is shorter, so a short idle limit still
    # sees a busy session as busy
    if now - seen > min(TOUCH_EVERY, idle / 4):
        with engine.begin() as conn:
            conn.execute(
                sa.update(web_session)
                .where(s.id == row.id, s.ended_at.is_(None))
                .values(last_seen_at=now)
            )
    return LiveSession(
        row.id,
        digest,
        row.user_id,
        row.username,
        row.role,
        row.team,
        bool(row.must_change_password),
    )
