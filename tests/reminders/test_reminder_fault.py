"""The fault test of issue 4: two real scheduler processes share one PostgreSQL
database, the SMTP server refuses 30% of messages, and one scheduler is killed with
SIGKILL at random moments, at least 20 times, and restarted each time. In the end
every due reminder arrived at the server, and none arrived twice (counted by
Message-ID at the server).

New patients keep arriving while this runs, so deliveries (and kills in the middle
of them) happen throughout. Leases and back-off are shortened through the
environment, exactly as an operator would set them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import SERVER_URL
from tests.reminders.reminder_support import (
    Mailbox,
    add_patient,
    fresh_postgres,
    give_team_address,
    reminders_postgres_url,
    start_smtp,
)
from tracker.protocol import Protocol
from tracker.reminders.delivery import clinic_day
from tracker.reminders.planner import plan
from tracker.store.models import utcnow

REPO = Path(__file__).resolve().parents[2]
KILLS = 20
WAVES = 20
PER_WAVE = 10


def scheduler(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli import main; main()", "scheduler"],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def wait_until_started(log: Path, starts: int, timeout: float = 90.0) -> None:
    """Wait until the log shows `starts` scheduler starts (APScheduler logs each).

    A deadline, not a speed test: on a busy machine (the suite runs beside other
    work) importing and starting a scheduler took 13 s, and 15 s failed the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count("Scheduler started") >= starts:
            return
        time.sleep(0.02)
    raise AssertionError(f"scheduler start {starts} not seen in {log}")


def wait_until_delivered(engine: Any, pid: int, timeout: float = 30.0) -> None:
    """Wait (at most `timeout`) until the scheduler process `pid` has delivered one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(
                sa.text("SELECT count(*) FROM delivery_attempt WHERE outcome = 'accepted' "
                        "AND worker LIKE :worker"), {"worker": f"%:{pid}"},
            ).scalar_one()  # fmt: skip
        if done:
            return
        time.sleep(0.05)


def add_wave(engine: Any, wave: int, today: date) -> None:
    for n in range(PER_WAVE):
        end = today - timedelta(days=1 + (n % 9))  # due in the last nine days: no escalation
        add_patient(
            engine,
            f"W{wave:02d}-{n:02d}",
            courses=[{"agent": "indomethacin", "intent": "prophylaxis",
                      "start": (end - timedelta(days=21)).isoformat(), "end": end.isoformat()}],
        )  # fmt: skip


@pytest.mark.postgres
def test_killed_schedulers_deliver_every_reminder_exactly_once(tmp_path: Path) -> None:
    if not SERVER_URL:
        pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
    engine = fresh_postgres()
    server = start_smtp(Mailbox(refuse_rate=0.3, seed=11, delay=0.02))
    today = clinic_day(utcnow(), Protocol().reminders)
    give_team_address(engine)
    add_wave(engine, 0, today)
    plan(engine=engine, as_of=today, protocol=Protocol())

    env = {
        **os.environ,
        **server.env(),
        "HO_TRACKER_DATABASE_URL": reminders_postgres_url(),
        "HO_TRACKER_DELIVERY_LEASE_SECONDS": "1.5",
        "HO_TRACKER_RETRY_BASE_SECONDS": "0.1",
        "HO_TRACKER_RETRY_MAX_SECONDS": "0.5",
        "HO_TRACKER_DELIVER_INTERVAL_SECONDS": "0.2",
        "HO_TRACKER_PLAN_INTERVAL_SECONDS": "1",
        "HO_TRACKER_SMTP_TIMEOUT_SECONDS": "5",
    }
    victim_log = tmp_path / "victim.log"
    steady = scheduler(env, tmp_path / "steady.log")
    victim = scheduler(env, victim_log)
    chance = random.Random(2026)
    kills = 0
    try:
        for kill in range(KILLS):
            if kill < WAVES:
                add_wave(engine, kill + 1, today)
            # kill at a random moment once it runs its jobs (not while it imports)
            wait_until_started(victim_log, starts=kill + 1)
            if kill % 4 == 3:
                # every fourth victim first delivers something (on a busy machine a
                # victim's first seconds can go by without its winning a reminder), so
                # the kills always hit schedulers in the middle of real deliveries
                wait_until_delivered(engine, victim.pid)
                time.sleep(chance.uniform(0.0, 0.3))
            else:
                # up to 1.4 s, so some victims live long enough to claim and send (with
                # at most 0.6 s, in one run of three no victim sent anything)
                time.sleep(chance.uniform(0.1, 1.4))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            victim = scheduler(env, victim_log)
        expected = (WAVES + 1) * PER_WAVE
        deadline = time.monotonic() + 90  # ends as soon as all are delivered
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                open_rows = conn.execute(sa.text(
                    "SELECT count(*) FROM reminder WHERE rule = 'course_review' "
                    "AND (status <> 'sent' OR accepted_at IS NULL)")).scalar_one()  # fmt: skip
            if open_rows == 0:
                break
            time.sleep(0.3)
    finally:
        for process in (steady, victim):
            process.send_signal(signal.SIGTERM)
        for process in (steady, victim):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        server.controller.stop()

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, status, message_id, accepted_at, last_error FROM reminder "
            "WHERE rule = 'course_review'")).all()  # fmt: skip
        outcomes = dict(conn.execute(sa.text(
            "SELECT outcome, count(*) FROM delivery_attempt GROUP BY outcome")).all())  # fmt: skip
        by_victims = conn.execute(
            sa.text("SELECT count(*) FROM delivery_attempt WHERE outcome = 'accepted' "
                    "AND worker NOT LIKE :steady"), {"steady": f"%:{steady.pid}"},
        ).scalar_one()  # fmt: skip
    engine.dispose()
    received = server.mailbox.reminder_ids()
    duplicates = {mid: n for mid, n in received.items() if n > 1}
    missing = [r for r in rows if r.message_id not in received]
    assert kills >= 20
    assert len(rows) == expected
    assert server.mailbox.refused > 0 and outcomes.get("refused", 0) > 0
    assert by_victims > 0, "the killed scheduler never delivered: the kills tested nothing"
    assert not duplicates, f"sent twice: {duplicates}"
    assert not missing, f"never arrived: {missing[:5]} (attempt outcomes {outcomes})"
    assert set(received) == {f"<reminder-{r.id}@clinic.example.org>" for r in rows}
