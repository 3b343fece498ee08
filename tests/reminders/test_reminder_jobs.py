"""The reminder jobs started inside another process (the web app's):
`start_background_scheduler(engine=..., settings=...)`, then `.shutdown()`."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    FakeClock,
    JobErrors,
    SmtpServer,
    add_patient,
    give_team_address,
    lite,
    reminders,
    smtp,
)
from tracker.reminders.jobs import start_background_scheduler, summarise_problems

DAY = date(2025, 3, 3)  # GMT: the 08:00 send hour in London is 08:00 UTC


def patient_with_course_ending(engine: Engine) -> None:
    add_patient(
        engine,
        "A001",
        courses=[{"agent": "etidronate", "intent": "prophylaxis",
                  "start": (DAY - timedelta(days=30)).isoformat(), "end": DAY.isoformat()}],
    )  # fmt: skip
    give_team_address(engine)


def run_catch_up(engine: Engine, settings: Any) -> BackgroundScheduler:
    """Start the scheduler and wait for its catch-up run (plan, deliver, escalate).
    The jobs' clock holds them until the listener is on, so no run is missed.

    A job that fails logs the error and lives on (`jobs._guarded`), so APScheduler's
    event never carries the exception: the errors logged during the run must be none."""
    fake, gate, done = (
        FakeClock(datetime(2025, 3, 3, 9, tzinfo=UTC)),
        threading.Event(),
        threading.Event(),
    )

    def clock() -> datetime:
        gate.wait(10)
        return fake()

    def finished(event: Any) -> None:
        if event.job_id == "reminders.catch_up":
            done.set()

    with JobErrors() as logged:
        scheduler = start_background_scheduler(engine=engine, settings=settings, clock=clock)
        scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        gate.set()
        try:
            assert done.wait(30), "the catch-up run did not finish"
            assert logged.errors == []
        except BaseException:
            scheduler.shutdown(wait=True)
            raise
    return scheduler


def test_background_scheduler_runs_the_jobs_in_this_process_until_shut_down(
    lite: Engine, smtp: SmtpServer
) -> None:
    patient_with_course_ending(lite)
    scheduler = run_catch_up(lite, smtp.settings())
    try:
        assert isinstance(scheduler, BackgroundScheduler) and scheduler.running
        names = {job.id for job in scheduler.get_jobs()}
        reminder_jobs = {f"reminders.{n}" for n in ("plan", "deliver", "escalate", "digest")}
        assert names == reminder_jobs | {"assessments.refresh"}  # and the board's daily refresh
    finally:
        scheduler.shutdown(wait=True)
    assert not scheduler.running
    [row] = reminders(lite)
    assert (row["rule"], row["status"]) == ("course_review", "sent")
    assert [m.message_id for m in smtp.mailbox.received] == [row["message_id"]]


def test_background_scheduler_plans_with_the_protocol_file_of_the_settings(
    lite: Engine, smtp: SmtpServer, tmp_path: Path
) -> None:
    patient_with_course_ending(lite)
    clinic = tmp_path / "clinic.toml"
    clinic.write_text("[reminders]\nsend_hour = 23\n")  # nothing goes out at 09:00
    scheduler = run_catch_up(lite, smtp.settings(protocol_file=clinic))
    scheduler.shutdown(wait=True)
    [row] = reminders(lite)
    assert (row["rule"], row["status"]) == ("course_review", "due")
    assert smtp.mailbox.received == []


def test_the_job_log_says_each_problem_once_with_how_many_reminders_it_holds_back() -> None:
    no_smtp = "no SMTP server configured: set HO_TRACKER_SMTP_HOST"
    problems = [f"reminder {i} (H-{i}): {no_smtp}" for i in range(1, 6)]
    problems.append("reminder 9 (H-9): team ward_3 has no delivery address")
    problems.append("reminder 12: refused by the server")
    lines = summarise_problems(problems)
    assert lines == [
        f"5 reminders (reminder 1 (H-1), reminder 2 (H-2), reminder 3 (H-3), ...): {no_smtp}",
        "reminder 9 (H-9): team ward_3 has no delivery address",
        "reminder 12: refused by the server",
    ]
