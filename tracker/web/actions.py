"""Writes the pages and the API share, with the role rules of issue 6."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.services.worklist import Acknowledged, acknowledge_many, describe
from tracker.store.models import Patient, Reminder, table_of
from tracker.web.auth import CAN_ACKNOWLEDGE, NotAllowed, Viewer, require

reminder, patient = table_of(Reminder), table_of(Patient)
SURGEON_RULES = frozenset({"readiness_review"})  # what a surgeon may acknowledge


def may_acknowledge(viewer: Viewer, rule: str) -> bool:
    """Clinicians acknowledge any reminder; surgeons only readiness reviews."""
    return viewer.may(CAN_ACKNOWLEDGE) and (viewer.role != "surgeon" or rule in SURGEON_RULES)


def _check_roles(*, engine: Engine, viewer: Viewer, reminder_ids: Sequence[int]) -> None:
    require(viewer, CAN_ACKNOWLEDGE, "acknowledge reminders")
    if viewer.role != "surgeon":
        return  # unknown ids are refused by the service, which names them
    query = (
        sa.select(
            reminder.c.id,
            reminder.c.rule,
            reminder.c.site,
            reminder.c.side,
            patient.c.mrn,
            patient.c.family_name,
            patient.c.given_name,
        )
        .select_from(reminder.join(patient))
        .where(reminder.c.id.in_(list(reminder_ids)))
    )
    with engine.connect() as conn:
        found = [dict(m) for m in conn.execute(query).mappings()]
    for row in found:
        if not may_acknowledge(viewer, row["rule"]):
            raise NotAllowed(
                f"acknowledge reminder {row['id']} ({describe(row)}): surgeons acknowledge "
                "readiness reviews only"
            )


def acknowledge_reminders(
    *, engine: Engine, viewer: Viewer, reminder_ids: Sequence[int], reason: str | None
) -> list[Acknowledged]:
    """Several reminders at once, with a reason, all or none (the role rule holds for
    each: one a surgeon may not acknowledge refuses the lot)."""
    _check_roles(engine=engine, viewer=viewer, reminder_ids=reminder_ids)
    return acknowledge_many(
        engine=engine, reminder_ids=reminder_ids, by=viewer.username, reason=reason
    )


def acknowledge_reminder(
    *, engine: Engine, viewer: Viewer, reminder_id: int, reason: str | None = None
) -> Acknowledged:
    """One reminder; the reason is optional."""
    _check_roles(engine=engine, viewer=viewer, reminder_ids=[reminder_id])
    [done] = acknowledge_many(
        engine=engine,
        reminder_ids=[reminder_id],
        by=viewer.username,
        reason=reason,
        reason_required=False,
    )
    return done
