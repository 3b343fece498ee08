"""Writes the pages and the API share, with the role rules of issue 6."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import NotFound
from tracker.reminders.delivery import acknowledge
from tracker.store.models import Reminder, table_of
from tracker.web.auth import CAN_ACKNOWLEDGE, NotAllowed, Viewer, require
from tracker.web.identity import log_event

reminder = table_of(Reminder)


def acknowledge_reminder(*, engine: Engine, viewer: Viewer, reminder_id: int) -> str:
    """Clinicians acknowledge any reminder; surgeons only readiness reviews."""
    require(viewer, CAN_ACKNOWLEDGE, "acknowledge reminders")
    with engine.connect() as conn:
        rule = conn.execute(
            sa.select(reminder.c.rule).where(reminder.c.id == reminder_id)
        ).scalar_one_or_none()
    if rule is None:
        raise NotFound(f"There is no reminder {reminder_id}.")
    if viewer.role == "surgeon" and rule != "readiness_review":
        raise NotAllowed("acknowledge this reminder (surgeons acknowledge readiness reviews)")
    previous = acknowledge(engine=engine, reminder_id=reminder_id)
    log_event(
        engine=engine, viewer=viewer, action="acknowledge", entity="reminder", entity_id=reminder_id
    )
    return previous
