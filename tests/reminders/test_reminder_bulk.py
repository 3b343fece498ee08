"""The planner's bulk writes: inserts of many rows per statement and set-based status
updates, in chunks, grouped by reason, each row only if unchanged since it was read;
written on a thread of their own while the plan goes on, all or nothing."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    add_finding,
    add_patient,
    any_engine,
    reminders,
)
from tracker.protocol import Protocol
from tracker.reminders import planner
from tracker.reminders.planner import plan
from tracker.store import database
from tracker.store.loaders import read_cohort

PROTOCOL = Protocol()
INJURED = date(2025, 1, 1)
PATIENTS = 9


def _injured(engine: Engine) -> None:
    """PATIENTS patients, each with a spinal cord injury on INJURED."""
    for i in range(PATIENTS):
        add_patient(
            engine,
            f"S{i:03d}",
            injuries=[{"kind": "spinal_cord_injury", "d": INJURED.isoformat()}],
        )


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, so a handful of patients spans several statements."""
    monkeypatch.setattr(planner, "_CHUNK", 4)
    monkeypatch.setattr(planner, "_ROWS_PER_INSERT", 7)


def test_many_reminders_are_inserted_and_closed_in_chunks_with_each_ones_reason(
    any_engine: Engine, small_chunks: None
) -> None:
    _injured(any_engine)
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
    _injured(any_engine)
    as_of = INJURED + timedelta(days=30)
    plan(engine=any_engine, as_of=as_of, protocol=PROTOCOL)
    rules = replace(
        PROTOCOL.reminders,
        consider_prophylaxis=replace(PROTOCOL.reminders.consider_prophylaxis, enabled=False),
    )
    changed = replace(PROTOCOL, reminders=rules)
    with any_engine.connect() as conn:
        frames = read_cohort(conn)
        stored = planner._stored(conn)
        patient_ids = planner._patient_ids(conn)
    # another process touches one of them (a delivery claim bumps the version)
    touched = int(stored.loc[stored["rule"] == "consider_prophylaxis", "id"].iloc[0])
    with any_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reminder SET version = version + 1 WHERE id = :i"), {"i": touched}
        )
    result = planner.reconcile(
        engine=any_engine,
        inputs=planner.record_inputs(vars(frames)),
        cohort=lambda: frames,
        stored=stored,
        patient_ids=patient_ids,
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


# --- writes overlapped with planning ---------------------------------------------------


def _injured_with_ho(engine: Engine) -> None:
    """Patients whose plan has rows from two of its three rounds: prophylaxis and screens
    (records alone) and a monitoring radiograph (the site's stage); no site is ready."""
    _injured(engine)
    with engine.begin() as conn:
        ids = dict(conn.execute(sa.text("SELECT mrn, id FROM patient")).all())
        add_finding(
            conn,
            ids["S000"],
            date=(INJURED + timedelta(days=20)).isoformat(),
            modality="radiograph",
        )


EXPECTED = PATIENTS * 5 - 4 + 1  # S000's HO on day 20 stops its 4 screens; 1 radiograph


def test_a_failure_while_sites_are_staged_rolls_back_the_rows_already_inserted(
    any_engine: Engine, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _injured_with_ho(any_engine)
    inserted = threading.Event()
    execute = planner._execute

    def counted(conn: Connection, sql: str, payload: str) -> None:
        execute(conn, sql, payload)
        inserted.set()

    def failing_staging(*args: object, **kwargs: object) -> None:
        # the first round's rows are in the writer's open transaction by now
        assert inserted.wait(timeout=60)
        raise RuntimeError("staging failed")

    monkeypatch.setattr(planner, "_execute", counted)
    monkeypatch.setattr(planner.sites, "stage_and_readiness", failing_staging)
    with pytest.raises(RuntimeError, match="staging failed"):
        plan(engine=any_engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL)
    assert reminders(any_engine) == []  # nothing half-written
    monkeypatch.undo()
    done = plan(engine=any_engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL)
    assert len(done.created) == len(reminders(any_engine)) == EXPECTED


def test_a_write_the_database_refuses_fails_the_plan_and_writes_nothing(
    any_engine: Engine, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _injured_with_ho(any_engine)
    calls: list[int] = []
    execute = planner._execute

    def refused_at_the_third(conn: Connection, sql: str, payload: str) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise sa.exc.OperationalError(sql, {}, Exception("disk I/O error"))
        execute(conn, sql, payload)

    monkeypatch.setattr(planner, "_execute", refused_at_the_third)
    with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
        plan(engine=any_engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL)
    assert len(calls) == 3 and reminders(any_engine) == []


def test_a_plan_into_an_in_memory_database_writes_from_the_planning_thread() -> None:
    # an in-memory SQLite database is one connection per thread: a writer thread would
    # see a database of its own, so there the writes run at the end, in this thread
    engine = database.make_engine("sqlite://")
    database.upgrade(engine)
    _injured_with_ho(engine)
    before = set(threading.enumerate())
    result = plan(engine=engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL)
    assert set(threading.enumerate()) == before
    assert len(result.created) == len(reminders(engine)) == EXPECTED
    assert set(result.created["rule"]) == {
        "consider_prophylaxis",
        "hip_ultrasound_screen",
        "monitoring_radiograph",
    }
    assert (
        plan(engine=engine, as_of=INJURED + timedelta(days=30), protocol=PROTOCOL).rows_written == 0
    )
