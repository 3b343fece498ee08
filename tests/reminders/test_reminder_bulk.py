"""The planner's bulk writes: multi-row inserts and set-based status updates, in
chunks, grouped by reason, each row only if unchanged since it was read."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    add_finding,
    add_patient,
    any_engine,
    reminders,
)
from tracker.protocol import Protocol
from tracker.reminders import planner
from tracker.reminders.planner import plan

PROTOCOL = Protocol()
INJURED = date(2025, 1, 1)
PATIENTS = 9


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, so a handful of patients spans several statements."""
    monkeypatch.setattr(planner, "_CHUNK", 4)
    monkeypatch.setattr(planner, "_ROWS_PER_INSERT", 7)


def test_many_reminders_are_inserted_and_closed_in_chunks_with_each_ones_reason(
    any_engine: Engine, small_chunks: None
) -> None:
    for i in range(PATIENTS):
        add_patient(
            any_engine,
            f"S{i:03d}",
            injuries=[{"kind": "spinal_cord_injury", "d": INJURED.isoformat()}],
        )
    first = plan(engine=any_engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL)
    # per patient: consider_prophylaxis (day 14), screens on days 21, 42, 63 and 84
    assert len(first.created) == PATIENTS * 5 == len(reminders(any_engine))
    assert {r["status"] for r in reminders(any_engine)} == {"due", "pending"}

    # HO on a different day for each of the first six patients: their screens stop
    found = {}
    with any_engine.begin() as conn:
        ids = dict(conn.execute(sa.text("SELECT mrn, id FROM patient")).all())
        for i in range(6):
            day = INJURED + timedelta(days=31 + i)
            found[f"S{i:03d}"] = day
            add_finding(conn, ids[f"S{i:03d}"], date=day.isoformat(), modality="radiograph")
    rules = replace(
        PROTOCOL.reminders,
        consider_prophylaxis=replace(PROTOCOL.reminders.consider_prophylaxis, enabled=False),
    )
    changed = replace(PROTOCOL, reminders=rules)
    second = plan(engine=any_engine, as_of=INJURED + timedelta(days=40), protocol=changed)

    rows = reminders(any_engine)
    mrn_of = {v: k for k, v in ids.items()}
    reasons = {
        (mrn_of[r["patient_id"]], r["rule"], r["due"]): r["cancel_reason"]
        for r in rows
        if r["status"] == "cancelled"
    }
    expected = {}
    for mrn, day in found.items():
        for offset in (21, 42, 63, 84):
            expected[(mrn, "hip_ultrasound_screen", INJURED + timedelta(days=offset))] = (
                f"HO found on {day.isoformat()}: screening stops"
            )
    for i in range(PATIENTS):
        expected[(f"S{i:03d}", "consider_prophylaxis", INJURED + timedelta(days=14))] = (
            "the protocol switched consider_prophylaxis off"
        )
    assert reasons == expected
    assert len(second.cancelled) == len(expected) == 6 * 4 + PATIENTS
    cancelled = [r for r in rows if r["status"] == "cancelled"]
    assert all(r["version"] == 2 and r["closed_at"] is not None for r in cancelled)
    # the other three patients keep screening; nothing was deleted
    open_screens = [
        r for r in rows if r["rule"] == "hip_ultrasound_screen" and r["status"] != "cancelled"
    ]
    assert len(open_screens) == 3 * 4
    # HO at the hip is an early site now: one monitoring radiograph each, and no more
    assert set(second.created["rule"]) == {"monitoring_radiograph"} and len(second.created) == 6
    assert len(rows) == PATIENTS * 5 + 6
    assert (
        plan(engine=any_engine, as_of=INJURED + timedelta(days=40), protocol=changed).rows_written
        == 0
    )


def test_a_reminder_changed_since_it_was_read_is_left_alone(
    any_engine: Engine, small_chunks: None
) -> None:
    for i in range(PATIENTS):
        add_patient(
            any_engine,
            f"S{i:03d}",
            injuries=[{"kind": "spinal_cord_injury", "d": INJURED.isoformat()}],
        )
    as_of = INJURED + timedelta(days=30)
    plan(engine=any_engine, as_of=as_of, protocol=PROTOCOL)
    rules = replace(
        PROTOCOL.reminders,
        consider_prophylaxis=replace(PROTOCOL.reminders.consider_prophylaxis, enabled=False),
    )
    changed = replace(PROTOCOL, reminders=rules)
    with any_engine.connect() as conn:
        frames = planner.read_cohort(conn)
        stored = planner._stored(conn)
    # another process touches one of them (a delivery claim bumps the version)
    touched = int(stored.loc[stored["rule"] == "consider_prophylaxis", "id"].iloc[0])
    with any_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reminder SET version = version + 1 WHERE id = :i"), {"i": touched}
        )
    result = planner.reconcile(
        engine=any_engine,
        inputs=planner.cohort_inputs(frames, as_of, changed),
        stored=stored,
        as_of=as_of,
        protocol=changed,
        dry_run=False,
        now=planner.utcnow(),
    )
    assert len(result.cancelled) == PATIENTS  # planned from what was read...
    statuses = {
        r["id"]: r["status"] for r in reminders(any_engine) if r["rule"] == "consider_prophylaxis"
    }
    assert statuses.pop(touched) == "due"  # ...but the changed row was not overwritten
    assert set(statuses.values()) == {"cancelled"} and len(statuses) == PATIENTS - 1
