"""Delivery isolation (issue 15, failure 1 and requirement 3): a reminder, escalation or
team digest that cannot be composed or sent fails alone, with its reason on the row and
in `delivery_attempt`, and is retried with the doubling back-off; every other one goes
out in the same run, and the run never raises.

The bad values (an MRN and a team name with a CR/LF, a team address ending in a line
break) are planted with SQL, as data imported before the input rules would be, and the
mail goes to a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import email
import logging
import re
from email.policy import default as default_policy

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import FakeClock, SmtpServer
from tests.security.support import (
    BAD_MRN,
    PROTOCOL,
    RawMailbox,
    at,
    course_ending,
    deliverer,
    failed_in_demo,
    plant_address,
    row_of,
)
from tests.web.web_support import sign_in
from tracker.reminders.jobs import ReminderJobs
from tracker.reminders.planner import plan
from tracker.services.teams import add_team

DAY = dt.date(2025, 3, 3)  # GMT: the 08:00 send hour in London is 08:00 UTC
BAD_TEAM = "ward\r\nBcc: leak@elsewhere.example"


def attempts_of(engine: Engine, reminder_id: int) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT kind, outcome, detail FROM delivery_attempt WHERE reminder_id = :r "
                "ORDER BY id"
            ),
            {"r": reminder_id},
        )
        return [(kind, outcome, detail) for kind, outcome, detail in found.all()]


def aware(value: dt.datetime | str | None) -> dt.datetime | None:
    """A stored timestamp in UTC (SQLite hands plain-SQL ones back as zone-less text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


def headers_of(raw: bytes) -> dict[str, list[str]]:
    """Every header of a received message, by lower-cased name."""
    message = email.message_from_bytes(raw, policy=default_policy)
    found: dict[str, list[str]] = {}
    for name, value in message.items():
        found.setdefault(name.lower(), []).append(str(value))
    return found


def ward7_with_a_bad_mrn_first(engine: Engine) -> None:
    """Three patients of ward7; the one with a CR/LF in its MRN is due first, so it is
    the first one claimed."""
    course_ending(engine, BAD_MRN, DAY - dt.timedelta(days=2), team="ward7")
    course_ending(engine, "A001", DAY - dt.timedelta(days=1), team="ward7")
    course_ending(engine, "A002", DAY, team="ward7")
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")


def planned_with_a_bad_mrn_first(engine: Engine) -> FakeClock:
    """ward7_with_a_bad_mrn_first, planned on DAY: the clock stands at 09:00 then."""
    ward7_with_a_bad_mrn_first(engine)
    clock = FakeClock(at(DAY))
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL, now=clock())
    return clock


# --- one bad reminder, the others delivered ----------------------------------------------


def test_reminder_of_an_mrn_with_a_line_break_fails_alone_and_the_others_go_out_in_the_same_run(
    engine: Engine, mail_server: SmtpServer
) -> None:
    clock = planned_with_a_bad_mrn_first(engine)

    report = deliverer(engine, mail_server, clock).deliver()  # does not raise

    assert (report.sent, report.waiting) == (2, 1)
    assert sorted(m.subject.split(" for ")[1][:4] for m in mail_server.mailbox.received) == [
        "A001",
        "A002",
    ]
    assert all("leak@" not in m.recipient for m in mail_server.mailbox.received)
    bad = row_of(engine, BAD_MRN)
    assert bad["status"] == "due" and bad["attempts"] == 1
    assert bad["claim_token"] is None and bad["claimed_by"] is None  # claim released
    assert "MRN" in bad["last_error"] and "carriage return" in bad["last_error"]
    assert "\r" not in bad["last_error"] and "\n" not in bad["last_error"]
    assert aware(bad["next_attempt_at"]) == clock() + dt.timedelta(seconds=60)
    assert attempts_of(engine, bad["id"]) == [("reminder", "failed", bad["last_error"])]
    assert any(BAD_MRN.encode("unicode_escape").decode() in p for p in report.problems)
    for mrn in ("A001", "A002"):
        assert row_of(engine, mrn)["status"] == "sent"


def test_failed_reminder_is_retried_after_its_back_off_which_doubles(
    engine: Engine, mail_server: SmtpServer
) -> None:
    clock = planned_with_a_bad_mrn_first(engine)
    deliverer(engine, mail_server, clock).deliver()
    bad_id = row_of(engine, BAD_MRN)["id"]

    clock.jump(seconds=30)  # within the first back-off: left alone
    assert deliverer(engine, mail_server, clock).deliver().waiting == 0
    assert row_of(engine, BAD_MRN)["attempts"] == 1

    clock.jump(seconds=31)  # past it: tried again, and the next wait is twice as long
    report = deliverer(engine, mail_server, clock).deliver()
    assert (report.sent, report.waiting) == (0, 1)
    bad = row_of(engine, BAD_MRN)
    assert bad["attempts"] == 2 and bad["status"] == "due"
    assert aware(bad["next_attempt_at"]) == clock() + dt.timedelta(seconds=120)
    assert [outcome for _, outcome, _ in attempts_of(engine, bad_id)] == ["failed", "failed"]
    assert len(mail_server.mailbox.received) == 2  # the good two, once each


def test_scheduled_delivery_job_with_a_bad_mrn_logs_no_error_and_sends_the_rest(
    engine: Engine, mail_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = planned_with_a_bad_mrn_first(engine)
    jobs = ReminderJobs(
        engine=engine, protocol=PROTOCOL, settings=mail_server.settings(), clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="tracker.reminders"):
        report = jobs.deliver()
    assert report.sent == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_escalation_of_a_bad_mrn_fails_alone_and_the_others_escalate(
    engine: Engine, mail_server: SmtpServer
) -> None:
    clock = planned_with_a_bad_mrn_first(engine)
    with engine.begin() as conn:  # the bad one was sent once (say, before it was broken)
        conn.execute(
            sa.text(
                "UPDATE reminder SET status = 'sent', sent_at = :t, message_id = '<old@x>', "
                "accepted_at = :t WHERE status = 'due'"
            ),
            {"t": clock()},
        )
    clock.jump(days=PROTOCOL.reminders.escalation_grace_days + 1)
    report = deliverer(engine, mail_server, clock).escalate()
    assert (report.escalated, report.waiting) == (2, 1)
    bad = row_of(engine, BAD_MRN)
    assert bad["escalated_at"] is None and "carriage return" in bad["last_error"]
    assert attempts_of(engine, bad["id"])[-1][:2] == ("escalation", "failed")
    assert bad["claim_token"] is None


def test_reminder_to_a_team_address_stored_with_a_line_break_fails_with_its_reason(
    engine: Engine, mail_server: SmtpServer
) -> None:
    course_ending(engine, "A001", DAY, team="ward7")
    course_ending(engine, "B001", DAY - dt.timedelta(days=1), team="ward9")
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    add_team(engine=engine, name="ward9", email="ward9@clinic.example.org")
    plant_address(engine, "ward9", "ward9@clinic.example.org\n")
    clock = FakeClock(at(DAY))
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL, now=clock())

    report = deliverer(engine, mail_server, clock).deliver()

    assert (report.sent, report.waiting) == (1, 1)
    assert [m.recipient for m in mail_server.mailbox.received] == ["ward7@clinic.example.org"]
    bad = row_of(engine, "B001")
    assert bad["status"] == "due" and bad["claim_token"] is None
    assert "ward9" in bad["last_error"] and "e-mail address" in bad["last_error"]
    assert "line break" in bad["last_error"]
    assert attempts_of(engine, bad["id"]) == [("reminder", "failed", bad["last_error"])]


def test_delivery_command_with_a_bad_mrn_exits_0_and_sends_the_rest(
    engine: Engine,
    mail_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tracker.cli import run

    ward7_with_a_bad_mrn_first(engine)
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL)
    for name, value in mail_server.env().items():
        monkeypatch.setenv(name, value)
    url = engine.url.render_as_string(hide_password=False)
    assert run(["--database-url", url, "reminders", "deliver"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "2 sent" in captured.out
    assert "carriage return" in captured.err


# --- team digests ---------------------------------------------------------------------------


def test_digest_of_a_team_named_with_a_line_break_carries_no_injected_header(
    engine: Engine, mail_server: SmtpServer
) -> None:
    course_ending(engine, "A001", DAY, team="ward7")
    course_ending(engine, "B001", DAY, team=BAD_TEAM)
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    plant_address(engine, BAD_TEAM, "ward9@clinic.example.org")
    clock = FakeClock(at(DAY))
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL, now=clock())

    assert deliverer(engine, mail_server, clock).digest() == 2  # does not raise

    assert isinstance(mail_server.mailbox, RawMailbox)
    by_recipient = {m.recipient: m for m in mail_server.mailbox.received}
    assert set(by_recipient) == {"ward7@clinic.example.org", "ward9@clinic.example.org"}
    [bad] = [raw for raw in mail_server.mailbox.raw if b"ward9@" in raw]
    headers = headers_of(bad)
    assert "bcc" not in headers  # the name did not become a header
    assert headers["to"] == ["ward9@clinic.example.org"]
    [subject] = headers["subject"]
    assert "\r" not in subject and "\n" not in subject and r"ward\r\nBcc" in subject
    [message_id] = headers["message-id"]
    assert re.fullmatch(r"<digest-[!-;=?-~]+@clinic\.example\.org>", message_id)
    assert "B001" in by_recipient["ward9@clinic.example.org"].body
    # the team's own reminder goes out too: its name is only in the body, shown safely
    report = deliverer(engine, mail_server, clock).deliver()
    assert report.sent == 2 and report.waiting == 0


def test_digest_to_a_bad_stored_address_fails_alone_and_is_tried_again_next_run(
    engine: Engine, mail_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    course_ending(engine, "A001", DAY, team="ward7")
    course_ending(engine, "B001", DAY, team="ward9")
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    add_team(engine=engine, name="ward9", email="ward9@clinic.example.org")
    plant_address(engine, "ward9", "ward9@clinic.example.org\n")
    clock = FakeClock(at(DAY))
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL, now=clock())
    post = deliverer(engine, mail_server, clock)

    with caplog.at_level(logging.WARNING, logger="tracker.reminders"):
        assert post.digest() == 1
    assert [m.recipient for m in mail_server.mailbox.received] == ["ward7@clinic.example.org"]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "ward9" in said and "line break" in said
    assert any("ward9" in p for p in post.digest_problems)

    add_team(engine=engine, name="ward9", email="ward9@clinic.example.org")  # fixed
    clock.jump(minutes=1)
    assert post.digest() == 1  # ward9's digest of the day, now; ward7's is not repeated
    assert [m.recipient for m in mail_server.mailbox.received] == [
        "ward7@clinic.example.org",
        "ward9@clinic.example.org",
    ]


# --- on screen: the worklist and the admin page ---------------------------------------------


def test_worklist_says_why_the_e_mail_of_a_reminder_was_not_sent(
    demo_engine: Engine, client: TestClient, mail_server: SmtpServer
) -> None:
    failed_in_demo(demo_engine, mail_server)
    bad_id = row_of(demo_engine, BAD_MRN)["id"]
    good_id = row_of(demo_engine, "A001")["id"]
    sign_in(client, "clinician")

    page = client.get("/worklist", params={"team": "ward7"})

    assert page.status_code == 200
    rows = dict(re.findall(r'<tr id="reminder-(\d+)"(.*?)</tr>', page.text, flags=re.S))
    assert "E-mail not sent: " in rows[str(bad_id)]
    assert "carriage return" in rows[str(bad_id)]
    assert "E-mail not sent" not in rows[str(good_id)]


def test_admin_page_lists_failed_deliveries_with_patient_reminder_attempts_error_and_next_try(
    demo_engine: Engine, client: TestClient, mail_server: SmtpServer
) -> None:
    failed_in_demo(demo_engine, mail_server)
    bad = row_of(demo_engine, BAD_MRN)
    sign_in(client, "admin")

    page = client.get("/admin/deliveries")

    assert page.status_code == 200
    assert "Failed deliveries" in page.text
    [row] = re.findall(rf'<tr id="failed-{bad["id"]}">(.*?)</tr>', page.text, flags=re.S)
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    patient, what, tries, error, next_try = cells[:5]
    assert "BAD" in patient
    assert "course review" in what
    assert tries == "1"
    assert "carriage return" in error
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", next_try)
    assert f'id="failed-{row_of(demo_engine, "A001")["id"]}"' not in page.text  # it was sent


def test_failed_deliveries_page_is_for_admins_only(demo_engine: Engine, client: TestClient) -> None:
    sign_in(client, "clinician")
    assert client.get("/admin/deliveries").status_code == 403
