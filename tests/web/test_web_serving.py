"""Serving: the secret key beside an SQLite database, CSV import page, board,
report downloads, and the demo's users."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import csrf_in, sign_in
from tracker.errors import TrackerError
from tracker.store import database
from tracker.web.secret import key_file_for, secret_key


def test_sqlite_key_is_made_once_beside_the_database_readable_only_by_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HO_TRACKER_SECRET_KEY", raising=False)
    engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    first = secret_key(engine)
    path = key_file_for(tmp_path / "tracker.db")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret_key(engine) == first and len(first) >= 32  # a second process agrees


def test_a_configured_key_wins_and_a_short_one_is_refused(tmp_path: Path) -> None:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    assert secret_key(engine, "x" * 40) == "x" * 40
    with pytest.raises(TrackerError, match="too short"):
        secret_key(engine, "short")
    assert not key_file_for(tmp_path / "tracker.db").exists()


def test_a_shared_database_needs_a_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HO_TRACKER_SECRET_KEY", raising=False)
    engine = database.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(TrackerError, match="HO_TRACKER_SECRET_KEY"):
        secret_key(engine)


def test_csv_import_page_lists_every_bad_row_and_writes_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    sign_in(client, "clinician")
    page = client.get("/import")
    bad = write_csv(
        tmp_path,
        "labs.csv",
        [
            {"mrn": "H-READY", "date": "2026-02-30", "analyte": "alp", "value": 90, "unit": "U/L"},
            {"mrn": "NOBODY", "date": "2026-01-02", "analyte": "alp", "value": 90, "unit": "U/L"},
        ],
    )
    response = client.post(
        "/import",
        data={"csrf_token": csrf_in(page.text)},
        files=[("files", ("labs.csv", bad.read_bytes(), "text/csv"))],
    )
    assert response.status_code == 422
    assert "Nothing was imported: 2 problems" in response.text
    problems = re.findall(
        r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
        response.text,
    )
    assert [(source, line, field) for source, line, field, _ in problems] == [
        ("labs.csv", "2", "date"),
        ("labs.csv", "3", "mrn"),
    ]
    assert problems[1][3] == "&#39;NOBODY&#39; is not a known patient; add it to patients.csv"
    good = write_csv(
        tmp_path / "good",
        "labs.csv",
        [{"mrn": "H-READY", "date": "2026-01-02", "analyte": "crp", "value": 4, "unit": "mg/L"}],
    )
    done = client.post(
        "/import",
        data={"csrf_token": csrf_in(page.text)},
        files=[("files", ("labs.csv", good.read_bytes(), "text/csv"))],
    )
    assert done.status_code == 200 and "Imported 1 new row: 1 lab result." in done.text


def test_board_lists_the_ready_site_and_reports_download(client: TestClient) -> None:
    sign_in(client, "surgeon")
    board = client.get("/board?as_of=2026-10-31")
    assert board.status_code == 200
    soon = board.text.split("Every site")[0]
    assert "H-READY" in soon and "H-FOP" not in soon
    report = client.get("/patients/H-READY/report.html?as_of=2026-10-31")
    assert report.status_code == 200
    assert report.headers["content-disposition"].startswith("inline")  # opens in the browser
    assert "H-READY" in report.text
    figure = client.get("/patients/H-READY/trend.svg?as_of=2026-10-31")
    assert figure.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/patients/H-READY/report.exe").status_code == 400


def test_demo_users_are_made_once_and_sign_in_with_the_printed_password(
    sqlite_engine: Engine,
) -> None:
    from tracker.services.users import authenticate, list_users
    from tracker.web.launch import DEMO_PASSWORD, ensure_demo_users

    first = ensure_demo_users(engine=sqlite_engine)
    assert [(u.username, u.created) for u in first] == [
        ("clinician", True), ("surgeon", True), ("admin", True),
    ]  # fmt: skip
    user = authenticate(engine=sqlite_engine, username="surgeon", password=DEMO_PASSWORD)
    assert user is not None and user.role == "surgeon"
    again = ensure_demo_users(engine=sqlite_engine)
    assert not any(u.created for u in again)
    assert len(list_users(engine=sqlite_engine)) == 3
