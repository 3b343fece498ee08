"""Sessions held on the server (issue 15, item 4), on both backends: signing out,
disabling a user, a password reset and a role change end a session at once (a copy
of its cookie too), re-enabling revives nothing, a user changing their own password
keeps only the session they did it in, and idle or too-old sessions are refused.
Last, two real `ho-tracker serve` processes on one PostgreSQL database: a session
signed out through one is refused by the other at once."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import SERVER_URL, private_postgres_url, reset_postgres
from tests.servers import serving
from tests.web.web_support import (
    DEMO,
    PASSWORD,
    SECRET,
    add_role_users,
    api_token,
    csrf_in,
    make_client,
    sign_in,
)
from tracker.config import Settings
from tracker.interchange.csv_import import import_folder
from tracker.services.sessions import session_hash
from tracker.services.users import (
    change_password,
    deactivate,
    reactivate,
    reset_password,
    set_role,
)
from tracker.store import database
from tracker.store.models import UserAccount, WebSession, table_of
from tracker.web.auth import SESSION_COOKIE, SessionSigner

web_session = table_of(WebSession)
user_account = table_of(UserAccount)
PATIENTS_API = "/api/v1/patients"


@contextmanager
def browser_with(engine: Engine, cookie: str) -> Iterator[TestClient]:
    """Another browser holding a copy of a session cookie."""
    with make_client(engine) as other:
        other.cookies.set(SESSION_COOKIE, cookie)
        yield other


def cookie_of(client: TestClient) -> str:
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie, "not signed in"
    return cookie


def refused(client: TestClient) -> bool:
    """The session no longer works: pages send to sign-in, the API answers 401."""
    page = client.get("/worklist")
    api = client.get(PATIENTS_API)
    return (
        page.status_code == 303
        and page.headers["location"].startswith("/signin")
        and api.status_code == 401
    )


def works(client: TestClient) -> bool:
    return (
        client.get("/worklist").status_code == 200 and client.get(PATIENTS_API).status_code == 200
    )


def sessions_of(engine: Engine, username: str) -> list[sa.Row[tuple[str, object, object]]]:
    s, u = web_session.c, user_account.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(s.session_hash, s.ended_at, s.ended_reason)
                .select_from(web_session.join(user_account))
                .where(u.username == username)
                .order_by(s.id)
            )
        )


def session_id_of(client: TestClient) -> str:
    return session_id_of_cookie(cookie_of(client))


def test_a_cookie_copied_before_sign_out_is_refused_after_it(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    copied = cookie_of(client)
    with browser_with(demo_engine, copied) as thief:
        assert works(thief)
        page = client.get("/worklist")
        signed_out = client.post("/signout", data={"csrf_token": csrf_in(page.text)})
        assert signed_out.status_code == 303
        assert refused(thief)
    assert refused(client)
    [row] = sessions_of(demo_engine, "clinician")
    assert row.ended_at is not None and row.ended_reason == "signed out"
    # only the id's hash is stored, never the id the cookie carries
    assert row.session_hash == session_hash(session_id_of_cookie(copied))
    assert row.session_hash != session_id_of_cookie(copied)


def session_id_of_cookie(cookie: str) -> str:
    found = SessionSigner(SECRET).read(cookie)
    assert found is not None
    return found


def test_a_cookie_of_the_former_kind_naming_a_user_is_no_session(
    client: TestClient, demo_engine: Engine
) -> None:
    signer = SessionSigner(SECRET)
    with demo_engine.connect() as conn:
        user_id = conn.execute(
            sa.text("SELECT id FROM user_account WHERE username = 'admin'")
        ).scalar_one()
    old = signer.serializer.dumps({"u": user_id, "n": "nonce"})
    with browser_with(demo_engine, old) as other:
        assert refused(other)
    with browser_with(demo_engine, signer.serializer.dumps({"s": "made-up"})) as other:
        assert refused(other)


def test_disabling_ends_sessions_and_enabling_again_revives_none(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "surgeon")
    assert works(client)
    deactivate(engine=demo_engine, username="surgeon", actor="admin")
    assert refused(client)
    reactivate(engine=demo_engine, username="surgeon", actor="admin")
    assert refused(client)
    assert [row.ended_reason for row in sessions_of(demo_engine, "surgeon")] == ["disabled"]
    sign_in(client, "surgeon")  # a new sign-in is a new session
    assert works(client)


def test_an_admin_disabling_a_user_on_the_users_page_ends_their_session(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "surgeon")
    with make_client(demo_engine) as admin:
        sign_in(admin, "admin")
        with demo_engine.connect() as conn:
            surgeon = conn.execute(
                sa.text("SELECT id FROM user_account WHERE username = 'surgeon'")
            ).scalar_one()
        page = admin.get(f"/admin/users/{surgeon}")
        done = admin.post(
            f"/admin/users/{surgeon}/disable", data={"csrf_token": csrf_in(page.text)}
        )
        assert done.status_code == 303, done.text
        assert refused(client)
        assert works(admin)


@pytest.mark.parametrize("change", ["password reset", "role changed"])
def test_a_password_reset_or_a_role_change_ends_every_session_of_the_user(
    client: TestClient, demo_engine: Engine, change: str
) -> None:
    sign_in(client, "clinician")
    with make_client(demo_engine) as second:
        sign_in(second, "clinician")
        token = api_token(demo_engine, "clinician")
        if change == "password reset":
            reset_password(engine=demo_engine, username="clinician", actor="admin")
        else:
            set_role(engine=demo_engine, username="clinician", role="surgeon", actor="admin")
        assert refused(client) and refused(second)
    reasons = [row.ended_reason for row in sessions_of(demo_engine, "clinician")]
    assert reasons == [change, change]
    # API bearer tokens are not sessions: neither change touches them
    bearer = client.get(PATIENTS_API, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200


def test_setting_the_same_role_again_ends_nothing(client: TestClient, demo_engine: Engine) -> None:
    sign_in(client, "surgeon")
    set_role(engine=demo_engine, username="surgeon", role="surgeon", actor="admin")
    assert works(client)


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "surgeon")
    with make_client(demo_engine) as elsewhere:
        sign_in(elsewhere, "surgeon")
        page = client.get("/account/password")
        new = "a brand new passphrase"
        changed = client.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": new,
                "confirm": new,
                "csrf_token": csrf_in(page.text),
            },
        )
        assert changed.status_code == 303, changed.text
        assert "Your password is changed" in client.get("/worklist").text  # its flash too
        assert works(client)
        assert refused(elsewhere)
    mine = session_hash(session_id_of(client))
    rows = {row.session_hash: row for row in sessions_of(demo_engine, "surgeon")}
    assert rows[mine].ended_at is None
    assert [row.ended_reason for key, row in rows.items() if key != mine] == ["password changed"]
    # from a terminal (no session to keep), every session ends
    change_password(engine=demo_engine, username="surgeon", current=new, new=PASSWORD)
    assert refused(client)


def _move_back(engine: Engine, client: TestClient, **columns: dt.timedelta) -> None:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.update(web_session)
            .where(web_session.c.session_hash == session_hash(session_id_of(client)))
            .values({name: now - by for name, by in columns.items()})
        )


def _last_seen(engine: Engine, client: TestClient) -> dt.datetime:
    with engine.connect() as conn:
        seen = conn.execute(
            sa.select(web_session.c.last_seen_at).where(
                web_session.c.session_hash == session_hash(session_id_of(client))
            )
        ).scalar_one()
    return seen if seen.tzinfo else seen.replace(tzinfo=dt.UTC)


def test_an_idle_session_is_refused_and_a_busy_one_is_noted_once_a_minute(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    # seen half a minute ago: a page view writes nothing
    _move_back(demo_engine, client, last_seen_at=dt.timedelta(seconds=30))
    before = _last_seen(demo_engine, client)
    assert works(client)
    assert _last_seen(demo_engine, client) == before
    # seen 59 minutes ago (the default idle limit is 60): it works, and is noted
    _move_back(demo_engine, client, last_seen_at=dt.timedelta(minutes=59))
    assert works(client)
    assert dt.datetime.now(dt.UTC) - _last_seen(demo_engine, client) < dt.timedelta(minutes=1)
    # unused for 61 minutes: refused, and ended as idle
    _move_back(demo_engine, client, last_seen_at=dt.timedelta(minutes=61))
    assert refused(client)
    [row] = sessions_of(demo_engine, "clinician")
    assert row.ended_reason == "idle"


def test_the_idle_limit_is_a_setting_and_no_session_outlives_twelve_hours(
    demo_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HO_TRACKER_SESSION_IDLE_MINUTES", "5")
    assert Settings().session_idle_minutes == 5
    from tracker.web.app import create_app

    app = create_app(
        Settings(database_url=str(demo_engine.url), session_idle_minutes=5),
        demo_engine,
        secret=SECRET,
    )
    with TestClient(app, follow_redirects=False) as client:
        sign_in(client, "surgeon")
        _move_back(demo_engine, client, last_seen_at=dt.timedelta(minutes=6))
        assert refused(client)
        sign_in(client, "surgeon")
        # busy all along, but signed in 13 hours ago
        _move_back(demo_engine, client, created_at=dt.timedelta(hours=13))
        assert refused(client)
    reasons = [row.ended_reason for row in sessions_of(demo_engine, "surgeon")]
    assert reasons == ["idle", "expired"]


@pytest.mark.postgres
def test_two_postgres_serve_processes_share_sessions_and_their_ending(tmp_path: Path) -> None:
    """Signed in through process A, signed out through process B: A refuses the
    session at once; an admin disabling a user through B ends their session on A."""
    if not SERVER_URL:
        pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
    url = private_postgres_url("sessions")
    engine = reset_postgres(url)
    try:
        database.upgrade(engine)
        import_folder(engine, DEMO)
        add_role_users(engine)
    finally:
        engine.dispose()
    env = {**os.environ, "HO_TRACKER_DATABASE_URL": url, "HO_TRACKER_SECRET_KEY": "t" * 48}
    logs = (tmp_path / "a.log", tmp_path / "b.log")

    def signed_in(client: httpx.Client, base: str, username: str) -> str:
        page = client.get(f"{base}/signin")
        done = client.post(
            f"{base}/signin",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf_in(page.text)},
        )
        assert done.status_code == 303, done.text
        cookie = client.cookies.get(SESSION_COOKIE)
        assert cookie
        return cookie

    def status_with(base: str, cookie: str, path: str = "/worklist") -> int:
        with httpx.Client(follow_redirects=False, timeout=10) as other:
            other.cookies.set(SESSION_COOKIE, cookie)
            return other.get(f"{base}{path}").status_code

    with (
        serving(env, logs) as (a, b),
        httpx.Client(follow_redirects=False, timeout=10) as client,
    ):
        cookie = signed_in(client, a, "clinician")
        assert status_with(a, cookie) == 200 and status_with(b, cookie) == 200
        page = client.get(f"{b}/worklist")
        out = client.post(f"{b}/signout", data={"csrf_token": csrf_in(page.text)})
        assert out.status_code == 303
        assert status_with(a, cookie) == 303
        assert status_with(a, cookie, PATIENTS_API) == 401

        # disabled through B while signed in on A
        client.cookies.clear()
        surgeon = signed_in(client, a, "surgeon")
        assert status_with(a, surgeon) == 200
        client.cookies.clear()
        signed_in(client, b, "admin")
        users = client.get(f"{b}/admin/users")
        found = sa.text("SELECT id FROM user_account WHERE username = 'surgeon'")
        check = database.make_engine(url)
        try:
            with check.connect() as conn:
                surgeon_id = conn.execute(found).scalar_one()
        finally:
            check.dispose()
        done = client.post(
            f"{b}/admin/users/{surgeon_id}/disable", data={"csrf_token": csrf_in(users.text)}
        )
        assert done.status_code == 303, done.text
        assert status_with(a, surgeon) == 303
