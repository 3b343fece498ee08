"""`ho-tracker reminders plan/list/ack/deliver`, `teams add/list`, `patient set-team`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reminders.reminder_support import SmtpServer, smtp  # noqa: F401  (fixture)
from tracker.cli import run

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    base = ["--database-url", f"sqlite:///{tmp_path / 'tracker.db'}"]
    assert run([*base, "import", str(DEMO)]) == 0
    return base


def test_plan_list_and_acknowledge_from_the_command_line(
    db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*db, "reminders", "plan", "--as-of", "2026-11-01", "--dry-run"]) == 0
    assert "would be created" in capsys.readouterr().out
    assert run([*db, "reminders", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the dry run wrote nothing
    assert run([*db, "reminders", "plan", "--as-of", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "reminders were created" in out
    assert run([*db, "reminders", "plan", "--as-of", "2026-11-01"]) == 0
    assert "0 reminders were created" in capsys.readouterr().out

    # the demo's history is years old on this day: its past reminders are lapsed, shown
    # in the patient's history and not on the worklist, and cannot be acknowledged
    assert run([*db, "reminders", "list", "--mrn", "H-READY", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert items and {"rule", "site", "side", "due", "status"} <= set(items[0])
    review = next(i for i in items if i["rule"] == "readiness_review")
    assert (review["site"], review["side"], review["status"]) == ("hip", "left", "lapsed")
    assert len(review["due"]) == 10 and review["due"][4] == "-"
    assert run([*db, "reminders", "list", "--json"]) == 0
    worklist = json.loads(capsys.readouterr().out)
    assert worklist and {i["status"] for i in worklist} == {"due"}
    assert review["id"] not in {i["id"] for i in worklist}
    assert run([*db, "reminders", "ack", str(review["id"])]) == 2
    assert "is lapsed" in capsys.readouterr().err

    radiograph = next(i for i in worklist if i["mrn"] == "H-MINERAL")
    assert run([*db, "reminders", "ack", str(radiograph["id"])]) == 0
    assert "acknowledged (was due)" in capsys.readouterr().out
    assert run([*db, "reminders", "list", "--status", "acknowledged", "--json"]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [radiograph["id"]]
    assert run([*db, "reminders", "ack", str(radiograph["id"])]) == 2
    assert "already acknowledged" in capsys.readouterr().err
    assert run([*db, "reminders", "ack", "999999"]) == 2
    assert "There is no reminder 999999" in capsys.readouterr().err
    assert run([*db, "reminders", "list", "--status", "late"]) == 2
    assert "--status 'late' is not a reminder status" in capsys.readouterr().err
    assert run([*db, "reminders", "list"]) == 0
    assert "reminders" in capsys.readouterr().out


def test_teams_and_set_team_from_the_command_line(
    db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*db, "teams", "add", "spinal_unit", "--email", "spinal@clinic.example.org"]) == 0
    assert "Team spinal_unit updated" in capsys.readouterr().out
    assert run([*db, "teams", "add", "ward7", "--email", "not-an-address"]) == 2
    assert "--email 'not-an-address' is not an e-mail address" in capsys.readouterr().err
    assert run([*db, "teams", "add", "ward7", "--email", "ward7@clinic.example.org"]) == 0
    assert run([*db, "patient", "set-team", "H-READY", "ward7"]) == 0
    assert "now in team ward7" in capsys.readouterr().out
    assert run([*db, "patient", "set-team", "H-READY", "ward99"]) == 2
    assert "ho-tracker teams add ward99 --email ADDRESS" in capsys.readouterr().err
    assert run([*db, "teams", "list"]) == 0
    out = capsys.readouterr().out
    assert "ward7@clinic.example.org" in out and "(none: reminders wait)" in out


def test_deliver_without_a_reachable_server_says_why_and_keeps_the_reminders(
    db: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HO_TRACKER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("HO_TRACKER_SMTP_PORT", "1")  # nothing listens there
    monkeypatch.setenv("HO_TRACKER_SMTP_TLS", "none")
    assert run([*db, "teams", "add", "spinal_unit", "--email", "spinal@clinic.example.org"]) == 0
    assert run([*db, "reminders", "plan"]) == 0
    capsys.readouterr()
    assert run([*db, "reminders", "deliver"]) == 0
    captured = capsys.readouterr()
    assert "cannot reach the SMTP server 127.0.0.1:1" in captured.err
    assert "has no delivery address" in captured.err  # the other teams
    assert "0 sent" in captured.out
    assert run([*db, "reminders", "list", "--status", "sent", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_plain_worklist_says_rules_sites_and_reasons_in_words(
    db: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracker import labels

    assert run([*db, "reminders", "plan", "--as-of", "2026-11-01"]) == 0
    capsys.readouterr()
    assert run([*db, "reminders", "list", "--mrn", "H-NONE", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows, "the demo plans reminders for H-NONE"
    from tracker.cli import console

    monkeypatch.setattr(console.out, "width", 400)  # one line per row: each cell reads whole
    assert run([*db, "reminders", "list", "--mrn", "H-NONE"]) == 0
    table = capsys.readouterr().out
    for row in rows:
        assert labels.rule(row["rule"]) in table
        assert row["rule"] not in table or row["rule"] == labels.rule(row["rule"])
        assert labels.words(row["status"]) in table
        if row["detail"]:
            assert row["detail"] in table
