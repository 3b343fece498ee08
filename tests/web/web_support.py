"""Fixtures for the web tests: the demo cohort, one user per role, signed-in clients."""

from __future__ import annotations

import datetime as dt
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


# --- model v2 on a page: a site without HO, a passed forecast, lapsed reminders ---

V2_AS_OF = dt.date(2026, 11, 2)  # a few days after the demo's latest records
V2_MRN = "V-PASSED"
V2_LATEST_SCAN = "2026-07-01"


def add_v2_patient(engine: Engine) -> None:
    """V-PASSED (spinal cord injury 2025-06-01): a left knee mineralising since
    2026-02-20 whose delayed-phase ratios fall 7.0 -> 3.3 by 2026-07-01, so that on
    V2_AS_OF the fitted curve met its Kim threshold months ago (forecast passed: a new
    scan is due); a right hip that an ultrasound showed free of HO (stage none: no HO);
    and, once planned as of V2_AS_OF, reminders from 2025 that lapsed (never sent)."""
    import tempfile

    from tests.conftest import write_csv
    from tracker.interchange.csv_import import import_folder

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_csv(
            folder,
            "patients.csv",
            [{"mrn": V2_MRN, "birth_date": "1970-03-04", "sex": "female",
              "family_name": "Okafor", "given_name": "Ada", "team": "spinal_unit"}],
        )  # fmt: skip
        write_csv(
            folder,
            "injuries.csv",
            [{"mrn": V2_MRN, "kind": "spinal_cord_injury", "date": "2025-06-01", "notes": ""}],
        )
        write_csv(
            folder,
            "imaging.csv",
            [
                {"mrn": V2_MRN, "date": "2026-02-20", "modality": "radiograph", "site": "knee",
                 "side": "left", "ho": "present", "calcification": "peripheral"},
                {"mrn": V2_MRN, "date": "2026-02-20", "modality": "ultrasound", "site": "hip",
                 "side": "right", "ho": "absent"},
            ],
        )  # fmt: skip
        write_csv(
            folder,
            "bone_scans.csv",
            [
                {"mrn": V2_MRN, "date": day, "site": "knee", "side": "left", "phase": "delayed",
                 "ratio": ratio}
                for day, ratio in (("2026-03-01", 7.0), ("2026-04-01", 5.2), ("2026-05-01", 4.2),
                                   ("2026-06-01", 3.6), (V2_LATEST_SCAN, 3.3))
            ],
        )  # fmt: skip
        import_folder(engine, folder)


def plan_reminders(engine: Engine, as_of: dt.date = V2_AS_OF) -> None:
    from tracker.protocol import Protocol
    from tracker.reminders.planner import plan

    plan(engine=engine, as_of=as_of, protocol=Protocol())


def make_client_on(engine: Engine, today: dt.date) -> TestClient:
    """A client whose app believes today is `today` (pages default their as_of to it)."""
    client = make_client(engine)
    client.app.state.today = lambda: today  # type: ignore[attr-defined]
    return client
