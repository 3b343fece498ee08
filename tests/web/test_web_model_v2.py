"""Model v2 on the pages: a site without HO reads "no HO", a forecast whose date has
passed asks for a new scan (the board lists it under "rescan suggested", never as
stabilising soon), lapsed reminders stay in the patient's history and off every
worklist, and the board and FHIR export name the model and protocol behind each call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import (
    DEMO,
    SECRET,
    V2_AS_OF,
    V2_LATEST_SCAN,
    V2_MRN,
    add_role_users,
    add_v2_patient,
    api_token,
    make_client_on,
    plan_reminders,
    sign_in,
)
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.services.assessment import assess_one
from tracker.services.worklist import patient_reminders
from tracker.staging import to_json


@pytest.fixture
def v2_engine(engine: Engine) -> Engine:
    import_folder(engine, DEMO)
    add_v2_patient(engine)
    add_role_users(engine)
    plan_reminders(engine)
    return engine


@pytest.fixture
def v2_client(v2_engine: Engine) -> Iterator[TestClient]:
    with make_client_on(v2_engine, V2_AS_OF) as client:
        yield client


def _article(html: str, site_id: str) -> str:
    found = re.search(rf'<article class="site" id="{site_id}".*?</article>', html, re.S)
    assert found, f"no {site_id} on the page"
    return found.group(0)


def _section(html: str, heading_id: str) -> str:
    found = re.search(rf'<section aria-labelledby="{heading_id}">.*?</section>', html, re.S)
    assert found, f"no section {heading_id}"
    return found.group(0)


def _lapsed(engine: Engine, mrn: str = V2_MRN) -> list[dict[str, object]]:
    return [r for r in patient_reminders(engine=engine, mrn=mrn) if r["status"] == "lapsed"]


def test_a_site_without_ho_reads_no_ho_not_a_red_not_ready(v2_client: TestClient) -> None:
    sign_in(v2_client, "clinician")
    page = v2_client.get(f"/patients/{V2_MRN}").text
    hip = _article(page, "site-hip-right")
    assert 'data-readiness="not_applicable"' in hip
    heading = re.search(r"<h3>.*?</h3>", hip, re.S)
    assert heading
    assert heading.group(0) == (
        '<h3>Right hip: <span class="readiness not_applicable">no HO</span></h3>'
    )
    knee = _article(page, "site-knee-left")  # a site with HO keeps its verdict
    assert '<span class="readiness not_ready">not ready</span>' in knee


def test_the_patient_page_says_a_passed_forecast_needs_a_new_scan(
    v2_client: TestClient, v2_engine: Engine
) -> None:
    forecast = to_json(assess_one(engine=v2_engine, mrn=V2_MRN, as_of=V2_AS_OF))["sites"][1][
        "forecast"
    ]
    assert forecast["passed"] is True and forecast["date"] < V2_AS_OF.isoformat()
    sign_in(v2_client, "surgeon")
    knee = _article(v2_client.get(f"/patients/{V2_MRN}").text, "site-knee-left")
    assert "<strong>forecast date already passed: a new scan is due</strong>" in knee
    assert f"reached its target on {forecast['date']}" in knee
    assert "forecast stabilisation" not in knee  # never presented as a date to come


def test_board_lists_a_passed_forecast_under_rescan_suggested_not_as_stabilising_soon(
    v2_client: TestClient, v2_engine: Engine
) -> None:
    forecast = to_json(assess_one(engine=v2_engine, mrn=V2_MRN, as_of=V2_AS_OF))["sites"][1][
        "forecast"
    ]
    sign_in(v2_client, "surgeon")
    board = v2_client.get("/board").text  # as of the app's today
    assert f"as of {V2_AS_OF.isoformat()}" in board
    assert V2_MRN not in _section(board, "soon-h")
    rescan = _section(board, "rescan-h")
    rows = re.findall(
        r'<tr data-mrn="([^"]+)" data-site="(\w+)" data-side="(\w+)">(.*?)</tr>', rescan, re.S
    )
    mine = [cells for *key, cells in rows if tuple(key) == (V2_MRN, "knee", "left")]
    assert len(mine) == 1
    assert f'data-field="latest_scan">{V2_LATEST_SCAN}</td>' in mine[0]
    assert f'data-field="forecast_date">{forecast["date"]} ' in mine[0]
    for mrn, site, side, _ in rows:  # every site listed there has a passed forecast
        shown = to_json(assess_one(engine=v2_engine, mrn=mrn, as_of=V2_AS_OF))["sites"]
        here = [s for s in shown if (s["site"], s["side"]) == (site, side)]
        assert [s["forecast"]["passed"] for s in here] == [True]


def test_board_groups_sites_without_ho_after_those_with_ho_as_no_ho(
    v2_client: TestClient,
) -> None:
    sign_in(v2_client, "surgeon")
    every = _section(v2_client.get("/board").text, "all-h")
    verdicts = re.findall(r'data-readiness="(\w+)"><td>', every)
    assert "not_applicable" in verdicts and "not_ready" in verdicts
    first_no_ho = verdicts.index("not_applicable")
    assert set(verdicts[first_no_ho:]) == {"not_applicable"}  # HO sites first, then no HO
    no_ho = '<td class="readiness not_applicable" data-label="Readiness">no HO</td>'
    assert every.count(no_ho) == len(verdicts[first_no_ho:])


def test_lapsed_reminders_show_in_the_patient_history_and_never_on_the_worklist(
    v2_client: TestClient, v2_engine: Engine
) -> None:
    lapsed = _lapsed(v2_engine)
    assert {r["rule"] for r in lapsed} >= {"consider_prophylaxis", "monitoring_radiograph"}
    sign_in(v2_client, "clinician")
    history = _section(v2_client.get(f"/patients/{V2_MRN}").text, "rem-h")
    rows = re.findall(r'<tr class="reminder lapsed" data-status="lapsed">(.*?)</tr>', history, re.S)
    assert len(rows) == len(lapsed)
    for row in rows:
        assert (
            '<td class="reminder-status"><strong>lapsed</strong> — '
            "long past when first planned, not sent</td>"
        ) in row
        assert "Record it" not in row and "Acknowledge" not in row
    worklist_page = v2_client.get("/worklist").text
    assert V2_MRN not in worklist_page  # all of V-PASSED's reminders lapsed
    token = api_token(v2_engine, "clinician")
    listed = v2_client.get("/api/v1/reminders", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    assert {r["id"] for r in listed.json()}.isdisjoint({r["id"] for r in lapsed})
    assert listed.json() and {r["status"] for r in listed.json()} <= {"pending", "due", "sent"}


def test_board_overdue_list_leaves_lapsed_reminders_out(v2_engine: Engine) -> None:
    from tracker.services.reports import board_report

    board = board_report(engine=v2_engine, as_of=V2_AS_OF)
    assert board.reminders, "the demo has overdue reminders on this day"
    assert {m.status for m in board.reminders} <= {"pending", "due", "sent"}
    lapsed = {(r["rule"], r["due"]) for r in _lapsed(v2_engine)}
    assert not [m for m in board.reminders if m.mrn == V2_MRN and (m.rule, m.due) in lapsed]


def test_board_names_the_model_and_protocol_that_made_its_calls(
    v2_client: TestClient,
) -> None:
    sign_in(v2_client, "surgeon")
    board = v2_client.get("/board").text
    assert '<span data-field="model_version">2</span>' in board
    fingerprint = Protocol().fingerprint
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", fingerprint)
    assert f'<code data-field="protocol_fingerprint">{fingerprint}</code>' in board


def test_fhir_stage_components_name_the_model_and_the_protocol_in_effect(
    v2_engine: Engine, tmp_path: Path
) -> None:
    """The export under a clinic's own protocol carries that protocol's fingerprint on
    every derived stage; the Bundle stays valid FHIR and imports back."""
    from fhir.resources.R4B.bundle import Bundle

    from tracker.config import Settings
    from tracker.interchange.fhir_export import MODEL_VERSION_EXT, PROTOCOL_FINGERPRINT_EXT
    from tracker.protocol import load_protocol
    from tracker.web.app import create_app

    clinic = tmp_path / "clinic.toml"
    clinic.write_text("[activity]\ntolerance = 0.12\n", encoding="utf-8")
    expected = load_protocol(clinic).fingerprint
    assert expected != Protocol().fingerprint
    app = create_app(
        Settings(database_url=str(v2_engine.url), protocol_file=clinic), v2_engine, secret=SECRET
    )
    with TestClient(app, follow_redirects=False) as client:
        token = api_token(v2_engine, "surgeon")
        response = client.get(
            "/fhir/Patient/H-MATURE/$everything", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    bundle = response.json()
    Bundle.model_validate(bundle)
    stages = [
        component
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Observation"
        for component in entry["resource"].get("component", [])
        if component["code"]["coding"][0]["code"] == "stage"
    ]
    assert len(stages) >= 3
    for stage in stages:
        assert stage["extension"] == [
            {"url": MODEL_VERSION_EXT, "valueInteger": 2},
            {"url": PROTOCOL_FINGERPRINT_EXT, "valueString": expected},
        ]
    from tests.conftest import count_rows
    from tracker.services.interop import import_fhir
    from tracker.store import database

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    target = database.make_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    database.upgrade(target)
    summary = import_fhir(engine=target, path=path)
    assert summary.total_added > 0
    assert count_rows(target)["site_finding"] == len(stages)
    target.dispose()


def test_patients_can_be_filtered_to_sites_without_ho(v2_client: TestClient) -> None:
    sign_in(v2_client, "surgeon")
    page = v2_client.get("/patients", params={"q": V2_MRN, "readiness": "not_applicable"})
    assert page.status_code == 200
    assert '<option value="not_applicable" selected>no HO</option>' in page.text
    assert "right hip: none, no HO<br>left knee: mineralising, not ready" in page.text
