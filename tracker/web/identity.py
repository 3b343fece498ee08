"""Users, tokens and the audit trail as the web app needs them.

Passwords, tokens and audit rows belong to `tracker.services.users` and
`tracker.services.audit`; this module calls them, plus two small reads of its own:
the signed-in user by id (one indexed query per request) and the count of recent
failed sign-ins, which lives in `audit_event` so every app process sees it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import NotFound
from tracker.services.audit import (
    AuditFilters,
    AuditPage,
    audit_page,
    record_view,
    write_event,
)
from tracker.services.users import authenticate, list_users, mark_signed_in, user_for_token
from tracker.store.models import AuditEvent, UserAccount, table_of
from tracker.web.auth import FAILURE_WINDOW, MAX_FAILURES, Viewer

user_account = table_of(UserAccount)
audit_event = table_of(AuditEvent)


@dataclass(frozen=True)
class SessionUser:
    """Who a session cookie names, and whether they must choose a new password before
    they may use any other page (an admin reset it, issue 14)."""

    viewer: Viewer
    must_change_password: bool


def session_user(*, engine: Engine, user_id: int, nonce: str) -> SessionUser | None:
    """The active user a session cookie names (a deactivated user is signed out), in
    one indexed query per request."""
    u = user_account.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(u.id, u.username, u.role, u.active, u.team, u.must_change_password).where(
                u.id == user_id
            )
        ).first()
    if row is None or not row.active:
        return None
    viewer = Viewer(row.id, row.username, row.role, nonce, row.team)
    return SessionUser(viewer, bool(row.must_change_password))


def viewer_by_id(*, engine: Engine, user_id: int, nonce: str) -> Viewer | None:
    """The active user a session cookie names (a deactivated user is signed out)."""
    found = session_user(engine=engine, user_id=user_id, nonce=nonce)
    return found.viewer if found is not None else None


def viewer_by_token(*, engine: Engine, token: str) -> Viewer | None:
    if len(token) > 500:
        return None
    user = user_for_token(engine=engine, token=token)
    if user is None or not getattr(user, "active", True):
        return None
    return Viewer(int(user.id), str(user.username), str(user.role), None)


def too_many_failures(*, engine: Engine, username: str, address: str) -> bool:
    """Counted in the database (issue 6: any process, same count)."""
    a = audit_event.c
    since = dt.datetime.now(dt.UTC) - FAILURE_WINDOW
    with engine.connect() as conn:
        by_name, by_address = conn.execute(
            sa.select(
                sa.func.count().filter(a.username == username),
                sa.func.count().filter(a.after == _address_json(address)),
            ).where(a.action == "sign_in_failed", a.at >= since)
        ).one()
    return by_name >= MAX_FAILURES or by_address >= MAX_FAILURES


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
    record_view(engine=engine, actor=viewer.username, mrn=mrn)


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
