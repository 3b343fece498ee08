"""The worklist follows the record (model-spec section 9, v2): storing, correcting or
voiding a record through a form or the API re-plans that patient's reminders in the
same request, so the reminder the record satisfies is closed before the response and
the one a void reopens is open again. A bulk import waits for the next plan run."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.reminders.reminder_support import add_patient, lite, reminders  # noqa: F401
from tests.web.web_support import add_role_users, api_token, csrf_in, make_client, sign_in
from tracker.config import Settings
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders import planner
from tracker.reminders.delivery import clinic_day
from tracker.reminders.planner import plan
from tracker.services.worklist import every_row
from tracker.store.models import utcnow
from tracker.web.app import create_app

PROTOCOL = Protocol()
TODAY = dt.date.today()  # the services refuse record dates after the server's today
FOUND = TODAY - dt.timedelta(days=50)  # the hip's first (ultrasound) evidence
MONITOR_DUE = FOUND + dt.timedelta(days=42)  # its monitoring radiograph: 8 days ago


def clinic_today() -> dt.date:
    return clinic_day(utcnow(), PROTOCOL.reminders)


@pytest.fixture
def clinic(lite: Engine) -> Engine:  # noqa: F811
    """An early right hip found on ultrasound 50 days ago, planned this morning: its
    monitoring radiograph is due (8 days overdue) and on the worklist."""
    add_role_users(lite)
    injured = (TODAY - dt.timedelta(days=100)).isoformat()
    add_patient(
        lite, "E1", injuries=[{"kind": "spinal_cord_injury", "d": injured}],
        findings=[{"date": FOUND.isoformat(), "modality": "ultrasound", "ho": "present"}],
    )  # fmt: skip
    plan(engine=lite, as_of=clinic_today(), protocol=PROTOCOL)
    assert monitoring(lite) == {MONITOR_DUE: "due"}
    return lite


@pytest.fixture
def client(clinic: Engine) -> Iterator[TestClient]:
    with make_client(clinic) as test_client:
        yield test_client


def monitoring(engine: Engine) -> dict[dt.date, str]:
    rows = reminders(engine)
    return {r["due"]: r["status"] for r in rows if r["rule"] == "monitoring_radiograph"}


def on_worklist(engine: Engine) -> set[tuple[str, dt.date]]:
    return {(r["rule"], r["due"]) for r in every_row(engine=engine, today=TODAY)}


def radiograph_form(site: str = "hip") -> dict[str, str]:
    return {
        "date": TODAY.isoformat(), "modality": "radiograph", "save": "1",
        "findings[0].site": site, "findings[0].side": "right", "findings[0].ho": "present",
        "findings[0].calcification": "peripheral",
    }  # fmt: skip


def study_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT max(id) FROM imaging_study WHERE modality = 'radiograph'")
            ).scalar_one()
        )


def form_post(client: TestClient, url: str, form_url: str, values: dict[str, str]) -> Any:
    page = client.get(form_url)
    assert page.status_code == 200, page.text
    version = re.search(r'name="version" value="(\d+)"', page.text)
    extra = {"version": version.group(1)} if version else {}
    return client.post(url, data={**values, **extra, "csrf_token": csrf_in(page.text)})


def test_saving_the_radiograph_closes_its_reminder_at_once(
    client: TestClient, clinic: Engine
) -> None:
    sign_in(client, "clinician")
    assert ("monitoring_radiograph", MONITOR_DUE) in on_worklist(clinic)
    assert MONITOR_DUE.isoformat() in client.get("/worklist").text
    saved = form_post(client, "/patients/E1/imaging/new", "/patients/E1/imaging/new",
                      radiograph_form())  # fmt: skip
    assert saved.status_code == 303, saved.text
    # closed in the request that stored the radiograph, not by the next hourly plan
    next_one = TODAY + dt.timedelta(days=42)  # 42 days after the latest radiograph
    assert monitoring(clinic) == {MONITOR_DUE: "satisfied", next_one: "pending"}
    assert ("monitoring_radiograph", MONITOR_DUE) not in on_worklist(clinic)
    page = client.get("/worklist")  # the next page load
    assert page.status_code == 200 and MONITOR_DUE.isoformat() not in page.text

    # voided from its correction form (wrong patient): the reminder is open again
    study = study_id(clinic)
    voided = form_post(
        client, f"/patients/E1/imaging/{study}/void", f"/patients/E1/imaging/{study}/edit",
        {"reason": "recorded for the wrong patient"},
    )  # fmt: skip
    assert voided.status_code == 303, voided.text
    assert monitoring(clinic) == {MONITOR_DUE: "due", next_one: "cancelled"}
    assert ("monitoring_radiograph", MONITOR_DUE) in on_worklist(clinic)


def test_correcting_the_radiograph_to_another_site_reopens_the_hip_reminder(
    client: TestClient, clinic: Engine
) -> None:
    sign_in(client, "clinician")
    form_post(client, "/patients/E1/imaging/new", "/patients/E1/imaging/new", radiograph_form())
    assert monitoring(clinic)[MONITOR_DUE] == "satisfied"
    study = study_id(clinic)
    with clinic.connect() as conn:
        finding = conn.execute(
            sa.text("SELECT id FROM site_finding WHERE study_id = :s"), {"s": study}
        ).scalar_one()
    corrected = form_post(
        client, f"/patients/E1/imaging/{study}/edit", f"/patients/E1/imaging/{study}/edit",
        {**radiograph_form(site="knee"), "findings[0].id": str(finding)},
    )  # fmt: skip
    assert corrected.status_code == 303, corrected.text
    # the radiograph was of the knee: the hip still needs one; the knee is watched now
    hip = {(r["site"], r["due"]): r["status"] for r in reminders(clinic)
           if r["rule"] == "monitoring_radiograph"}  # fmt: skip
    assert hip[("hip", MONITOR_DUE)] == "due"
    assert hip[("knee", TODAY + dt.timedelta(days=42))] == "pending"
    assert hip[("hip", TODAY + dt.timedelta(days=42))] == "cancelled"


def test_saving_through_the_api_closes_the_reminder_and_a_void_reopens_it(
    client: TestClient, clinic: Engine
) -> None:
    auth = {"Authorization": f"Bearer {api_token(clinic, 'clinician')}"}
    body = {
        "date": TODAY.isoformat(), "modality": "radiograph",
        "findings": [{"site": "hip", "side": "right", "ho": "present"}],
    }  # fmt: skip
    saved = client.post("/api/v1/patients/E1/imaging", json=body, headers=auth)
    assert saved.status_code == 201, saved.text
    listed = client.get("/api/v1/reminders", headers=auth).json()
    assert MONITOR_DUE.isoformat() not in {r["due"] for r in listed}
    assert monitoring(clinic)[MONITOR_DUE] == "satisfied"

    voided = client.post(
        f"/api/v1/records/imaging/{saved.json()['id']}/void",
        json={"reason": "duplicate of another study", "version": 1}, headers=auth,
    )  # fmt: skip
    assert voided.status_code == 200, voided.text
    listed = client.get("/api/v1/reminders", headers=auth).json()
    assert [(r["rule"], r["due"], r["status"]) for r in listed] == [
        ("monitoring_radiograph", MONITOR_DUE.isoformat(), "due")
    ]


def test_a_prophylaxis_course_started_through_the_api_closes_its_reminder(lite: Engine) -> None:  # noqa: F811
    add_role_users(lite)
    injured = TODAY - dt.timedelta(days=20)
    add_patient(lite, "N1", injuries=[{"kind": "traumatic_brain_injury", "d": injured.isoformat()}])
    plan(engine=lite, as_of=clinic_today(), protocol=PROTOCOL)
    prophylaxis = [r for r in reminders(lite) if r["rule"] == "consider_prophylaxis"]
    assert [r["status"] for r in prophylaxis] == ["due"]
    with make_client(lite) as client:
        auth = {"Authorization": f"Bearer {api_token(lite, 'clinician')}"}
        started = client.post(
            "/api/v1/patients/N1/courses",
            json={"agent": "indomethacin", "intent": "prophylaxis",
                  "start_date": TODAY.isoformat(), "planned_weeks": 6},
            headers=auth,
        )  # fmt: skip
        assert started.status_code == 201, started.text
    rows = {r["rule"]: r["status"] for r in reminders(lite)}
    assert rows["consider_prophylaxis"] == "satisfied"
    assert rows["course_review"] == "pending"  # the new course's planned end, planned at once


def test_the_replan_uses_the_apps_clinic_protocol(clinic: Engine, tmp_path: Path) -> None:
    protocol_file = tmp_path / "clinic.toml"
    protocol_file.write_text("[reminders.monitoring_radiograph]\nafter_days = 28\n")
    settings = Settings(database_url=str(clinic.url), protocol_file=protocol_file)
    app = create_app(settings, clinic, secret="k" * 48)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        auth = {"Authorization": f"Bearer {api_token(clinic, 'clinician')}"}
        body = {"date": TODAY.isoformat(), "modality": "radiograph",
                "findings": [{"site": "hip", "side": "right", "ho": "present"}]}  # fmt: skip
        saved = client.post("/api/v1/patients/E1/imaging", json=body, headers=auth)
        assert saved.status_code == 201, saved.text
    assert monitoring(clinic)[TODAY + dt.timedelta(days=28)] == "pending"


def test_a_failed_replan_keeps_the_saved_record_and_is_logged(
    client: TestClient, clinic: Engine, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def broken(**_: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(planner, "plan_patient", broken)
    auth = {"Authorization": f"Bearer {api_token(clinic, 'clinician')}"}
    body = {"date": TODAY.isoformat(), "modality": "radiograph",
            "findings": [{"site": "hip", "side": "right", "ho": "present"}]}  # fmt: skip
    with caplog.at_level("ERROR", logger="tracker.records"):
        saved = client.post("/api/v1/patients/E1/imaging", json=body, headers=auth)
    assert saved.status_code == 201, saved.text
    assert "reminders of E1 not re-planned" in caplog.text
    assert monitoring(clinic)[MONITOR_DUE] == "due"  # the next plan run closes it
    plan(engine=clinic, as_of=clinic_today(), protocol=PROTOCOL)
    assert monitoring(clinic)[MONITOR_DUE] == "satisfied"


def test_a_bulk_import_is_planned_by_the_next_plan_run(clinic: Engine, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "csv", "imaging.csv",
        [{"mrn": "E1", "date": TODAY.isoformat(), "modality": "radiograph", "site": "hip",
          "side": "right", "ho": "present"}],
    )  # fmt: skip
    import_folder(clinic, tmp_path / "csv")
    assert monitoring(clinic) == {MONITOR_DUE: "due"}  # not re-planned by the import
    plan(engine=clinic, as_of=clinic_today(), protocol=PROTOCOL)
    assert monitoring(clinic)[MONITOR_DUE] == "satisfied"
