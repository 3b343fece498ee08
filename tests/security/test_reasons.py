"""Reasons (issue 15, one rule per value): why a record is voided, why a treatment course
is stopped, and why reminders are acknowledged are checked by the services with
`tracker.values.text_problem`, so the CLI, the API and the web forms refuse the same
reason with the same words, naming the field `reason`, and write nothing.

A void or stop reason is free text like a note (the forms' textarea, the API's VoidIn):
line breaks may stand in it, no other control character, at most NOTE_MAX characters.
An acknowledgement reason is one line (the worklist's input): no control character at
all, at most 300 characters (reminder.ack_reason).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine

from tests.records.record_support import TODAY, add_patient, audit_rows, count
from tests.reminders.reminder_support import FakeClock, reminders
from tests.security.support import PROTOCOL, at, course_ending
from tests.web.web_support import api_token, csrf_in, sign_in
from tracker.errors import ValidationFailed
from tracker.reminders.planner import plan
from tracker.services import records
from tracker.services.teams import add_team
from tracker.services.worklist import acknowledge_many
from tracker.values import NOTE_MAX

# (reason, what the refusal says about it)
BAD_RECORD_REASONS = [
    ("dup\x00licate", "contains a NUL, which is not allowed"),
    ("dup\x07licate", "contains control character U+0007, which is not allowed"),
    ("dup\x1b[2Jlicate", "contains control character U+001B, which is not allowed"),
    ("dup\tlicate", "contains a tab, which is not allowed"),
    ("x" * (NOTE_MAX + 1), f"is longer than {NOTE_MAX} characters"),
    ("", "is required"),
    (" \r\n ", "is required"),
]
BAD_ACK_REASONS = [
    ("moved\r\nBcc: x", "contains a carriage return, which is not allowed"),
    ("moved\nto ward 9", "contains a line break, which is not allowed"),
    ("moved\x00", "contains a NUL, which is not allowed"),
    ("moved\x07", "contains control character U+0007, which is not allowed"),
    ("x" * 301, "Keep the reason to 300 characters"),
    ("", "Give a reason"),
    ("   ", "Give a reason"),
]
MULTI_LINE = "Entered on the wrong patient.\r\nThe right one is A002."


def _refusal(failed: pytest.ExceptionInfo[ValidationFailed]) -> tuple[str, str]:
    [problem] = failed.value.problems
    return problem.field, problem.reason


def _injury(engine: Engine, mrn: str = "A001") -> records.Saved:
    add_patient(engine, mrn)
    return records.add_injury(
        engine=engine, actor="alice", mrn=mrn, kind="burn", date="2025-01-10", today=TODAY
    )


def _course(engine: Engine, mrn: str = "A001") -> records.Saved:
    add_patient(engine, mrn)
    return records.start_course(
        engine=engine, actor="alice", mrn=mrn, agent="indomethacin", intent="treatment",
        start_date="2025-03-05", today=TODAY,
    )  # fmt: skip


def _void(engine: Engine, record_id: int, reason: str) -> records.Saved:
    return records.void_record(
        engine=engine, actor="bob", entity="injury", record_id=record_id,
        expected_version=1, reason=reason,
    )  # fmt: skip


def _stop(engine: Engine, course_id: int, reason: str) -> records.Saved:
    return records.stop_course(
        engine=engine, actor="bob", course_id=course_id, expected_version=1,
        end_date="2025-04-01", reason=reason, today=TODAY,
    )  # fmt: skip


# --- through the services (what the CLI, the API and the forms all call) -----------------


@pytest.mark.parametrize("what", ["void", "stop"])
@pytest.mark.parametrize(("reason", "said"), BAD_RECORD_REASONS)
def test_void_or_stop_reason_with_a_control_character_too_long_or_blank_is_refused(
    engine: Engine, what: str, reason: str, said: str
) -> None:
    """Voiding an injury, or stopping a course: refused naming `reason`, nothing written."""
    table = {"void": "injury", "stop": "treatment_course"}[what]
    record = _injury(engine) if what == "void" else _course(engine)
    before = audit_rows(engine)
    with pytest.raises(ValidationFailed) as failed:
        (_void if what == "void" else _stop)(engine, record.id, reason)
    field, why = _refusal(failed)
    assert field == "reason" and why.startswith(said)
    with engine.connect() as conn:
        stored = conn.execute(sa.text(f"SELECT version, voided_at FROM {table}")).one()
        ended = conn.execute(
            sa.text("SELECT count(*) FROM treatment_course WHERE end_date IS NOT NULL")
        ).scalar()
    assert (tuple(stored), ended) == ((1, None), 0)  # nothing written
    assert audit_rows(engine) == before


def test_a_plain_reason_and_one_of_several_lines_void_and_stop(engine: Engine) -> None:
    injury = _injury(engine)
    _void(engine, injury.id, f"  {MULTI_LINE}  ")
    assert count(engine, "injury", live=True) == 0
    [voided] = [r for r in audit_rows(engine, "injury") if r["action"] == "void"]
    assert voided["after"]["voided_reason"] == MULTI_LINE  # trimmed, lines kept
    course = _course(engine, "A002")
    _stop(engine, course.id, "gastric upset")
    stopped = audit_rows(engine, "treatment_course")[-1]
    assert stopped["after"]["stop_reason"] == "gastric upset"


def _open_reminders(engine: Engine) -> list[int]:
    day = dt.date(2025, 3, 3)
    course_ending(engine, "A001", day, team="ward7")
    course_ending(engine, "A002", day, team="ward7")
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    plan(engine=engine, as_of=day, protocol=PROTOCOL, now=FakeClock(at(day))())
    return [r["id"] for r in reminders(engine)]


@pytest.mark.parametrize(("reason", "said"), BAD_ACK_REASONS)
def test_acknowledgement_reason_on_more_than_one_line_or_too_long_is_refused_naming_reason(
    engine: Engine, reason: str, said: str
) -> None:
    ids = _open_reminders(engine)
    assert len(ids) == 2
    with pytest.raises(ValidationFailed) as failed:
        acknowledge_many(engine=engine, reminder_ids=ids, by="alice", reason=reason)
    field, why = _refusal(failed)
    assert field == "reason" and said in why
    assert "\r" not in why and "\n" not in why and "\x00" not in why
    assert {r["status"] for r in reminders(engine)} == {"due"}  # nothing acknowledged
    assert {r["ack_reason"] for r in reminders(engine)} == {None}


def test_a_one_line_acknowledgement_reason_is_kept(engine: Engine) -> None:
    ids = _open_reminders(engine)
    acknowledge_many(engine=engine, reminder_ids=ids, by="alice", reason=" transferred ")
    assert {(r["status"], r["ack_reason"]) for r in reminders(engine)} == {
        ("acknowledged", "transferred")
    }


# --- through a web form and the API --------------------------------------------------------


def _void_form(client: TestClient, mrn: str, injury_id: int, reason: str) -> Response:
    page = client.get(f"/patients/{mrn}/injuries/{injury_id}/edit")
    assert page.status_code == 200, page.text
    return client.post(
        f"/patients/{mrn}/injuries/{injury_id}/void",
        data={"reason": reason, "version": "1", "csrf_token": csrf_in(page.text)},
    )


def test_void_form_shows_the_refusal_beside_the_reason_and_a_plain_reason_voids(
    demo_engine: Engine, client: TestClient
) -> None:
    injury = _injury(demo_engine, "R-VOID")
    sign_in(client, "clinician")

    refused = _void_form(client, "R-VOID", injury.id, "dup\x07licate")

    assert refused.status_code == 422
    text = refused.text
    reason_input = re.search(r"<textarea[^>]*name=\"reason\"[^>]*>", text)
    assert reason_input and 'aria-invalid="true"' in reason_input.group()
    assert "U+0007, which is not allowed" in text
    assert count(demo_engine, "injury", live=True) >= 1
    with demo_engine.connect() as conn:
        voided = conn.execute(
            sa.text("SELECT voided_at FROM injury WHERE id = :i"), {"i": injury.id}
        ).scalar()
    assert voided is None

    done = _void_form(client, "R-VOID", injury.id, "entered twice")
    assert done.status_code == 303, done.text


def test_api_void_refuses_a_nul_in_the_reason_naming_it_and_takes_a_plain_one(
    demo_engine: Engine, client: TestClient
) -> None:
    injury = _injury(demo_engine, "R-API")
    auth = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    url = f"/api/v1/records/injuries/{injury.id}/void"

    refused = client.post(url, json={"reason": "dup\x00", "version": 1}, headers=auth)

    assert refused.status_code == 422, refused.text
    [detail] = refused.json()["detail"]
    assert detail["loc"][-1] == "reason" and "NUL" in detail["msg"]
    done = client.post(url, json={"reason": "entered twice", "version": 1}, headers=auth)
    assert done.status_code == 200, done.text
    assert done.json()["reason"] == "entered twice"
