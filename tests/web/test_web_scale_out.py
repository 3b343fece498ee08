"""Scale-out (issue 6): two real app processes serve one PostgreSQL database, and
nothing that matters lives in either process's memory. A session made by one is
honoured by the other, a correction saved on one makes the same correction on the
other stale, and failed sign-ins spread over both count together."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVER_URL, private_postgres_url, reset_postgres
from tests.servers import serving
from tests.web.web_support import DEMO, PASSWORD, add_role_users, csrf_in
from tracker.interchange.csv_import import import_folder
from tracker.store import database
from tracker.web.auth import NAME_FREE_FAILURES

SECRET = "s" * 48  # the same key in both processes, from the environment as in production


def sign_in(client: httpx.Client, form_on: str, post_to: str, username: str, password: str) -> int:
    """GET the sign-in form on one process and POST it to another: the answer's status."""
    page = client.get(f"{form_on}/signin")
    response = client.post(
        f"{post_to}/signin",
        data={"username": username, "password": password, "csrf_token": csrf_in(page.text)},
    )
    return response.status_code


@pytest.mark.postgres
def test_two_app_processes_share_one_postgres_database(tmp_path: Path) -> None:
    if not SERVER_URL:
        pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
    url = private_postgres_url("scaleout")
    engine = reset_postgres(url)
    try:
        database.upgrade(engine)
        import_folder(engine, DEMO)
        add_role_users(engine)
        from tracker.services.patients import patient_story

        story, _ = patient_story(engine=engine, mrn="H-READY")
        lab = story.labs[0]
    finally:
        engine.dispose()

    env = {**os.environ, "HO_TRACKER_DATABASE_URL": url, "HO_TRACKER_SECRET_KEY": SECRET}
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with (
        serving(env, logs) as (a, b),
        httpx.Client(follow_redirects=False, timeout=10) as client,
    ):
        # a session made by A is honoured by B (cookies are not per port)
        assert sign_in(client, a, a, "clinician", PASSWORD) == 303
        assert client.get(f"{b}/worklist").status_code == 200
        assert client.get(f"{a}/worklist").status_code == 200

        # the same correction opened on both: saved on A, so stale on B
        path = f"/patients/H-READY/labs/{lab.id}/edit"
        on_a, on_b = client.get(f"{a}{path}"), client.get(f"{b}{path}")
        version = re.search(r'name="version" value="(\d+)"', on_a.text)
        assert version and f'name="version" value="{version.group(1)}"' in on_b.text
        values = {"date": lab.date.isoformat(), "analyte": lab.analyte, "unit": lab.unit,
                  "save": "1", "version": version.group(1)}  # fmt: skip
        saved = client.post(
            f"{a}{path}", data={**values, "value": "77", "csrf_token": csrf_in(on_a.text)}
        )
        assert saved.status_code == 303, saved.text
        late = client.post(
            f"{b}{path}", data={**values, "value": "88", "csrf_token": csrf_in(on_b.text)}
        )
        assert late.status_code == 409, late.text
        assert "reload" in late.text.lower()

        # failed sign-ins on A and B count together (the form of one posts to the other)
        client.cookies.clear()
        for n in range(NAME_FREE_FAILURES + 1):  # each process alone saw too few
            first, second = (a, b) if n % 2 == 0 else (b, a)
            assert sign_in(client, first, second, "surgeon", "wrong") == 401
        assert sign_in(client, a, a, "surgeon", PASSWORD) == 429
        assert sign_in(client, b, b, "surgeon", PASSWORD) == 429
