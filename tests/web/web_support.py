"""Fixtures for the web tests: the demo cohort, one user per role, signed-in clients."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tracker.config import Settings
from tracker.web.app import create_app

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
PASSWORD = "correct horse battery"
SECRET = "k" * 48
ROLES = ("clinician", "surgeon", "admin")


def add_role_users(engine: Engine) -> None:
    from tracker.services.users import add_user

    for role in ROLES:
        add_user(engine=engine, username=role, role=role, password=PASSWORD)


def make_client(engine: Engine) -> TestClient:
    app = create_app(Settings(database_url=str(engine.url)), engine, secret=SECRET)
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/signin")
    response = client.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 303, response.text
    return client


def api_token(engine: Engine, username: str) -> str:
    from tracker.services.users import issue_api_token

    return str(issue_api_token(engine=engine, username=username, name="tests"))
