"""Sign-in throttle, passwords and user names (issue 15): growing delays rather than a
lockout anyone could trigger, at least 12 characters and not a common password, and
user names without control characters. On both backends."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import PASSWORD, csrf_in
from tracker.errors import ValidationFailed
from tracker.services.audit import write_event
from tracker.services.users import (
    MIN_PASSWORD,
    add_user,
    authenticate,
    change_password,
    common_passwords,
    reset_password,
)
from tracker.store.models import AuditEvent, table_of
from tracker.values import USERNAME_MAX, identifier_problem
from tracker.web import identity
from tracker.web.auth import (
    ADDRESS_FREE_FAILURES,
    FIRST_DELAY,
    MAX_DELAY,
    NAME_FREE_FAILURES,
    sign_in_delay,
)
from tracker.web.launch import DEMO_PASSWORD

audit_event = table_of(AuditEvent)
UNCOMMON = "a tidy walk by the river"
OTHER_ADDRESS = "198.51.100.7"  # TEST-NET-2: another computer than the test client's


def _refusal(failed: pytest.ExceptionInfo[ValidationFailed]) -> tuple[str, str]:
    (problem,) = failed.value.problems
    return problem.field, problem.reason


# --- passwords --------------------------------------------------------------------


def test_the_shipped_list_is_the_10000_most_common_passwords() -> None:
    common = common_passwords()
    assert len(common) == 10_000
    for word in ("password", "12345678", "qwerty123456", "leavemealone", "1q2w3e4r5t6y"):
        assert word in common
    assert DEMO_PASSWORD not in common and len(DEMO_PASSWORD) >= MIN_PASSWORD


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("password", "is one of the 10,000 most common passwords; choose another"),
        ("12345678", "is one of the 10,000 most common passwords; choose another"),
        ("qwerty123456", "is one of the 10,000 most common passwords; choose another"),
        ("LeaveMeAlone", "is one of the 10,000 most common passwords; choose another"),
        ("abcdefghijk", "must be at least 12 characters"),  # 11 characters
        ("", "must be at least 12 characters"),
        (" " * 12, "is only spaces"),
        ("x" * 1001, "is longer than 1000 characters"),
    ],
    ids=["password", "12345678", "qwerty123456", "any-case", "11-chars", "empty", "spaces", "long"],
)
def test_weak_passwords_are_refused_naming_the_field_and_why(
    engine: Engine, password: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_user(engine=engine, username="bob", role="surgeon", password=password)
    field, said = _refusal(failed)
    assert field == "password" and reason in said


def test_every_way_of_setting_a_password_applies_the_same_rules(engine: Engine) -> None:
    add_user(engine=engine, username="bob", role="surgeon", password=UNCOMMON)
    with pytest.raises(ValidationFailed) as failed:
        reset_password(engine=engine, username="bob", password="1Q2W3E4R5T6Y")
    field, said = _refusal(failed)
    assert (field, said) == (
        "password",
        "is one of the 10,000 most common passwords; choose another",
    )
    with pytest.raises(ValidationFailed) as failed:
        change_password(engine=engine, username="bob", current=UNCOMMON, new="short one")
    assert _refusal(failed) == ("new_password", "must be at least 12 characters")
    assert authenticate(engine=engine, username="bob", password=UNCOMMON) is not None


def test_long_uncommon_passwords_and_the_demo_password_are_accepted(engine: Engine) -> None:
    add_user(engine=engine, username="ada", role="clinician", password=UNCOMMON)
    add_user(engine=engine, username="demo", role="surgeon", password=DEMO_PASSWORD)
    add_user(engine=engine, username="exact", role="admin", password="x7#kq-p2v-mz")  # 12
    assert authenticate(engine=engine, username="ada", password=UNCOMMON) is not None
    assert authenticate(engine=engine, username="demo", password=DEMO_PASSWORD) is not None


# --- user names ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["eve\r", "eve\nadmin", "e\x00ve", "eve\t", "eve\x1b[31m"])
def test_user_names_with_control_characters_are_refused(engine: Engine, bad: str) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_user(engine=engine, username=bad, role="clinician", password=UNCOMMON)
    assert _refusal(failed) == ("username", identifier_problem(bad, limit=USERNAME_MAX))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM user_account")).scalar_one() == 0


@pytest.mark.parametrize(
    ("name", "reason"),
    [("   ", "is required"), (" eve", "starts or ends with a space"), ("e" * 201, "longer")],
)
def test_blank_padded_and_long_user_names_are_refused(
    engine: Engine, name: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_user(engine=engine, username=name, role="clinician", password=UNCOMMON)
    field, said = _refusal(failed)
    assert field == "username" and reason in said


def test_the_users_add_command_refuses_a_name_with_a_line_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracker.cli import run
    from tracker.store import database

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", url)
    database.upgrade(database.make_engine(url))
    monkeypatch.setattr("sys.stdin", io.StringIO(UNCOMMON + "\n"))
    assert run(["users", "add", "eve\nadmin", "--role", "clinician"]) == 2
    assert "username:" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    assert run(["users", "add", "eve", "--role", "clinician"]) == 2
    assert "10,000 most common passwords" in capsys.readouterr().err


# --- the sign-in throttle ----------------------------------------------------------


def _attempt(client: TestClient, username: str, password: str) -> httpx.Response:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": csrf_in(page.text)},
    )


def _from(client: TestClient, address: str) -> TestClient:
    """Another browser on another computer, on the same app."""
    return TestClient(client.app, follow_redirects=False, client=(address, 50001))


def _fail(engine: Engine, username: str, address: str, times: int = 1) -> None:
    """Failed sign-ins as `identity.sign_in` writes them, without argon2's cost."""
    with engine.begin() as conn:
        for _ in range(times):
            write_event(
                conn,
                actor=username,
                action="sign_in_failed",
                entity="user_account",
                entity_id=None,
                mrn=None,
                after={"address": address},
            )


def _age(engine: Engine, seconds: float) -> None:
    """Move every sign-in row back in time: the clock moving on, without sleeping."""
    a = audit_event.c
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(a.id, a.at).where(a.action.in_(["sign_in", "sign_in_failed"]))
        ).all()
        for row in rows:
            conn.execute(
                sa.update(audit_event)
                .where(a.id == row.id)
                .values(at=row.at - dt.timedelta(seconds=seconds))
            )


def _failures(engine: Engine) -> int:
    a = audit_event.c
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(a.action == "sign_in_failed")
        return int(conn.execute(query).scalar_one())


def _latest_failure(engine: Engine) -> dt.datetime:
    a = audit_event.c
    with engine.connect() as conn:
        at = conn.execute(
            sa.select(sa.func.max(a.at)).where(a.action == "sign_in_failed")
        ).scalar_one()
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def test_the_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    delays = [sign_in_delay(n, NAME_FREE_FAILURES).total_seconds() for n in range(20)]
    free = NAME_FREE_FAILURES
    assert delays[: free + 1] == [0.0] * (free + 1)
    assert delays[free + 1 : free + 4] == [FIRST_DELAY.total_seconds() * k for k in (1, 2, 4)]
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert max(delays) == MAX_DELAY.total_seconds() == delays[-1] == 60
    assert sign_in_delay(10**6, free) == MAX_DELAY


def test_wrong_passwords_earn_a_wait_then_the_right_one_signs_in(
    client: TestClient, demo_engine: Engine
) -> None:
    for _ in range(NAME_FREE_FAILURES + 1):
        assert _attempt(client, "surgeon", "not the password").status_code == 401
    refused = _attempt(client, "surgeon", PASSWORD)
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= FIRST_DELAY.total_seconds()
    assert f"wait {wait} second" in refused.text and "15 minutes" not in refused.text
    assert 'value="surgeon"' in refused.text
    assert _failures(demo_engine) == NAME_FREE_FAILURES + 1  # a refused attempt is not one

    _age(demo_engine, FIRST_DELAY.total_seconds())
    assert _attempt(client, "surgeon", PASSWORD).status_code == 303


def test_the_wait_grows_with_each_failure_up_to_a_minute(demo_engine: Engine) -> None:
    address = "192.0.2.10"
    seen = []
    for _ in range(NAME_FREE_FAILURES + 12):
        _fail(demo_engine, "surgeon", address)
        last = _latest_failure(demo_engine)
        seen.append(
            identity.sign_in_wait(engine=demo_engine, username="surgeon", address=address, now=last)
        )
    assert seen[:NAME_FREE_FAILURES] == [0] * NAME_FREE_FAILURES
    assert seen[NAME_FREE_FAILURES : NAME_FREE_FAILURES + 3] == [2, 4, 8]
    assert seen[-1] == 60 and max(seen) == 60
    # the wait runs from the last failure: a little later, a little less
    later = _latest_failure(demo_engine) + dt.timedelta(seconds=45)
    assert (
        identity.sign_in_wait(engine=demo_engine, username="surgeon", address=address, now=later)
        == 15
    )
    # failures older than the window no longer count
    far = later + dt.timedelta(hours=1)
    assert (
        identity.sign_in_wait(engine=demo_engine, username="surgeon", address=address, now=far) == 0
    )


def test_after_many_failures_the_right_password_signs_in_once_the_minute_is_up(
    client: TestClient, demo_engine: Engine
) -> None:
    _fail(demo_engine, "clinician", "testclient", times=40)  # an attacker, for a while
    refused = _attempt(client, "clinician", PASSWORD)
    assert refused.status_code == 429
    assert 55 <= int(refused.headers["retry-after"]) <= 60
    _age(demo_engine, MAX_DELAY.total_seconds())
    assert _attempt(client, "clinician", PASSWORD).status_code == 303


def test_a_successful_sign_in_clears_the_count_for_that_name(
    client: TestClient, demo_engine: Engine
) -> None:
    for _ in range(NAME_FREE_FAILURES + 1):
        _attempt(client, "admin", "typed it wrong")
    _age(demo_engine, FIRST_DELAY.total_seconds())
    assert _attempt(client, "admin", PASSWORD).status_code == 303
    client.cookies.clear()
    # one more slip after getting in costs nothing: only failures since then count
    assert _attempt(client, "admin", "typed it wrong").status_code == 401
    assert _attempt(client, "admin", PASSWORD).status_code == 303


def test_the_name_count_applies_from_any_computer(client: TestClient, demo_engine: Engine) -> None:
    for _ in range(NAME_FREE_FAILURES + 1):
        _attempt(client, "surgeon", "guess")
    with _from(client, OTHER_ADDRESS) as elsewhere:
        refused = _attempt(elsewhere, "surgeon", PASSWORD)
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        # another name from that computer is not held up
        assert _attempt(elsewhere, "clinician", PASSWORD).status_code == 303


def test_an_address_trying_many_names_is_throttled_by_itself(
    client: TestClient, demo_engine: Engine
) -> None:
    for n in range(ADDRESS_FREE_FAILURES + 2):  # one failure for each of many names
        _fail(demo_engine, f"guess{n}", "testclient")
    refused = _attempt(client, "clinician", PASSWORD)  # a name with no failures of its own
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 4
    with _from(client, OTHER_ADDRESS) as elsewhere:
        assert _attempt(elsewhere, "clinician", PASSWORD).status_code == 303
