"""E-mail addresses and headers (issue 15, failure 5 and requirement 7): team addresses
and HO_TRACKER_SMTP_FROM are checked by the maintained `email-validator` library
(through pydantic), not a regular expression, wherever they are set; team names by the
identifier rule; and a message header never carries a raw CR/LF, so an address stored
badly before these rules is a delivery failure with its reason, never a broken message.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import FakeClock, SmtpServer, reminders
from tests.security.support import PROTOCOL, course_ending, deliverer, plant_address
from tracker.config import Settings, get_settings
from tracker.errors import TrackerError, ValidationFailed
from tracker.reminders.mail import Unsendable, compose
from tracker.reminders.planner import plan
from tracker.services.teams import add_team, list_teams

DAY = dt.date(2025, 3, 3)
NOW = dt.datetime(2025, 3, 3, 9, tzinfo=dt.UTC)


def stored_teams(engine: Engine) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT name, email, escalation_email FROM team ORDER BY name")
        )
        return [(name, email, escalation) for name, email, escalation in found.all()]


# --- where a team address is set --------------------------------------------------------


def test_team_address_ending_in_a_newline_is_refused_naming_the_field(engine: Engine) -> None:
    with pytest.raises(TrackerError) as refused:
        add_team(engine=engine, name="ward7", email="ward7@clinic.example.org\n")
    said = str(refused.value)
    assert "--email" in said and "line break" in said
    assert "\n" not in said  # the bad value is shown, not replayed
    assert stored_teams(engine) == []  # nothing written


def test_escalation_address_with_a_carriage_return_is_refused_naming_its_field(
    engine: Engine,
) -> None:
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    with pytest.raises(TrackerError, match="--escalation-email .*carriage return"):
        add_team(
            engine=engine,
            name="ward7",
            email="ward7@clinic.example.org",
            escalation_email="lead@clinic.example.org\rBcc: x@elsewhere.example",
        )
    assert stored_teams(engine) == [("ward7", "ward7@clinic.example.org", None)]


@pytest.mark.parametrize(
    "address",
    [
        "ward7..night@clinic.example.org",  # two dots in a row
        "ward7@clinic..example.org",
        "ward7@-clinic.example.org",  # a domain label starting with a hyphen
        "ward7@clinic.example.org.",  # a trailing dot
        ".ward7@clinic.example.org",
    ],
)
def test_addresses_the_old_pattern_let_through_are_refused_by_the_library(
    engine: Engine, address: str
) -> None:
    with pytest.raises(TrackerError, match="--email .* is not an e-mail address"):
        add_team(engine=engine, name="ward7", email=address)
    assert stored_teams(engine) == []


def test_a_valid_address_is_stored_as_the_library_normalises_it(engine: Engine) -> None:
    add_team(engine=engine, name="ward7", email="Ward7@Clinic.Example.ORG")
    [summary] = list_teams(engine=engine)
    assert summary.email == "Ward7@clinic.example.org"  # the domain in lower case


def test_address_with_a_display_name_is_refused_the_address_alone_is_wanted(
    engine: Engine,
) -> None:
    with pytest.raises(TrackerError, match="--email .* the address alone"):
        add_team(engine=engine, name="ward7", email="Ward 7 <ward7@clinic.example.org>")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ward\r\n7", "contains a carriage return, which is not allowed"),
        ("ward\x007", "contains a NUL, which is not allowed"),
        (" ward7", "starts or ends with a space"),
        ("w" * 101, "is longer than 100 characters"),
    ],
)
def test_team_name_follows_the_identifier_rule(engine: Engine, name: str, reason: str) -> None:
    with pytest.raises(TrackerError, match=f"Team name .*{reason}"):
        add_team(engine=engine, name=name, email="ward7@clinic.example.org")
    assert stored_teams(engine) == []


def test_teams_add_command_refuses_an_address_with_a_newline_in_one_sentence(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracker.cli import run

    url = engine.url.render_as_string(hide_password=False)
    args = ["--database-url", url, "teams", "add", "ward7"]
    assert run([*args, "--email", "ward7@clinic.example.org\n"]) == 2
    err = capsys.readouterr().err
    assert "--email" in err and "line break" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert stored_teams(engine) == []


# --- the sender in the settings ------------------------------------------------------------


def test_smtp_from_with_a_newline_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HO_TRACKER_SMTP_FROM", "ho-tracker@clinic.example.org\n")
    with pytest.raises(ValidationFailed) as refused:
        get_settings()
    [problem] = refused.value.problems
    assert problem.field == "HO_TRACKER_SMTP_FROM" and "line break" in problem.reason


def test_smtp_from_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ValueError, match="is not an e-mail address"):
        Settings(smtp_from="ho-tracker@@clinic.example.org")
    assert Settings(smtp_from="ho-tracker@clinic.example.org").smtp_from == (
        "ho-tracker@clinic.example.org"
    )


# --- at compose time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipient", "ward7@clinic.example.org\n"),
        ("sender", "ho-tracker@clinic.example.org\r\n"),
        ("subject", "course review for A\r\nBcc: x@elsewhere.example"),
        ("message_id", "<reminder-1@clinic.example.org>\n"),
    ],
)
def test_compose_refuses_a_header_value_with_a_line_break_naming_the_header(
    field: str, value: str
) -> None:
    values = {
        "sender": "ho-tracker@clinic.example.org",
        "recipient": "ward7@clinic.example.org",
        "subject": "course review for A001",
        "message_id": "<reminder-1@clinic.example.org>",
    }
    values[field] = value
    with pytest.raises(Unsendable) as refused:
        compose(body="text", when=NOW, **values)
    header = {"recipient": "To", "sender": "From", "subject": "Subject"}.get(field, "Message-ID")
    assert header in str(refused.value)


def test_address_stored_badly_before_the_rules_is_a_delivery_failure_not_a_broken_message(
    engine: Engine, mail_server: SmtpServer
) -> None:
    course_ending(engine, "A001", DAY, team="ward7")
    plant_address(engine, "ward7", "ward7@clinic.example.org\n")  # the old pattern let it by
    clock = FakeClock(NOW)
    plan(engine=engine, as_of=DAY, protocol=PROTOCOL, now=clock())
    report = deliverer(engine, mail_server, clock).deliver()
    assert (report.sent, report.waiting) == (0, 1)
    assert mail_server.mailbox.received == []  # no message with a blank line after To:
    [row] = reminders(engine)
    assert row["status"] == "due" and row["claim_token"] is None
    assert "ward7" in row["last_error"] and "line break" in row["last_error"]
    assert "ho-tracker teams add ward7 --email ADDRESS" in row["last_error"]
