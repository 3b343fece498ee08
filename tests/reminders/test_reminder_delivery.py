"""Delivery over a real SMTP server (aiosmtpd on 127.0.0.1): once, on time or marked
late, re-checked before sending, retried with back-off, escalated once."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    FakeClock,
    JobErrors,
    Mailbox,
    SmtpServer,
    add_finding,
    add_patient,
    any_engine,
    free_port,
    give_team_address,
    lite,
    reminders,
    smtp,
    start_smtp,
)
from tracker.protocol import Protocol
from tracker.reminders.delivery import Deliverer, send_time
from tracker.reminders.jobs import ReminderJobs, start_background
from tracker.reminders.mail import Outcome, SmtpChannel, compose
from tracker.reminders.planner import plan
from tracker.services.worklist import acknowledge

PROTOCOL = Protocol()
RULES = PROTOCOL.reminders
DAY0 = date(2025, 3, 3)  # GMT: 08:00 in London is 08:00 UTC


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def course_ending(engine: Engine, mrn: str, end: date, team: str | None = "ward7") -> None:
    add_patient(
        engine,
        mrn,
        team=team,
        courses=[{"agent": "etidronate", "intent": "prophylaxis",
                  "start": (end - timedelta(days=30)).isoformat(), "end": end.isoformat()}],
    )  # fmt: skip


def deliverer(engine: Engine, server: SmtpServer, clock: FakeClock, **settings: Any) -> Deliverer:
    return Deliverer(
        engine=engine, protocol=PROTOCOL, settings=server.settings(**settings), clock=clock,
        worker="test",
    )  # fmt: skip


def attempts(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT kind, outcome FROM delivery_attempt ORDER BY id")).all()]  # fmt: skip


def test_due_reminder_reaches_its_team_once_with_a_stable_message_id(
    any_engine: Engine, smtp: SmtpServer
) -> None:
    course_ending(any_engine, "A001", DAY0)
    give_team_address(any_engine)
    clock = FakeClock(at(DAY0))
    plan(engine=any_engine, as_of=DAY0, protocol=PROTOCOL, now=clock())
    report = deliverer(any_engine, smtp, clock).deliver()
    assert (report.sent, report.late) == (1, 0)
    [row] = [r for r in reminders(any_engine) if r["rule"] == "course_review"]
    [mail] = smtp.mailbox.received
    assert mail.message_id == f"<reminder-{row['id']}@clinic.example.org>" == row["message_id"]
    assert mail.recipient == "ward7@clinic.example.org"
    assert "course review for A001" in mail.subject and "A001" in mail.body
    assert row["status"] == "sent" and row["accepted_at"] is not None and not row["late"]
    assert deliverer(any_engine, smtp, clock).deliver().sent == 0
    clock.jump(hours=5)
    assert deliverer(any_engine, smtp, clock).deliver().sent == 0
    assert len(smtp.mailbox.received) == 1
    assert attempts(any_engine) == [("reminder", "accepted")]


def test_reminders_go_out_at_the_clinics_send_hour_in_its_time_zone(
    lite: Engine, smtp: SmtpServer
) -> None:
    summer = date(2025, 7, 1)  # BST: 08:00 in London is 07:00 UTC
    assert send_time(summer, RULES) == datetime(2025, 7, 1, 7, tzinfo=UTC)
    course_ending(lite, "A001", summer)
    give_team_address(lite)
    clock = FakeClock(datetime(2025, 7, 1, 6, 59, tzinfo=UTC))
    plan(engine=lite, as_of=summer, protocol=PROTOCOL, now=clock())
    assert deliverer(lite, smtp, clock).deliver().sent == 0
    clock.jump(minutes=1)
    assert deliverer(lite, smtp, clock).deliver().sent == 1


def test_refused_message_stays_due_and_is_retried_after_back_off(lite: Engine) -> None:
    server = start_smtp(Mailbox(refuse_rate=1.0))
    try:
        course_ending(lite, "A001", DAY0)
        give_team_address(lite)
        clock = FakeClock(at(DAY0))
        plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
        report = deliverer(lite, server, clock).deliver()
        assert (report.sent, report.waiting) == (0, 1)
        [row] = [r for r in reminders(lite) if r["rule"] == "course_review"]
        assert row["status"] == "due" and row["attempts"] == 1
        assert "refused: 45" in row["last_error"]
        assert deliverer(lite, server, clock).deliver().waiting == 0  # backing off
        server.mailbox.refuse_rate = 0.0
        clock.jump(seconds=61)
        assert deliverer(lite, server, clock).deliver().sent == 1
        assert len(server.mailbox.received) == 1
        assert attempts(lite) == [("reminder", "refused"), ("reminder", "accepted")]
    finally:
        server.controller.stop()


def test_unreachable_smtp_server_is_named_and_the_reminder_waits(
    lite: Engine, smtp: SmtpServer
) -> None:
    course_ending(lite, "A001", DAY0)
    give_team_address(lite)
    clock = FakeClock(at(DAY0))
    plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
    closed_port = free_port()
    report = deliverer(lite, smtp, clock, smtp_port=closed_port).deliver()
    assert report.waiting == 1 and report.sent == 0
    assert f"cannot reach the SMTP server 127.0.0.1:{closed_port}" in report.problems[0]
    [row] = [r for r in reminders(lite) if r["rule"] == "course_review"]
    assert row["status"] == "due" and "cannot reach" in row["last_error"]
    clock.jump(minutes=2)
    assert deliverer(lite, smtp, clock).deliver().sent == 1


def test_patient_without_a_team_or_team_without_address_gets_a_message_not_a_crash(
    lite: Engine, smtp: SmtpServer
) -> None:
    course_ending(lite, "NOTEAM", DAY0, team=None)
    course_ending(lite, "NOADDR", DAY0, team="ward9")
    clock = FakeClock(at(DAY0))
    plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
    report = deliverer(lite, smtp, clock).deliver()
    assert report.sent == 0 and report.waiting == 2
    problems = " ".join(report.problems)
    assert "patient NOTEAM has no team" in problems
    assert "ho-tracker patient set-team NOTEAM TEAM" in problems
    assert "team ward9 has no delivery address" in problems
    assert "ho-tracker teams add ward9 --email ADDRESS" in problems
    assert {r["status"] for r in reminders(lite)} == {"due"}
    assert smtp.mailbox.received == []


def test_without_an_smtp_server_the_problem_named_is_the_server_not_the_team(
    lite: Engine,
) -> None:
    from tracker.config import Settings

    course_ending(lite, "NOADDR", DAY0, team="ward9")
    clock = FakeClock(at(DAY0))
    plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
    unconfigured = Settings(database_url=str(lite.url), smtp_host=None)
    report = Deliverer(
        engine=lite, protocol=PROTOCOL, settings=unconfigured, clock=clock, worker="test"
    ).deliver()
    assert report.sent == 0 and report.waiting == 1
    (problem,) = report.problems
    assert "no SMTP server configured, so reminders stay on the worklist" in problem
    assert "ward9" not in problem
    assert {r["status"] for r in reminders(lite)} == {"due"}


def test_reminder_satisfied_or_no_longer_applying_before_sending_is_closed_not_sent(
    lite: Engine, smtp: SmtpServer
) -> None:
    injured = DAY0 - timedelta(days=21)
    add_patient(
        lite, "SCREENED", injuries=[{"kind": "spinal_cord_injury", "d": injured.isoformat()}]
    )
    add_patient(
        lite, "HOFOUND", injuries=[{"kind": "spinal_cord_injury", "d": injured.isoformat()}]
    )
    give_team_address(lite)
    clock = FakeClock(at(DAY0, 6))
    plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
    with lite.begin() as conn:
        ids = dict(conn.execute(sa.text("SELECT mrn, id FROM patient")).all())
        add_finding(
            conn, ids["SCREENED"], date=DAY0.isoformat(), modality="ultrasound", ho="absent"
        )
        add_finding(
            conn,
            ids["HOFOUND"],
            date=DAY0.isoformat(),
            modality="radiograph",
            site="knee",
            ho="present",
        )
    clock.jump(hours=3)
    report = deliverer(lite, smtp, clock).deliver()
    screens = {
        (r["patient_id"], r["due"]): r
        for r in reminders(lite)
        if r["rule"] == "hip_ultrasound_screen"
    }
    screened = screens[(ids["SCREENED"], DAY0)]
    found = screens[(ids["HOFOUND"], DAY0)]
    assert screened["status"] == "satisfied"
    assert found["status"] == "cancelled" and "HO found on 2025-03-03" in found["cancel_reason"]
    assert report.closed >= 2
    assert not any("screen" in m.subject for m in smtp.mailbox.received)


def test_sent_reminder_still_open_after_the_grace_period_is_escalated_once(
    lite: Engine, smtp: SmtpServer
) -> None:
    course_ending(lite, "A001", DAY0)
    course_ending(lite, "A002", DAY0)
    give_team_address(lite)
    clock = FakeClock(at(DAY0))
    plan(engine=lite, as_of=DAY0, protocol=PROTOCOL, now=clock())
    assert deliverer(lite, smtp, clock).deliver().sent == 2
    acknowledged = next(r["id"] for r in reminders(lite) if r["rule"] == "course_review")
    acknowledge(engine=lite, reminder_id=acknowledged, by="nurse")
    clock.jump(days=13)
    assert deliverer(lite, smtp, clock).escalate().escalated == 0
    clock.jump(days=1)
    assert deliverer(lite, smtp, clock).escalate().escalated == 1
    clock.jump(days=3)
    assert deliverer(lite, smtp, clock).escalate().escalated == 0
    escalations = [m for m in smtp.mailbox.received if "escalation" in m.message_id]
    assert len(escalations) == 1 and escalations[0].subject.startswith("ESCALATION")
    assert f"<reminder-{acknowledged}-escalation@" not in escalations[0].message_id


def test_unfinished_hand_over_leaves_nothing_at_the_server(smtp: SmtpServer) -> None:
    """The commit before the final dot may refuse (claim lost): the server must then
    throw the unfinished message away, which is what makes a crash there harmless."""
    channel = SmtpChannel(smtp.settings())
    message = compose(
        sender="ho-tracker@clinic.example.org", recipient="ward7@clinic.example.org",
        subject="x", body=".leading dot\n", message_id="<reminder-1@clinic.example.org>",
        when=datetime.now(UTC),
    )  # fmt: skip
    result = channel.send(message, "ward7@clinic.example.org", lambda write_dot: False)
    assert result.outcome == Outcome.lost_claim and not result.handed_over

    def hand_over(write_dot: Any) -> bool:
        write_dot()
        return True

    result = channel.send(message, "ward7@clinic.example.org", hand_over)
    assert result.outcome == Outcome.accepted
    [mail] = smtp.mailbox.received
    assert mail.body.startswith(".leading dot")


def test_after_ten_days_of_downtime_every_missed_reminder_arrives_once_marked_late(
    lite: Engine, smtp: SmtpServer
) -> None:
    for offset in range(0, 11):
        course_ending(lite, f"D{offset:02d}", DAY0 + timedelta(days=offset))
    give_team_address(lite)
    clock = FakeClock(at(DAY0))
    jobs = ReminderJobs(engine=lite, protocol=PROTOCOL, settings=smtp.settings(), clock=clock)
    first = jobs.catch_up()  # day 0: the scheduler runs, then the machine goes down
    assert (first.sent, first.late) == (1, 0)

    clock.jump(days=10, hours=1)  # back up ten days later; no sleeping, the clock jumps
    done = threading.Event()

    def finished(event: Any) -> None:
        if event.job_id == "reminders.catch_up":
            done.set()

    # a failing job logs its error and carries on (jobs._guarded): APScheduler's event
    # never holds an exception, so the run's logged errors are what must stay empty
    with JobErrors() as logged:
        scheduler = start_background(jobs)
        scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        try:
            assert done.wait(30), "the catch-up run did not finish"
        finally:
            scheduler.shutdown(wait=True)
    assert logged.errors == []

    reviews = {r["message_id"]: r for r in reminders(lite) if r["rule"] == "course_review"}
    counts = smtp.mailbox.reminder_ids()
    assert set(counts) == set(reviews) and len(counts) == 11
    assert set(counts.values()) == {1}
    late = {r["due"]: bool(r["late"]) for r in reviews.values()}
    assert late == {DAY0 + timedelta(days=d): d > 0 for d in range(11)}
    assert jobs.deliver().sent == 0
    assert set(smtp.mailbox.reminder_ids().values()) == {1}
