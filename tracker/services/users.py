"""Web-app users, their argon2 password hashes and API tokens (issue 6).

Public surface:
    add_user(*, engine, username, role, password, actor=None) -> User
    authenticate(*, engine, username, password) -> User | None
    issue_api_token(*, engine, username, name, actor=None) -> str  # the plaintext, shown once
    user_for_token(*, engine, token) -> User | None
    list_users(*, engine) -> list[User]
    set_role(*, engine, username, role, actor=None) -> User
    deactivate(*, engine, username, actor=None) -> User    # an admin never themselves
    reactivate(*, engine, username, actor=None) -> User

Changes to a user (role, whether they may sign in) are audited as `correct` of the
`user_account` row, a new API token as `create` of an `api_token` row (its name,
never the token).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.services.audit import write_event
from tracker.store.models import ApiToken, UserAccount, table_of

MIN_PASSWORD = 8
user_account = table_of(UserAccount)
api_token = table_of(ApiToken)
_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths cost one argon2 check.
_DUMMY_HASH = _hasher.hash("not a password anyone uses")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    active: bool
    created_at: dt.datetime


def _user(row: sa.RowMapping) -> User:
    return User(row["id"], row["username"], row["role"], bool(row["active"]), row["created_at"])


def _problem(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([Problem("user", None, field, reason)])


def _check_role(role: str) -> str:
    allowed = vocab.values(vocab.Role)
    if role not in allowed:
        raise _problem("role", f"'{role}' is not one of {', '.join(allowed)}")
    return role


def add_user(
    *, engine: Engine, username: str, role: str, password: str, actor: str | None = None
) -> User:
    """Create a user; refuses blank names, unknown roles, passwords under 8 characters."""
    username = (username or "").strip()
    if not username:
        raise _problem("username", "is required")
    if len(username) > 200:
        raise _problem("username", "is longer than 200 characters")
    _check_role(role)
    if not password or len(password) < MIN_PASSWORD or not password.strip():
        raise _problem("password", f"must be at least {MIN_PASSWORD} characters")
    hashed = _hasher.hash(password)
    try:
        with engine.begin() as conn:
            if _find(conn, username) is not None:
                raise Conflict(f"A user named '{username}' already exists.")
            conn.execute(
                sa.insert(user_account).values(
                    username=username, role=role, password_hash=hashed, active=True
                )
            )
            found = _find(conn, username)
            assert found is not None
            write_event(
                conn,
                actor=actor,
                action=vocab.AuditAction.user_add,
                entity="user_account",
                entity_id=found.id,
                mrn=None,
                after={"username": username, "role": role},
            )
    except sa.exc.IntegrityError as error:
        raise Conflict(f"A user named '{username}' already exists.") from error
    return found


def _find(conn: Connection, username: str) -> User | None:
    row = (
        conn.execute(sa.select(user_account).where(user_account.c.username == username))
        .mappings()
        .first()
    )
    return _user(row) if row else None


def authenticate(*, engine: Engine, username: str, password: str) -> User | None:
    """The active user whose password matches, else None (same cost either way)."""
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(user_account).where(user_account.c.username == username))
            .mappings()
            .first()
        )
    stored = row["password_hash"] if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row["active"]:
        return None
    if _hasher.check_needs_rehash(stored):
        with engine.begin() as conn:
            conn.execute(
                sa.update(user_account)
                .where(user_account.c.id == row["id"])
                .values(password_hash=_hasher.hash(password))
            )
    return _user(row)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(*, engine: Engine, username: str, name: str, actor: str | None = None) -> str:
    """A new API token for an active user; only its SHA-256 is stored."""
    if not (name or "").strip():
        raise _problem("name", "is required: say what the token is for")
    if len(name.strip()) > 200:
        raise _problem("name", "is longer than 200 characters")
    token = "hot_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        user = _find(conn, username)
        if user is None or not user.active:
            raise NotFound(f"No active user named '{username}'.")
        result = conn.execute(
            sa.insert(api_token).values(
                user_id=user.id, token_hash=_token_hash(token), name=name.strip()
            )
        )
        write_event(
            conn,
            actor=actor,
            action=vocab.AuditAction.create,
            entity="api_token",
            entity_id=result.inserted_primary_key[0] if result.inserted_primary_key else None,
            mrn=None,
            after={"username": user.username, "name": name.strip()},
        )
    return token


def user_for_token(*, engine: Engine, token: str) -> User | None:
    """The active user a live token belongs to, else None; notes when it was used."""
    t, u = api_token.c, user_account.c
    with engine.begin() as conn:
        row = (
            conn.execute(
                sa.select(user_account, t.id.label("token_id"))
                .select_from(api_token.join(user_account))
                .where(t.token_hash == _token_hash(token), t.revoked_at.is_(None), u.active)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        conn.execute(
            sa.update(api_token)
            .where(t.id == row["token_id"])
            .values(last_used=dt.datetime.now(dt.UTC))
        )
    return _user(row)


def list_users(*, engine: Engine) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(user_account).order_by(user_account.c.username)).mappings()
        return [_user(row) for row in rows]


def _change(
    engine: Engine,
    username: str,
    actor: str | None,
    *,
    revoke_tokens: bool = False,
    **values: object,
) -> User:
    """Update one user and audit the change (`correct`, with before and after)."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        before = _find(conn, username)
        if before is None:
            raise NotFound(f"No user named '{username}'.")
        conn.execute(
            sa.update(user_account)
            .where(user_account.c.id == before.id)
            .values(**values, updated_at=now)
        )
        if revoke_tokens:
            conn.execute(
                sa.update(api_token)
                .where(api_token.c.user_id == before.id, api_token.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        found = _find(conn, username)
        assert found is not None
        write_event(
            conn,
            actor=actor,
            action=vocab.AuditAction.correct,
            entity="user_account",
            entity_id=found.id,
            mrn=None,
            before={key: getattr(before, key) for key in values},
            after={key: getattr(found, key) for key in values},
        )
    return found


def set_role(*, engine: Engine, username: str, role: str, actor: str | None = None) -> User:
    return _change(engine, username, actor, role=_check_role(role))


def deactivate(*, engine: Engine, username: str, actor: str | None = None) -> User:
    """Sign a user out: their sessions stop working and their API tokens are revoked;
    their name stays in the audit trail. An admin may not deactivate themselves."""
    if actor is not None and actor == username:
        raise TrackerError(
            f"You cannot disable your own account ({username}); ask another admin to."
        )
    return _change(engine, username, actor, revoke_tokens=True, active=False)


def reactivate(*, engine: Engine, username: str, actor: str | None = None) -> User:
    """Let a deactivated user sign in again; tokens revoked meanwhile stay revoked."""
    return _change(engine, username, actor, active=True)
