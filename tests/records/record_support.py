"""Small builders for the record-service tests: a patient, and the audit rows."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

TODAY = dt.date(2025, 6, 15)
BORN = dt.date(1980, 3, 1)


def add_patient(engine: Engine, mrn: str = "A001", birth_date: dt.date | None = BORN) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO patient (mrn, birth_date) VALUES (:mrn, :born)"),
            {"mrn": mrn, "born": birth_date},
        )


def audit_rows(engine: Engine, entity: str | None = None) -> list[dict[str, Any]]:
    query = "SELECT username, action, entity, entity_id, mrn, before, after FROM audit_event"
    if entity:
        query += f" WHERE entity = '{entity}'"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query + " ORDER BY id")).mappings().all()
    return [
        {
            **row,
            "before": json.loads(row["before"]) if row["before"] else None,
            "after": json.loads(row["after"]) if row["after"] else None,
        }
        for row in rows
    ]


def count(engine: Engine, table: str, *, live: bool = False) -> int:
    where = " WHERE voided_at IS NULL" if live else ""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}{where}")).scalar_one())
