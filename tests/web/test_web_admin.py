"""The admin's pages: add, disable and re-enable users, issue API tokens, and read
and check the clinic protocol (issue 6: admins manage users and the protocol)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine

from tests.web.web_support import PASSWORD, csrf_in, make_client, sign_in
from tracker.protocol import Protocol, toml_text
from tracker.services.audit import audit_trail
from tracker.services.users import list_users

NEW_PASSWORD = "a long new password"


def _add(client: TestClient, **fields: str) -> Response:
    page = client.get("/admin/users")
    data = {"username": "nurse", "role": "clinician", "password": NEW_PASSWORD}
    data |= {"confirm": data["password"]} | fields
    return client.post("/admin/users", data={"csrf_token": csrf_in(page.text), **data})


def _user_id(engine: Engine, username: str) -> int:
    return next(u.id for u in list_users(engine=engine) if u.username == username)


def _press(client: TestClient, url: str, **fields: str) -> Response:
    page = client.get("/admin/users")
    return client.post(url, data={"csrf_token": csrf_in(page.text), **fields})


def test_an_admin_adds_a_user_who_can_then_sign_in(client: TestClient, demo_engine: Engine) -> None:
    sign_in(client, "admin")
    response = _add(client, username="nurse", role="surgeon")
    assert response.status_code == 303
    assert "done=" not in response.headers["location"]
    listed = client.get(response.headers["location"])
    assert "Added nurse (surgeon)" in listed.text and 'class="notice"' in listed.text
    added = [e for e in audit_trail(engine=demo_engine, username="admin") if e.action == "user_add"]
    assert added and added[0].after == {"username": "nurse", "role": "surgeon"}
    client.cookies.clear()
    sign_in(client, "nurse", NEW_PASSWORD)
    assert "nurse (surgeon)" in client.get("/worklist").text


def test_a_weak_password_is_refused_in_place_keeping_the_username(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    response = _add(client, username="nurse", password="short", confirm="short")
    assert response.status_code == 422
    html = response.text
    assert 'id="u-username" name="username" value="nurse"' in html
    err = re.search(r'<span class="field-error" id="u-password-err">([^<]*)</span>', html)
    assert err and "at least 12 characters" in err.group(1)
    assert "short" not in html  # a password is never sent back
    assert "nurse" not in [u.username for u in list_users(engine=demo_engine)]


@pytest.mark.parametrize(
    ("fields", "field", "reason", "status"),
    [
        ({"confirm": "something else entirely"}, "confirm", "differ", 422),
        ({"role": "nurse"}, "role", "'nurse' is not one of", 422),
        ({"username": "   "}, "username", "is required", 422),
        ({"username": "surgeon"}, "username", "already exists", 409),
    ],
)
def test_a_refused_new_user_is_shown_beside_its_field(
    client: TestClient, fields: dict[str, str], field: str, reason: str, status: int
) -> None:
    sign_in(client, "admin")
    response = _add(client, **fields)
    assert response.status_code == status
    err = re.search(
        rf'<span class="field-error" id="u-{field}-err">([^<]*)</span>',
        response.text,
    )
    assert err and reason in err.group(1).replace("&#39;", "'"), response.text


def test_a_disabled_user_is_signed_out_and_can_be_re_enabled(
    client: TestClient, demo_engine: Engine
) -> None:
    clinician_id = _user_id(demo_engine, "clinician")
    with make_client(demo_engine) as other:
        sign_in(other, "clinician")
        assert other.get("/worklist").status_code == 200
        sign_in(client, "admin")
        response = _press(client, f"/admin/users/{clinician_id}/disable")
        assert response.status_code == 303
        assert "Disabled clinician" in client.get(response.headers["location"]).text
        assert other.get("/worklist").status_code == 303  # the session no longer counts
        other.cookies.clear()
        page = other.get("/signin")
        refused = other.post(
            "/signin",
            data={"username": "clinician", "password": PASSWORD, "csrf_token": csrf_in(page.text)},
        )
        assert refused.status_code == 401
        response = _press(client, f"/admin/users/{clinician_id}/enable")
        assert response.status_code == 303
        sign_in(other, "clinician")
    trail = audit_trail(engine=demo_engine, username="admin")
    changes = [(e.before, e.after) for e in trail if e.action == "correct"]  # newest first
    assert changes == [({"active": False}, {"active": True}), ({"active": True}, {"active": False})]


def test_an_admin_cannot_disable_themselves(client: TestClient, demo_engine: Engine) -> None:
    sign_in(client, "admin")
    page = client.get("/admin/users")
    assert f'action="/admin/users/{_user_id(demo_engine, "admin")}/disable"' not in page.text
    response = _press(client, f"/admin/users/{_user_id(demo_engine, 'admin')}/disable")
    assert response.status_code == 400
    assert "cannot disable your own account" in response.text
    assert all(u.active for u in list_users(engine=demo_engine))


def test_an_issued_token_is_shown_once_and_works_until_the_user_is_disabled(
    client: TestClient, demo_engine: Engine
) -> None:
    surgeon_id = _user_id(demo_engine, "surgeon")
    sign_in(client, "admin")
    blank = _press(client, f"/admin/users/{surgeon_id}/token", name="  ")
    assert blank.status_code == 422
    assert f'id="t{surgeon_id}-name-err"' in blank.text
    response = _press(client, f"/admin/users/{surgeon_id}/token", name="lab feed")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    found = re.search(r'<code class="token" id="new-token">([^<]+)</code>', response.text)
    assert found
    token = found.group(1)
    assert token not in client.get("/admin/users").text  # shown once
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/patients", headers=bearer).status_code == 200
    issued = [e for e in audit_trail(engine=demo_engine, username="admin") if e.action == "create"]
    assert issued[0].entity == "api_token"
    assert issued[0].after == {"username": "surgeon", "name": "lab feed"}
    _press(client, f"/admin/users/{surgeon_id}/disable")
    _press(client, f"/admin/users/{surgeon_id}/enable")
    client.cookies.clear()
    assert client.get("/api/v1/patients", headers=bearer).status_code == 401  # revoked


def test_the_protocol_page_shows_the_protocol_in_effect(client: TestClient) -> None:
    protocol: Protocol = client.app.state.protocol
    sign_in(client, "admin")
    page = client.get("/admin/protocol")
    assert page.status_code == 200
    assert "default.toml" in page.text and "never changes it" in page.text
    assert '<a href="/admin/protocol" aria-current="page">Protocol</a>' in page.text
    for section, key, value in (
        ("readiness", "scan_recency_days", protocol.readiness.scan_recency_days),
        ("reminders", "time_zone", protocol.reminders.time_zone),
    ):
        table = page.text.split(f"<caption>[{section}]</caption>", 1)[1].split("</table>", 1)[0]
        row = f"<code>{key}</code></th><td><code>{toml_text(value)}</code></td>"
        assert row.replace('"', "&#34;") in table or row in table, (key, table)


def _check(client: TestClient, text: str) -> Response:
    page = client.get("/admin/protocol")
    return client.post("/admin/protocol", data={"csrf_token": csrf_in(page.text), "toml": text})


def test_the_protocol_check_names_an_unknown_key_in_place(client: TestClient) -> None:
    sign_in(client, "admin")
    typed = "[activity]\ntolerence = 0.2\n"
    response = _check(client, typed)
    assert response.status_code == 422
    html = response.text
    err = re.search(r'<span class="field-error" id="p-toml-err">([^<]*)</span>', html)
    assert err and "unknown key activity.tolerence" in err.group(1)
    assert "tolerence = 0.2" in html  # what was pasted is kept
    assert _check(client, "  ").status_code == 422


def test_the_protocol_check_lists_a_changed_value_and_writes_nothing(
    client: TestClient,
) -> None:
    from tracker.services.assessment import DEFAULT_PROTOCOL_FILE

    before = DEFAULT_PROTOCOL_FILE.read_bytes()
    current = client.app.state.protocol.readiness.alp_window_days
    proposed = current + 30
    sign_in(client, "admin")
    response = _check(client, f"[readiness]\nalp_window_days = {proposed}\n")
    assert response.status_code == 200
    html = response.text
    assert "<strong>Valid.</strong> 1 value would differ" in html
    assert (
        f"<code>readiness.alp_window_days</code></th><td><code>{current}</code></td>"
        f"<td><code>{proposed}</code></td>"
    ) in html
    unchanged = _check(client, before.decode())
    assert "same as the protocol in effect" in unchanged.text
    assert DEFAULT_PROTOCOL_FILE.read_bytes() == before
