"""Users with argon2 passwords, API tokens, the view log, and the users/audit CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.records.record_support import TODAY, add_patient
from tracker.cli import run
from tracker.errors import Conflict, NotFound, ValidationFailed
from tracker.services import records
from tracker.services.audit import audit_trail, record_view
from tracker.services.users import (
    add_user,
    authenticate,
    deactivate,
    issue_api_token,
    list_users,
    set_role,
    user_for_token,
)
from tracker.store import database


def test_password_is_stored_as_argon2_and_checked(engine: Engine) -> None:
    user = add_user(engine=engine, username="alice", role="clinician", password="correct horse")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM user_account")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert authenticate(engine=engine, username="alice", password="correct horse") == user
    assert authenticate(engine=engine, username="alice", password="wrong horse") is None
    assert authenticate(engine=engine, username="nobody", password="correct horse") is None
    deactivate(engine=engine, username="alice")
    assert authenticate(engine=engine, username="alice", password="correct horse") is None


def test_weak_passwords_unknown_roles_and_duplicate_names_are_refused(engine: Engine) -> None:
    with pytest.raises(ValidationFailed, match="password: must be at least 12 characters"):
        add_user(engine=engine, username="bob", role="surgeon", password="short")
    with pytest.raises(ValidationFailed, match="password"):
        add_user(engine=engine, username="bob", role="surgeon", password="")
    with pytest.raises(ValidationFailed, match="'nurse' is not one of clinician, surgeon, admin"):
        add_user(engine=engine, username="bob", role="nurse", password="long enough now")
    add_user(engine=engine, username="bob", role="surgeon", password="long enough now")
    with pytest.raises(Conflict, match="A user named 'bob' already exists"):
        add_user(engine=engine, username="bob", role="admin", password="long enough now")
    assert [(u.username, u.role) for u in list_users(engine=engine)] == [("bob", "surgeon")]
    assert set_role(engine=engine, username="bob", role="admin").role == "admin"
    with pytest.raises(NotFound):
        set_role(engine=engine, username="carol", role="admin")


def test_api_token_is_shown_once_stored_hashed_and_finds_its_user(engine: Engine) -> None:
    add_user(engine=engine, username="feed", role="clinician", password="long enough now")
    token = issue_api_token(engine=engine, username="feed", name="lab interface")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash, last_used FROM api_token")).one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    assert stored.last_used is None
    found = user_for_token(engine=engine, token=token)
    assert found is not None and found.username == "feed"
    assert user_for_token(engine=engine, token=token + "x") is None
    deactivate(engine=engine, username="feed")
    assert user_for_token(engine=engine, token=token) is None


def test_views_are_logged_and_the_trail_filters(engine: Engine) -> None:
    add_patient(engine)
    add_patient(engine, "B002")
    record_view(engine=engine, actor="alice", mrn="A001")
    records.add_injury(
        engine=engine, actor="bob", mrn="B002", kind="burn", date="2025-01-01", today=TODAY
    )
    trail = audit_trail(engine=engine, mrn="A001")
    assert [(r.username, r.action, r.mrn) for r in trail] == [("alice", "view", "A001")]
    assert [r.action for r in audit_trail(engine=engine, username="bob")] == ["create"]
    assert [r.action for r in audit_trail(engine=engine)] == ["create", "view"]
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert audit_trail(engine=engine, since=tomorrow) == []


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", url)
    database.upgrade(database.make_engine(url))
    return url


def test_users_add_reads_the_password_from_standard_input(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    assert run(["users", "add", "alice", "--role", "clinician"]) == 0
    engine = database.make_engine(db_url)
    assert authenticate(engine=engine, username="alice", password="a long passphrase")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(["users", "add", "bob", "--role", "surgeon"]) == 2
    assert "password: must be at least 12 characters" in capsys.readouterr().err

    assert run(["users", "token", "alice", "--name", "script"]) == 0
    token = capsys.readouterr().out.strip()
    assert user_for_token(engine=engine, token=token).username == "alice"  # type: ignore[union-attr]
    assert run(["users", "list"]) == 0
    assert "alice" in capsys.readouterr().out


def test_audit_command_prints_the_trail_as_json(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = database.make_engine(db_url)
    add_patient(engine)
    records.add_injury(
        engine=engine, actor="alice", mrn="A001", kind="burn", date="2025-01-01", today=TODAY
    )
    record_view(engine=engine, actor="bob", mrn="A001")
    assert run(["audit", "--mrn", "A001", "--user", "alice", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["username"], row["action"], row["entity"], row["after"]["kind"]) == (
        "alice",
        "create",
        "injury",
        "burn",
    )
    assert run(["audit", "--since", "2020-01-01"]) == 0
    table = capsys.readouterr().out
    assert "view" in table and "injury" in table
    assert run(["audit", "--since", "yesterday"]) == 2


def test_deactivate_revokes_tokens_reactivate_restores_sign_in_and_both_are_audited(
    engine: Engine,
) -> None:
    from tracker.errors import TrackerError
    from tracker.services.users import reactivate

    add_user(engine=engine, username="root", role="admin", password="long enough now")
    add_user(engine=engine, username="dana", role="clinician", password="long enough now")
    token = issue_api_token(engine=engine, username="dana", name="feed", actor="root")
    with pytest.raises(TrackerError, match="cannot disable your own account"):
        deactivate(engine=engine, username="root", actor="root")
    assert not deactivate(engine=engine, username="dana", actor="root").active
    assert reactivate(engine=engine, username="dana", actor="root").active
    assert authenticate(engine=engine, username="dana", password="long enough now") is not None
    assert user_for_token(engine=engine, token=token) is None  # revoked stays revoked
    trail = [(r.action, r.entity, r.before, r.after) for r in audit_trail(engine=engine)]
    assert trail[:3] == [
        ("correct", "user_account", {"active": False}, {"active": True}),
        ("correct", "user_account", {"active": True}, {"active": False}),
        ("create", "api_token", None, {"username": "dana", "name": "feed"}),
    ]
    with pytest.raises(NotFound):
        reactivate(engine=engine, username="nobody")
