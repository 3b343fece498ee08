"""Web-app users, their argon2 password hashes and API tokens (issue 6).

Public surface:
    add_user(*, engine, username, role, password, actor=None) -> User
    authenticate(*, engine, username, password) -> User | None
    issue_api_token(*, engine, username, name, actor=None) -> str  # the plaintext, shown once
    user_for_token(*, engine, token) -> User | None
    list_users(*, engine) -> list[User]
    set_role(*, engine, username, role, actor=None, keep_session=None) -> User
    set_team(*, engine, username, team, actor=None) -> User
    deactivate(*, engine, username, actor=None) -> User    # an admin never themselves
    reactivate(*, engine, username, actor=None) -> User
    reset_password(*, engine, username, password=None, actor=None) -> str
    change_password(*, engine, username, current, new, keep_session=None) -> User
    mark_signed_in(conn, *, user_id, at=None) -> None

Changes to a user (role, team, whether they may sign in, a password reset or change)
are audited as `correct` of the `user_account` row, never with a password or its
hash; a new API token as `create` of an `api_token` row (its name, never the token).
Neither a role change nor disabling may leave the clinic without an active admin
(issue 14): nobody could then manage users or read the audit trail.

Disabling a user, a password reset or change and a role change end the user's web
sessions in the same transaction (issue 15, `services.sessions.end_sessions`; a
user changing their own password, or their own role, keeps the session they did
it in). Re-enabling a user revives none of them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.services.audit import write_event
from tracker.services.sessions import end_sessions
from tracker.store.models import ApiToken, Team, UserAccount, table_of
from tracker.values import USERNAME_MAX, identifier_problem

MIN_PASSWORD = 12
MAX_PASSWORD = 1000
COMMON_PASSWORDS_FILE = "common-passwords.txt"
user_account = table_of(UserAccount)
api_token = table_of(ApiToken)
team_table = table_of(Team)
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
    team: str | None = None
    must_change_password: bool = False  # set by an admin's reset, cleared by a change
    last_signin_at: dt.datetime | None = None  # UTC


def _user(row: sa.RowMapping) -> User:
    return User(
        row["id"],
        row["username"],
        row["role"],
        bool(row["active"]),
        row["created_at"],
        row["team"],
        bool(row["must_change_password"]),
        _utc(row["last_signin_at"]),
    )


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every stored timestamp is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def _problem(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([Problem("user", None, field, reason)])


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of the most common passwords, in lower case (tracker/data/)."""
    text = (resources.files("tracker") / "data" / COMMON_PASSWORDS_FILE).read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("#"))


def _check_password(password: str, field: str = "password") -> str:
    """At most MAX_PASSWORD characters, not on the shipped list of common passwords
    whatever its case, at least MIN_PASSWORD characters, not only spaces (issue 15)."""
    if len(password) > MAX_PASSWORD:
        raise _problem(field, f"is longer than {MAX_PASSWORD} characters")
    common = common_passwords()
    if password.lower() in common or password.strip().lower() in common:
        reason = f"is one of the {len(common):,} most common passwords; choose another"
        raise _problem(field, reason)
    if len(password) < MIN_PASSWORD:
        raise _problem(field, f"must be at least {MIN_PASSWORD} characters")
    if not password.strip():
        raise _problem(field, "is only spaces; choose one with letters, digits or signs")
    return password


def _check_username(username: str) -> str:
    """A user name is an identifier, checked as MRNs and teams are (`tracker.values`)."""
    problem = "is required" if not username.strip() else None
    problem = problem or identifier_problem(username, limit=USERNAME_MAX)
    if problem is not None:
        raise _problem("username", problem)
    return username


def _check_role(role: str) -> str:
    allowed = vocab.values(vocab.Role)
    if role not in allowed:
        raise _problem("role", f"'{role}' is not one of {', '.join(allowed)}")
    return role


def add_user(
    *, engine: Engine, username: str, role: str, password: str, actor: str | None = None
) -> User:
    """Create a user; refuses names that are not identifiers (blank, control characters,
    surrounding spaces, too long), unknown roles and weak passwords (`_check_password`)."""
    username = _check_username(username or "")
    _check_role(role)
    hashed = _hasher.hash(_check_password(password))
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


def _active_admins(conn: Connection) -> list[int]:
    """The ids of the active admins, locked until the transaction ends (on PostgreSQL),
    so two admins demoting each other at once cannot both succeed."""
    u = user_account.c
    query = sa.select(u.id).where(u.role == vocab.Role.admin.value, u.active).order_by(u.id)
    return [row.id for row in conn.execute(query.with_for_update())]


def _change(
    engine: Engine,
    username: str,
    actor: str | None,
    *,
    revoke_tokens: bool = False,
    unaudited: dict[str, object] | None = None,
    noted: dict[str, object] | None = None,
    ends_sessions: str | None = None,
    keep_session: str | None = None,
    **values: object,
) -> User:
    """Update one user and audit the change (`correct`, with before and after).
    `unaudited` values are written but never put in the trail (a password hash);
    `noted` is added to the trail's `after` to say what happened to them.
    `ends_sessions` (the reason) ends the user's web sessions if anything changed,
    but the one whose hash is `keep_session`."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        admins = _active_admins(conn) if {"role", "active"} & values.keys() else []
        before = _find(conn, username)
        if before is None:
            raise NotFound(f"No user named '{username}'.")
        _keep_an_admin(before, admins, values)
        conn.execute(
            sa.update(user_account)
            .where(user_account.c.id == before.id)
            .values(**values, **(unaudited or {}), updated_at=now)
        )
        if revoke_tokens:
            conn.execute(
                sa.update(api_token)
                .where(api_token.c.user_id == before.id, api_token.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        changed = unaudited or any(getattr(before, key) != value for key, value in values.items())
        if ends_sessions is not None and changed:
            end_sessions(conn, before.id, ends_sessions, keep=keep_session)
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
            after={key: getattr(found, key) for key in values} | (noted or {}),
        )
    return found


def _keep_an_admin(before: User, admins: list[int], values: dict[str, object]) -> None:
    """Refuse the change that would leave no active admin."""
    if before.id not in admins or len(admins) > 1:
        return
    if values.get("active", True) and values.get("role", before.role) == vocab.Role.admin:
        return
    what = (
        f"disable {before.username}"
        if not values.get("active", True)
        else f"make {before.username} a {values['role']}"
    )
    raise TrackerError(
        f"Cannot {what}: they are the last active admin, and without one nobody could "
        "manage users or read the audit trail. Make another user an admin first."
    )


def set_role(
    *,
    engine: Engine,
    username: str,
    role: str,
    actor: str | None = None,
    keep_session: str | None = None,
) -> User:
    """Change what a user may do; never the last active admin's (see `_keep_an_admin`).
    Ends the user's web sessions but `keep_session` (an admin changing their own)."""
    return _change(
        engine,
        username,
        actor,
        ends_sessions="role changed",
        keep_session=keep_session,
        role=_check_role(role),
    )


def set_team(*, engine: Engine, username: str, team: str | None, actor: str | None = None) -> User:
    """Put a user in one of the clinic's teams (their worklist's "my team"), or none."""
    team = (team or "").strip() or None
    if team is not None:
        with engine.connect() as conn:
            known = conn.execute(
                sa.select(team_table.c.name).where(team_table.c.name == team)
            ).first()
        if known is None:
            raise _problem("team", f"'{team}' is not one of the clinic's teams; choose one")
    return _change(engine, username, actor, team=team)


def deactivate(*, engine: Engine, username: str, actor: str | None = None) -> User:
    """Sign a user out: their sessions stop working and their API tokens are revoked;
    their name stays in the audit trail. An admin may not deactivate themselves, and
    the last active admin may not be deactivated."""
    if actor is not None and actor == username:
        raise TrackerError(
            f"You cannot disable your own account ({username}); ask another admin to."
        )
    return _change(
        engine, username, actor, revoke_tokens=True, ends_sessions="disabled", active=False
    )


def reactivate(*, engine: Engine, username: str, actor: str | None = None) -> User:
    """Let a deactivated user sign in again; tokens revoked meanwhile stay revoked."""
    return _change(engine, username, actor, active=True)


# A temporary password is read aloud or copied once: no look-alike characters.
_TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def temporary_password() -> str:
    """Like 'k7mq-x2pa-9vhr': about 59 bits, easy to read out and type once."""
    groups = ("".join(secrets.choice(_TEMPORARY_ALPHABET) for _ in range(4)) for _ in range(3))
    return "-".join(groups)


def reset_password(
    *, engine: Engine, username: str, password: str | None = None, actor: str | None = None
) -> str:
    """Give a user a new password (the one given, else a temporary one made here) that
    they must replace at their next sign-in. Returns it, to be shown once; the trail
    notes the reset, never the password."""
    chosen = _check_password(password) if password is not None else temporary_password()
    _change(
        engine,
        username,
        actor,
        unaudited={"password_hash": _hasher.hash(chosen)},
        noted={"password": "reset by an admin"},
        ends_sessions="password reset",
        must_change_password=True,
    )
    return chosen


def change_password(
    *, engine: Engine, username: str, current: str, new: str, keep_session: str | None = None
) -> User:
    """A signed-in user replaces their own password; the current one must match, and
    the new one must differ from it. Clears a pending forced change. Ends the user's
    other web sessions (all but `keep_session`, the one they changed it in)."""
    if not current:
        raise _problem("current_password", "is required: type the password you signed in with")
    _check_password(new, "new_password")
    if new == current:
        raise _problem("new_password", "is the same as the current password; choose another")
    if authenticate(engine=engine, username=username, password=current) is None:
        raise _problem("current_password", "does not match your password; type it again")
    return _change(
        engine,
        username,
        username,
        unaudited={"password_hash": _hasher.hash(new)},
        noted={"password": "changed by its user"},
        ends_sessions="password changed",
        keep_session=keep_session,
        must_change_password=False,
    )


def mark_signed_in(conn: Connection, *, user_id: int, at: dt.datetime | None = None) -> None:
    """Note a successful sign-in (the users page shows the last one), inside the
    transaction that writes its audit row."""
    conn.execute(
        sa.update(user_account)
        .where(user_account.c.id == user_id)
        .values(last_signin_at=at or dt.datetime.now(dt.UTC))
    )
