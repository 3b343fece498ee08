"""Day-to-day user administration in the web app (issue 14): an admin resets a
password (the user must choose a new one before any other page opens), changes a
role, sets a team and sees the last sign-in in clinic time; the last active admin can
be neither disabled nor demoted; everyone can change their own password."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine

from tests.web.web_support import PASSWORD, csrf_in, make_client, sign_in
from tracker.errors import TrackerError
from tracker.services.audit import audit_trail
from tracker.services.users import add_user, deactivate, list_users, set_role
from tracker.store.models import UserAccount, table_of

NEW_PASSWORD = "a brand new password"


def _user(engine: Engine, username: str):  # type: ignore[no-untyped-def]
    return next(u for u in list_users(engine=engine) if u.username == username)


def _press(client: TestClient, page: str, url: str, **fields: str) -> Response:
    """Post a form of `page` as the browser would, with that page's CSRF token."""
    return client.post(url, data={"csrf_token": csrf_in(client.get(page).text), **fields})


def _error_beside(html: str, field_id: str) -> str:
    found = re.search(rf'<span class="field-error" id="{field_id}-err">([^<]*)</span>', html)
    assert found, f"no error beside #{field_id}"
    return unescape(found.group(1))


def _reset(client: TestClient, engine: Engine, username: str, **fields: str) -> Response:
    user_id = _user(engine, username).id
    page = f"/admin/users/{user_id}"
    return _press(client, page, f"{page}/password", **fields)


def _temporary_password(html: str) -> str:
    found = re.search(r'<code class="token" id="temporary-password">([^<]+)</code>', html)
    assert found, "no temporary password shown"
    return unescape(found.group(1))


def test_a_reset_password_must_be_changed_before_any_other_page_opens(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    shown = _reset(client, demo_engine, "clinician", how="temporary")
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    temporary = _temporary_password(shown.text)
    assert len(temporary) >= 12
    assert temporary not in client.get(f"/admin/users/{_user(demo_engine, 'clinician').id}").text
    assert _user(demo_engine, "clinician").must_change_password

    with make_client(demo_engine) as nurse:
        refused = nurse.post(
            "/signin",
            data={
                "username": "clinician",
                "password": PASSWORD,
                "csrf_token": csrf_in(nurse.get("/signin").text),
            },
        )
        assert refused.status_code == 401  # the old password no longer works
        sign_in(nurse, "clinician", temporary)
        for page in ("/worklist", "/patients", "/patients/H-EARLY", "/board"):
            held = nurse.get(page)
            assert held.status_code == 303, page
            assert held.headers["location"].startswith("/account/password?next=")
        assert nurse.get("/api/v1/patients").status_code == 403  # nor the API by session
        change_page = nurse.get("/account/password?next=/patients")
        assert change_page.status_code == 200
        assert 'id="password-due"' in change_page.text
        assert 'href="/board"' not in change_page.text  # no way round it in the menu

        wrong = _press(
            nurse,
            "/account/password",
            "/account/password",
            current_password="not the one",
            new_password=NEW_PASSWORD,
            confirm=NEW_PASSWORD,
            next="/patients",
        )
        assert wrong.status_code == 422
        assert "does not match" in _error_beside(wrong.text, "current_password")
        assert nurse.get("/worklist").status_code == 303  # still held

        done = _press(
            nurse,
            "/account/password",
            "/account/password",
            current_password=temporary,
            new_password=NEW_PASSWORD,
            confirm=NEW_PASSWORD,
            next="/patients",
        )
        assert done.status_code == 303 and done.headers["location"] == "/patients"
        opened = nurse.get("/patients")
        assert opened.status_code == 200
        assert "Your password is changed" in opened.text
        assert nurse.get("/worklist").status_code == 200

    assert not _user(demo_engine, "clinician").must_change_password
    trail = [e for e in audit_trail(engine=demo_engine) if e.action == "correct"]
    changed, reset = trail[0], trail[1]  # newest first
    assert (reset.username, reset.before, reset.after) == (
        "admin",
        {"must_change_password": False},
        {"must_change_password": True, "password": "reset by an admin"},
    )
    assert (changed.username, changed.after) == (
        "clinician",
        {"must_change_password": False, "password": "changed by its user"},
    )
    for event in trail[:2]:
        assert temporary not in str(event.after) and NEW_PASSWORD not in str(event.after)


def test_an_admin_can_choose_the_password_the_user_must_then_replace(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    weak = _reset(client, demo_engine, "surgeon", how="chosen", password="short", confirm="short")
    assert weak.status_code == 422
    assert "at least 12 characters" in _error_beside(weak.text, "pw-password")
    assert 'value="short"' not in weak.text  # a password is never sent back
    differ = _reset(
        client, demo_engine, "surgeon", how="chosen", password="long enough 12", confirm="other"
    )
    assert differ.status_code == 422 and "differ" in _error_beside(differ.text, "pw-confirm")
    assert not _user(demo_engine, "surgeon").must_change_password

    done = _reset(
        client,
        demo_engine,
        "surgeon",
        how="chosen",
        password="told on the phone",
        confirm="told on the phone",
    )
    assert done.status_code == 303
    assert "they must choose a new one" in client.get(done.headers["location"]).text
    with make_client(demo_engine) as other:
        sign_in(other, "surgeon", "told on the phone")
        assert other.get("/board").headers["location"].startswith("/account/password")


def test_an_admin_resets_no_password_of_their_own_here(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    mine = f"/admin/users/{_user(demo_engine, 'admin').id}"
    page = client.get(mine).text
    assert f'action="{mine}/password"' not in page and 'href="/account/password"' in page
    refused = _press(client, mine, f"{mine}/password", how="temporary")
    assert refused.status_code == 400
    assert not _user(demo_engine, "admin").must_change_password


def test_a_role_change_and_a_team_show_on_the_users_list_and_in_the_trail(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    user_id = _user(demo_engine, "clinician").id
    page = f"/admin/users/{user_id}"
    form = client.get(page).text
    assert ">brain injury unit</option>" in form  # teams chosen by their words
    saved = _press(client, page, page, role="surgeon", team="brain_injury_unit")
    assert saved.status_code == 303 and saved.headers["location"] == page
    assert "Saved clinician: role surgeon, team brain injury unit." in client.get(page).text

    listed = client.get("/admin/users").text
    row = re.search(r'<tr data-user="clinician">(.*?)</tr>', listed, re.S)
    assert row, listed
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[1] == "surgeon" and cells[2] == "brain injury unit"
    assert "brain_injury_unit" not in row.group(1)  # the team's words, not its token

    changes = [
        (e.before, e.after)
        for e in audit_trail(engine=demo_engine, username="admin")
        if e.action == "correct" and e.entity == "user_account"
    ]
    assert changes[:2] == [
        ({"team": None}, {"team": "brain_injury_unit"}),
        ({"role": "clinician"}, {"role": "surgeon"}),
    ]
    with make_client(demo_engine) as moved:
        sign_in(moved, "clinician")
        assert "clinician (surgeon)" in moved.get("/worklist").text

    cleared = _press(client, page, page, role="surgeon", team="")
    assert cleared.status_code == 303
    assert _user(demo_engine, "clinician").team is None


def test_an_unknown_team_is_refused_beside_the_team_field(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    page = f"/admin/users/{_user(demo_engine, 'surgeon').id}"
    refused = _press(client, page, page, role="surgeon", team="ward 99")
    assert refused.status_code == 422
    assert "not one of the clinic's teams" in _error_beside(refused.text, "a-team")
    assert _user(demo_engine, "surgeon").team is None


def test_the_last_sign_in_is_recorded_and_shown_in_clinic_time_to_the_minute(
    client: TestClient, demo_engine: Engine
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with make_client(demo_engine) as surgeon:
        sign_in(surgeon, "surgeon")
    stored = _user(demo_engine, "surgeon").last_signin_at
    assert stored is not None and before <= stored <= dt.datetime.now(dt.UTC)
    assert _user(demo_engine, "clinician").last_signin_at is None

    # a summer sign-in: London is an hour ahead of UTC, and seconds are not shown
    user_account = table_of(UserAccount)
    with demo_engine.begin() as conn:
        conn.execute(
            sa.update(user_account)
            .where(user_account.c.username == "surgeon")
            .values(last_signin_at=dt.datetime(2026, 7, 1, 12, 34, 56, tzinfo=dt.UTC))
        )
    sign_in(client, "admin")
    listed = client.get("/admin/users").text
    row = re.search(r'<tr data-user="surgeon">(.*?)</tr>', listed, re.S)
    assert row and "2026-07-01 13:34</td>" in row.group(1) and "13:34:56" not in row.group(1)
    never = re.search(r'<tr data-user="clinician">(.*?)</tr>', listed, re.S)
    assert never and ">never</td>" in never.group(1)
    assert "clinic time (Europe/London)" in listed
    mine = _user(demo_engine, "admin").last_signin_at
    assert mine is not None
    assert mine.astimezone(ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M") in listed


def test_the_last_active_admin_can_be_neither_disabled_nor_demoted(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "admin")
    mine = f"/admin/users/{_user(demo_engine, 'admin').id}"
    refused = _press(client, mine, mine, role="clinician", team="")
    assert refused.status_code == 409
    reason = _error_beside(refused.text, "a-role")
    assert "last active admin" in reason and "Make another user an admin first" in reason
    assert _user(demo_engine, "admin").role == "admin"
    with pytest.raises(TrackerError, match="Cannot disable admin: they are the last active admin"):
        deactivate(engine=demo_engine, username="admin", actor=None)  # e.g. from a terminal
    assert _user(demo_engine, "admin").active

    # a disabled admin does not count; an active second admin does
    add_user(engine=demo_engine, username="boss", role="admin", password=PASSWORD)
    deactivate(engine=demo_engine, username="boss", actor="admin")
    assert _press(client, mine, mine, role="surgeon", team="").status_code == 409
    boss = f"/admin/users/{_user(demo_engine, 'boss').id}"
    assert _press(client, boss, f"{boss}/enable").status_code == 303
    demoted = _press(client, mine, mine, role="surgeon", team="")
    assert demoted.status_code == 303 and demoted.headers["location"] == "/worklist"
    assert "You no longer manage users" in client.get("/worklist").text
    assert client.get("/admin/users").status_code == 403
    with pytest.raises(TrackerError, match="Cannot make boss a surgeon"):
        set_role(engine=demo_engine, username="boss", role="surgeon", actor="boss")
    assert _user(demo_engine, "boss").role == "admin"


def test_a_user_changes_their_own_password(client: TestClient, demo_engine: Engine) -> None:
    sign_in(client, "surgeon")
    assert 'href="/account/password"' in client.get("/worklist").text
    page = client.get("/account/password")
    assert page.status_code == 200 and 'id="password-due"' not in page.text
    same = _press(
        client,
        "/account/password",
        "/account/password",
        current_password=PASSWORD,
        new_password=PASSWORD,
        confirm=PASSWORD,
    )
    assert same.status_code == 422
    assert "same as the current" in _error_beside(same.text, "new_password")
    short = _press(
        client,
        "/account/password",
        "/account/password",
        current_password=PASSWORD,
        new_password="tiny",
        confirm="tiny",
    )
    assert short.status_code == 422 and "at least 12" in _error_beside(short.text, "new_password")
    done = _press(
        client,
        "/account/password",
        "/account/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
        confirm=NEW_PASSWORD,
    )
    assert done.status_code == 303 and done.headers["location"] == "/worklist"
    with make_client(demo_engine) as again:
        sign_in(again, "surgeon", NEW_PASSWORD)
        assert again.get("/worklist").status_code == 200


def test_a_blank_sign_in_marks_the_empty_fields_and_counts_no_failure(
    client: TestClient, demo_engine: Engine
) -> None:
    response = client.post(
        "/signin",
        data={"username": "", "password": "", "csrf_token": csrf_in(client.get("/signin").text)},
    )
    assert response.status_code == 422
    assert "Type your user name" in _error_beside(response.text, "username")
    assert "Type your password" in _error_beside(response.text, "password")
    assert not [e for e in audit_trail(engine=demo_engine) if e.action == "sign_in_failed"]


# --- every form on these pages, sent with the values it shows --------------------


class _Forms(HTMLParser):
    """Each <form> of a page with the values a browser would send untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "method": a.get("method", "get"), "data": {}}
            )
            return
        if not self.forms:
            return
        data: dict[str, str] = self.forms[-1]["data"]  # type: ignore[assignment]
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    data[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "file"):
                data[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
                data.setdefault(self._select, value)
            if "selected" in a:
                data[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            data[name] = ""

    def handle_data(self, text: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1]["data"][self._textarea] += text  # type: ignore[index]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _forms_of(html: str) -> list[dict[str, object]]:
    parser = _Forms()
    parser.feed(html)
    return [f for f in parser.forms if f["action"] != "/signout"]


@pytest.mark.parametrize("who", ["admin", "surgeon"])
def test_admin_and_account_forms_sent_with_their_defaults_never_refuse_without_a_marked_field(
    client: TestClient, demo_engine: Engine, who: str
) -> None:
    sign_in(client, who)
    pages = ["/account/password"]
    if who == "admin":
        other = _user(demo_engine, "clinician").id
        pages += [
            "/admin/users",
            f"/admin/users/{other}",
            f"/admin/users/{_user(demo_engine, 'admin').id}",
        ]
    sent = 0
    for page in pages:
        for form in _forms_of(client.get(page).text):
            if form["action"].endswith("/disable"):  # type: ignore[union-attr]
                continue  # a button, not a form with defaults; pressed in test_web_admin
            data = dict(form["data"])  # type: ignore[call-overload]
            data["csrf_token"] = csrf_in(client.get(page).text)
            response = client.post(str(form["action"]), data=data)
            sent += 1
            assert response.status_code < 500, (page, form["action"])
            if response.status_code >= 400:
                assert 'class="field-error"' in response.text, (page, form["action"], response.text)
    assert sent >= (1 if who == "surgeon" else 6)

    with make_client(demo_engine) as anonymous:
        form = _forms_of(anonymous.get("/signin").text)[0]
        response = anonymous.post("/signin", data=dict(form["data"]))  # type: ignore[call-overload]
        assert response.status_code < 400 or 'class="field-error"' in response.text


def test_a_locked_out_admin_gets_back_in_from_a_terminal_and_must_then_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracker.cli import run
    from tracker.services.users import authenticate
    from tracker.store import database

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", url)
    engine = database.make_engine(url)
    database.upgrade(engine)
    add_user(engine=engine, username="root", role="admin", password=PASSWORD)
    assert run(["users", "reset-password", "root"]) == 0
    temporary = capsys.readouterr().out.splitlines()[0].strip()
    assert authenticate(engine=engine, username="root", password=temporary) is not None
    assert _user(engine, "root").must_change_password
    assert run(["users", "role", "root", "surgeon"]) != 0  # the last active admin
    assert "last active admin" in capsys.readouterr().err
    assert _user(engine, "root").role == "admin"
