"""Bad input through the command line: one clear sentence naming the key, exit 2, no
traceback, nothing written; and an SMTP failure never drops a reminder."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reminders.reminder_support import add_patient, free_port
from tracker.cli import run
from tracker.services.teams import add_team
from tracker.store import database

DAY = date(2025, 3, 3)


@pytest.fixture
def db(tmp_path: Path) -> tuple[list[str], sa.Engine]:
    """A migrated SQLite file with two patients whose course reviews are due on DAY:
    one in team ward7 (with an address), one without a team."""
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    engine = database.make_engine(url)
    database.upgrade(engine)
    course = {"agent": "etidronate", "intent": "prophylaxis",
              "start": (DAY - timedelta(days=30)).isoformat(), "end": DAY.isoformat()}  # fmt: skip
    add_patient(engine, "A001", team="ward7", courses=[course])
    add_patient(engine, "NOTEAM", team=None, courses=[course])
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    yield ["--database-url", url], engine
    engine.dispose()


def stored(engine: sa.Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        (
            "plan",
            "[reminders.monitoring_radiograph]\nafter_days = -42",
            "reminders.monitoring_radiograph.after_days must be a positive whole number",
        ),
        (
            "plan",
            "[reminders.hip_ultrasound_screen]\nevery_days = -21",
            "reminders.hip_ultrasound_screen.every_days must be a positive whole number of days",
        ),
        (
            "plan",
            "[reminders.dexa_scan]\nafter_days = 30",
            "[reminders.dexa_scan] is not a reminder rule",
        ),
        (
            "plan",
            '[reminders]\ntime_zone = "Europe/Atlantis"',
            "reminders.time_zone must be an IANA time zone",
        ),
        (
            "deliver",
            '[reminders]\ntime_zone = "Europe/Atlantis"',
            "reminders.time_zone must be an IANA time zone",
        ),
        (
            "scheduler",
            "[reminders.course_review]\nafter_days = 3",
            "unknown key reminders.course_review.after_days",
        ),
    ],
)
def test_bad_protocol_is_one_sentence_naming_the_key_and_nothing_is_planned(
    db: tuple[list[str], sa.Engine],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    text: str,
    message: str,
) -> None:
    base, engine = db
    protocol = tmp_path / "clinic.toml"
    protocol.write_text(text + "\n")
    args = ["reminders", command] if command != "scheduler" else ["scheduler"]
    assert run([*base, *args, "--protocol", str(protocol)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1  # one sentence
    assert stored(engine, "SELECT id FROM reminder") == []


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "HO_TRACKER_SMTP_TLS",
            "tls1.3",
            "HO_TRACKER_SMTP_TLS: Input should be 'starttls', 'ssl' or 'none'",
        ),
        ("HO_TRACKER_SMTP_PORT", "smtp", "HO_TRACKER_SMTP_PORT: Input should be a valid integer"),
    ],
)
def test_bad_smtp_setting_names_the_variable_without_a_traceback(
    db: tuple[list[str], sa.Engine],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    base, engine = db
    assert run([*base, "reminders", "plan", "--as-of", DAY.isoformat()]) == 0
    monkeypatch.setenv("HO_TRACKER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv(variable, value)
    capsys.readouterr()
    assert run([*base, "reminders", "deliver"]) == 2
    err = capsys.readouterr().err
    assert message in err and repr(value) in err and "Traceback" not in err
    assert stored(engine, "SELECT count(*) FROM delivery_attempt") == [(0,)]


def test_unreachable_server_and_patient_without_team_keep_every_reminder_with_the_attempt(
    db: tuple[list[str], sa.Engine],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, engine = db
    assert run([*base, "reminders", "plan", "--as-of", DAY.isoformat()]) == 0
    before = stored(engine, "SELECT id, rule, status FROM reminder ORDER BY id")
    assert [status for *_, status in before] == ["due", "due"]
    closed_port = free_port()
    monkeypatch.setenv("HO_TRACKER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("HO_TRACKER_SMTP_PORT", str(closed_port))
    monkeypatch.setenv("HO_TRACKER_SMTP_TLS", "none")
    capsys.readouterr()
    assert run([*base, "reminders", "deliver"]) == 0  # a failed send is news, not an error
    captured = capsys.readouterr()
    assert f"(A001): cannot reach the SMTP server 127.0.0.1:{closed_port}" in captured.err
    assert "(NOTEAM): patient NOTEAM has no team" in captured.err
    assert "ho-tracker patient set-team NOTEAM TEAM" in captured.err
    assert "Traceback" not in captured.err and "0 sent" in captured.out

    # nothing dropped: both rows still due, each attempt on record with its reason
    after = stored(engine, "SELECT id, rule, status FROM reminder ORDER BY id")
    assert after == before
    rows = stored(
        engine,
        "SELECT p.mrn, r.attempts, r.last_error, a.outcome, a.detail FROM reminder r "
        "JOIN patient p ON p.id = r.patient_id "
        "JOIN delivery_attempt a ON a.reminder_id = r.id ORDER BY p.mrn",
    )
    assert [(mrn, attempts, outcome) for mrn, attempts, _, outcome, _ in rows] == [
        ("A001", 1, "failed"),
        ("NOTEAM", 1, "no_address"),
    ]
    for _, _, last_error, _, detail in rows:
        assert last_error == detail and detail
    assert "cannot reach the SMTP server" in str(rows[0][4])
