"""Users, tokens and the audit trail as the web app needs them.

Passwords, tokens and audit rows belong to `tracker.services.users` and
`tracker.services.audit`; this module calls them, plus two small reads of its own:
the signed-in session and its user (one indexed query per request) and the wait the recent
failed sign-ins impose, counted in `audit_event` so every app process sees them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import NotFound
from tracker.services import sessions
from tracker.services.audit import (
    AuditFilters,
    AuditPage,
    audit_page,
    record_view,
    write_event,
)
from tracker.services.users import authenticate, list_users, mark_signed_in, user_for_token
from tracker.store.models import AuditEvent, UserAccount, table_of
from tracker.web.auth import (
    ADDRESS_FREE_FAILURES,
    FAILURE_WINDOW,
    NAME_FREE_FAILURES,
    Viewer,
    sign_in_delay,
)

user_account = table_of(UserAccount)
audit_event = table_of(AuditEvent)


@dataclass(frozen=True)
class SessionUser:
    """Who a session cookie names, and whether they must choose a new password before
    they may use any other page (an admin reset it, issue 14)."""

    viewer: Viewer
    must_change_password: bool


def session_user(*, engine: Engine, session_id: str, idle: dt.timedelta) -> SessionUser | None:
    """The active user of the live session a cookie names, in one indexed query per
    request (`services.sessions`): None once the session was ended (signed out, the
    user disabled, their password or role changed), idle longer than `idle`, or 12
    hours old."""
    live = sessions.live_session(engine=engine, session_id=session_id, idle=idle)
    if live is None:
        return None
    viewer = Viewer(live.user_id, live.username, live.role, live.session_hash, live.team)
    return SessionUser(viewer, live.must_change_password)


def start_session(*, engine: Engine, user_id: int) -> str:
    """A new server-side session for a user who just signed in; its id, for the cookie."""
    with engine.begin() as conn:
        return sessions.start_session(conn, user_id=user_id)


def end_session(*, engine: Engine, viewer: Viewer, reason: str = "signed out") -> None:
    """End the viewer's own session (signing out), on every app process at once."""
    if viewer.session_nonce is None:
        return
    with engine.begin() as conn:
        sessions.end_session(conn, session_hash=viewer.session_nonce, reason=reason)


def viewer_by_token(*, engine: Engine, token: str) -> Viewer | None:
    if len(token) > 500:
        return None
    user = user_for_token(engine=engine, token=token)
    if user is None or not getattr(user, "active", True):
        return None
    return Viewer(int(user.id), str(user.username), str(user.role), None)


def sign_in_wait(
    *, engine: Engine, username: str, address: str, now: dt.datetime | None = None
) -> int:
    """Whole seconds before this user name may try again from this address (0: now).

    Growing delays, not a lockout (issue 15, constants in `tracker.web.auth`): recent
    `sign_in_failed` rows are counted for the name, since its last successful sign-in,
    and for the address, in one query of the audit trail, so every app process gives
    the same answer (issue 6)."""
    a = audit_event.c
    now = now or dt.datetime.now(dt.UTC)
    since = now - FAILURE_WINDOW
    last_success = (
        sa.select(sa.func.max(a.at))
        .where(a.action == "sign_in", a.username == username, a.at >= since)
        .scalar_subquery()
    )
    by_name = sa.and_(a.username == username, sa.or_(last_success.is_(None), a.at > last_success))
    by_address = a.after == _address_json(address)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count().filter(by_name),
                sa.func.max(a.at).filter(by_name),
                sa.func.count().filter(by_address),
                sa.func.max(a.at).filter(by_address),
            ).where(a.action == "sign_in_failed", a.at >= since)
        ).one()
    name_count, name_last, address_count, address_last = row
    waits = [
        _utc(last) + sign_in_delay(count, free) - now
        for count, last, free in (
            (name_count, name_last, NAME_FREE_FAILURES),
            (address_count, address_last, ADDRESS_FREE_FAILURES),
        )
        if last is not None
    ]
    longest = max(waits, default=dt.timedelta(0))
    return max(0, math.ceil(longest.total_seconds()))


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every stored timestamp is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _address_json(address: str) -> str:
    # as audit.write_event stores it (sorted keys)
    return json.dumps({"address": address}, sort_keys=True)


def sign_in(*, engine: Engine, username: str, password: str, address: str) -> Viewer | None:
    """The user if the password matches; every attempt is written to the audit trail,
    and a successful one is the user's last sign-in."""
    user = None
    if username and password:
        user = authenticate(engine=engine, username=username, password=password)
    if user is not None and not getattr(user, "active", True):
        user = None
    with engine.begin() as conn:
        write_event(
            conn,
            actor=username[:200] or None,
            action="sign_in" if user is not None else "sign_in_failed",
            entity="user_account",
            entity_id=int(user.id) if user is not None else None,
            mrn=None,
            after={"address": address},
        )
        if user is not None:
            mark_signed_in(conn, user_id=int(user.id))
    if user is None:
        return None
    return Viewer(int(user.id), str(user.username), str(user.role), None, user.team)


def log_view(*, engine: Engine, viewer: Viewer, mrn: str, what: str) -> None:
    """Every view of a patient record is logged (issue 6, audit)."""
    record_view(engine=engine, actor=viewer.username, mrn=mrn, what=what)


def log_event(
    *,
    engine: Engine,
    viewer: Viewer,
    action: str,
    entity: str | None = None,
    entity_id: int | None = None,
    detail: str | None = None,
) -> None:
    with engine.begin() as conn:
        write_event(
            conn,
            actor=viewer.username,
            action=action,
            entity=entity,
            entity_id=entity_id,
            mrn=None,
            after={"detail": detail} if detail else None,
        )


def audit_rows(
    *, engine: Engine, filters: AuditFilters, zone: dt.tzinfo, after: str | None = None
) -> AuditPage:
    """One page of the audit trail for the admin's page (`services.audit.audit_page`)."""
    return audit_page(engine=engine, filters=filters, zone=zone, after=after)


def user_rows(*, engine: Engine) -> list[Any]:
    return list(list_users(engine=engine))


def user_by_id(*, engine: Engine, user_id: int) -> Any:
    """The user the users page's buttons name by id (NotFound if there is none)."""
    for user in list_users(engine=engine):
        if user.id == user_id:
            return user
    raise NotFound(f"There is no user {user_id}.")
