"""The audit trail (issue 6): who did what to which record, when, before and after.

Rows are written inside the transaction of the change they describe, so a change
and its audit row are stored together or not at all. Everything lives in the
database, so any number of app processes share one trail.

Public surface:
    record_view(*, engine, actor, mrn) -> None
    audit_trail(*, engine, mrn=None, username=None, since=None, limit=500) -> list[AuditRow]
    write_event(conn, *, actor, action, entity, entity_id, mrn, before, after) -> None
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.store.models import AuditEvent, table_of

audit_event = table_of(AuditEvent)


@dataclass(frozen=True)
class AuditRow:
    """One audit row for display; `before`/`after` are the stored JSON, parsed."""

    id: int
    at: dt.datetime
    username: str | None
    action: str
    entity: str | None
    entity_id: int | None
    mrn: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "username": self.username,
            "action": self.action,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "mrn": self.mrn,
            "before": self.before,
            "after": self.after,
        }


def to_json(value: dict[str, Any] | None) -> str | None:
    """Stable JSON text of a record snapshot (dates as ISO text)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def write_event(
    conn: Connection,
    *,
    actor: str | None,
    action: vocab.AuditAction | str,
    entity: str | None,
    entity_id: int | None,
    mrn: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add one audit row on `conn`, inside the caller's transaction."""
    conn.execute(
        sa.insert(audit_event).values(
            at=dt.datetime.now(dt.UTC),
            username=actor,
            action=str(action),
            entity=entity,
            entity_id=entity_id,
            mrn=mrn,
            before=to_json(before),
            after=to_json(after),
        )
    )


def record_view(*, engine: Engine, actor: str, mrn: str) -> None:
    """Log that `actor` opened the record of patient `mrn` (issue 6: every view)."""
    with engine.begin() as conn:
        write_event(
            conn,
            actor=actor,
            action=vocab.AuditAction.view,
            entity="patient",
            entity_id=None,
            mrn=mrn,
        )


def audit_trail(
    *,
    engine: Engine,
    mrn: str | None = None,
    username: str | None = None,
    since: dt.date | dt.datetime | None = None,
    limit: int = 500,
) -> list[AuditRow]:
    """Audit rows matching every filter given, newest first."""
    a = audit_event.c
    query = sa.select(audit_event)
    if mrn:
        query = query.where(a.mrn == mrn)
    if username:
        query = query.where(a.username == username)
    if since is not None:
        if not isinstance(since, dt.datetime):
            since = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
        query = query.where(a.at >= since)
    query = query.order_by(a.at.desc(), a.id.desc()).limit(max(1, limit))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        AuditRow(
            id=row["id"],
            at=_utc(row["at"]),
            username=row["username"],
            action=row["action"],
            entity=row["entity"],
            entity_id=row["entity_id"],
            mrn=row["mrn"],
            before=json.loads(row["before"]) if row["before"] else None,
            after=json.loads(row["after"]) if row["after"] else None,
        )
        for row in rows
    ]


def last_change(conn: Connection, *, entity: str, entity_id: int) -> tuple[str | None, dt.datetime]:
    """Who last created, corrected or voided a record, and when (for conflict messages)."""
    a = audit_event.c
    row = conn.execute(
        sa.select(a.username, a.at)
        .where(a.entity == entity, a.entity_id == entity_id)
        .where(a.action.in_(["create", "correct", "void"]))
        .order_by(a.at.desc(), a.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, dt.datetime.now(dt.UTC)
    return row.username, _utc(row.at)


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
