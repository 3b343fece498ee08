"""Who is asking: signed session cookies, API tokens, CSRF tokens, roles and the
sign-in throttle.

Nothing here lives in process memory (issue 6, scale-out): a session is a row of
`web_session` (issue 15, `tracker.services.sessions`) whose random id a signed
cookie carries, a CSRF token is derived from the session, and sign-in attempts are
counted in the database, so any app process can serve any request, and a session
ended on one process is refused by all of them at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.engine import Engine

from tracker.errors import TrackerError
from tracker.services.sessions import MAX_AGE

SESSION_COOKIE = "ho_session"
SESSION_HOURS = int(MAX_AGE.total_seconds() // 3600)  # the cookie's life, as the row's
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

# The roles of issue 6: what each may do, in one table the access test reads too.
ROLES = ("clinician", "surgeon", "admin")
CAN_VIEW = frozenset(ROLES)
CAN_EDIT = frozenset({"clinician"})  # log and correct records, import CSVs
CAN_ACKNOWLEDGE = frozenset({"clinician", "surgeon"})  # surgeons: readiness reviews only
CAN_ADMINISTER = frozenset({"admin"})  # users, audit trail

# Sign-in throttle (issue 15): growing delays, never a lockout anyone could trigger.
# Failed sign-ins within FAILURE_WINDOW are counted for the user name (only those since
# its last successful sign-in) and, separately, for the client address. After more than
# the free number of failures the next attempt must wait, from the last failure, a delay
# that doubles with each further failure (2 s, 4 s, 8 s, ...) up to MAX_DELAY: the right
# password after the wait always signs in. An address gets more free failures than a name:
# a ward's shared computer, or a hospital behind one address, types many names.
FAILURE_WINDOW = dt.timedelta(minutes=15)
NAME_FREE_FAILURES = 3
ADDRESS_FREE_FAILURES = 10
FIRST_DELAY = dt.timedelta(seconds=2)
MAX_DELAY = dt.timedelta(seconds=60)


def sign_in_delay(failures: int, free: int) -> dt.timedelta:
    """How long after the last of `failures` recent failures the next attempt must wait:
    nothing for the first `free`, then FIRST_DELAY doubling with each one, capped."""
    beyond = failures - free
    if beyond <= 0:
        return dt.timedelta(0)
    if beyond > 10:  # 2 ** 10 times any sane FIRST_DELAY is already past the cap
        return MAX_DELAY
    return min(FIRST_DELAY * 2 ** (beyond - 1), MAX_DELAY)


@dataclass(frozen=True)
class Viewer:
    """The signed-in person (or API token holder) a request acts for."""

    user_id: int
    username: str
    role: str
    # the session's stored hash, which keys its CSRF token and flash notices; None for
    # API-token requests (no CSRF needed)
    session_nonce: str | None
    team: str | None = None  # the user's own unit ("my team" on the worklist)

    def may(self, allowed: frozenset[str]) -> bool:
        return self.role in allowed


class NotSignedIn(Exception):
    """No valid session or token: pages redirect to sign-in, the API answers 401."""


class NotAllowed(Exception):
    """Signed in, but the role may not do this (403)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class BadCsrf(Exception):
    """A form came without the token of this session (403)."""


class SessionSigner:
    """Signs and reads session cookies with the configured secret key."""

    def __init__(self, key: str):
        self.key = key.encode()
        self.serializer = URLSafeTimedSerializer(key, salt="ho-tracker-session")

    def cookie_for(self, session_id: str) -> str:
        """The cookie carrying a server-side session's id (`services.sessions`)."""
        return self.serializer.dumps({"s": session_id})

    def read(self, cookie: str | None) -> str | None:
        """The session id a cookie carries, if this key signed it (a cookie of the
        former kind, naming a user, is no session)."""
        if not cookie:
            return None
        try:
            data: Any = self.serializer.loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("s"), str):
            return None
        session_id: str = data["s"]
        return session_id if 0 < len(session_id) <= 100 else None

    def csrf_token(self, nonce: str) -> str:
        """Tied to the session: a token stolen from one session is useless in another."""
        return hmac.new(self.key, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)

    def anonymous_csrf(self, browser_nonce: str) -> str:
        """The sign-in form's token, bound to a pre-session cookie."""
        return self.csrf_token("signin:" + browser_nonce)


def require(viewer: Viewer, allowed: frozenset[str], what: str) -> None:
    if not viewer.may(allowed):
        raise NotAllowed(what)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def signer_of(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.signer
    return signer


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_role_name(role: str) -> None:
    if role not in ROLES:
        raise TrackerError(f"role '{role}' is not a role; use one of {', '.join(ROLES)}.")


def api_error_responses() -> dict[int | str, dict[str, Any]]:
    """The refusals every API route may answer with, for the OpenAPI document."""
    return {
        401: {"description": "No valid bearer token or session"},
        403: {"description": "The role may not do this"},
        404: {"description": "No such patient or record"},
        409: {"description": "Someone else saved the record first"},
        422: {"description": "A value is refused; `detail[].loc` is its field path"},
    }
