"""Imaging reminders out as FHIR R4 ServiceRequests (issue 17, item 4): proposals in
the shape of the IHE IDR recommendation, active while open, completed (naming the
study) once the planner's check finds the record, revoked when cancelled."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tests.web.web_support import add_role_users, api_token, make_client
from tracker.interchange import fhir_codes as codes
from tracker.interchange import fhir_requests
from tracker.interchange.csv_import import import_folder
from tracker.interchange.fhir_export import resource_id
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.services.interop import fhir_bundle, fhir_service_requests, import_fhir

PROTOCOL = Protocol()
INJURED = "2026-01-01"
FIRST_FILM = "2026-03-02"  # early HO of the right hip: monitoring due 42 days later
SECOND_FILM = "2026-04-10"  # the radiograph that satisfies it
MONITOR_DUE = "2026-04-13"


def _import(engine: Engine, folder: Path, imaging: list[dict[str, Any]]) -> None:
    write_csv(folder, "patients.csv", [{"mrn": "P1", "family_name": "Okafor"}, {"mrn": "P2"}])
    write_csv(
        folder,
        "injuries.csv",
        [{"mrn": "P1", "kind": "spinal_cord_injury", "date": INJURED}],
    )
    rows = [
        {"mrn": "P1", "modality": "radiograph", "site": "hip", "side": "right", "ho": "present"}
        | row
        for row in imaging
    ]
    if rows:
        write_csv(folder, "imaging.csv", rows)
    import_folder(engine, folder)


def _plan(engine: Engine, day: str) -> None:
    plan(engine=engine, as_of=dt.date.fromisoformat(day), protocol=PROTOCOL)


@pytest.fixture
def history(engine: Engine, tmp_path: Path) -> Engine:
    """P1: a spinal cord injury, screened before HO was seen (the screens then
    cancelled by it), a first radiograph showing early HO of the right hip, and the
    monitoring radiograph it asked for on 10 Apr."""
    _import(engine, tmp_path / "a", [])
    _plan(engine, "2026-01-25")  # screens from day 21, and consider_prophylaxis
    _import(engine, tmp_path / "b", [{"date": FIRST_FILM, "accession": "A1"}])
    _plan(engine, "2026-03-10")  # HO seen: screens cancelled, monitoring due 13 Apr
    _import(engine, tmp_path / "c", [{"date": SECOND_FILM, "accession": "A2"}])
    _plan(engine, "2026-04-12")  # the 10 Apr radiograph satisfies it; the next is due
    return engine


def _stored(engine: Engine) -> dict[tuple[str, str], str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT rule, due, status FROM reminder")).all()
    return {(rule, str(due)): status for rule, due, status in rows}


def _requests(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The bundle's ServiceRequests by rule and due date ('monitoring_radiograph 2026-04-13')."""
    found = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "ServiceRequest":
            rule = resource["reasonCode"][0]["coding"][0]["code"]
            due = resource["extension"][0]["valueDate"]
            found[f"{rule} {due}"] = resource
    return found


def _study_id(accession: str, date: str) -> str:
    return resource_id("ImagingStudy", "P1", date, "radiograph", accession)


def test_an_open_monitoring_reminder_is_an_active_proposal_for_a_radiograph_of_the_site(
    engine: Engine, tmp_path: Path
) -> None:
    _import(engine, tmp_path, [{"date": FIRST_FILM, "accession": "A1"}])
    _plan(engine, "2026-03-10")
    assert _stored(engine)[("monitoring_radiograph", MONITOR_DUE)] == "pending"
    requests = _requests(fhir_bundle(engine=engine, mrn="P1"))
    request = requests[f"monitoring_radiograph {MONITOR_DUE}"]
    assert request["status"] == "active"
    assert request["intent"] == "proposal"
    assert request["code"]["coding"] == [
        codes.coding(codes.MODALITY, "radiograph", "radiograph"),
        codes.coding(codes.DICOM, "DX"),
    ]
    assert request["code"]["text"] == "radiograph or CT of the right hip"
    (site,) = request["bodySite"]
    assert site["coding"][0]["code"] == "hip"
    laterality = site["extension"][0]["valueCodeableConcept"]["coding"]
    assert laterality[1] == codes.coding(codes.SNOMED, "24028007", "Right")
    # any radiograph or CT after the first one counts: from the day after it, open-ended
    assert request["occurrencePeriod"] == {"start": "2026-03-03"}
    reason = request["reasonCode"][0]
    assert reason["coding"][0]["system"] == codes.REMINDER_RULE
    assert reason["text"] == f"monitoring radiograph: latest radiograph or CT {FIRST_FILM}"
    assert request["subject"] == {"reference": f"urn:uuid:{resource_id('Patient', 'P1')}"}
    with engine.connect() as conn:
        reminder_id = conn.execute(
            sa.text("SELECT id FROM reminder WHERE rule = 'monitoring_radiograph'")
        ).scalar_one()
    assert request["identifier"] == [
        {"system": fhir_requests.REMINDER_SYSTEM, "value": str(reminder_id)}
    ]
    assert dt.datetime.fromisoformat(request["authoredOn"]).tzinfo is not None
    assert "supportingInfo" not in request


def test_the_radiograph_that_satisfies_it_completes_the_request_and_is_named(
    history: Engine,
) -> None:
    stored = _stored(history)
    assert stored[("monitoring_radiograph", MONITOR_DUE)] == "satisfied"
    requests = _requests(fhir_bundle(engine=history, mrn="P1"))
    done = requests[f"monitoring_radiograph {MONITOR_DUE}"]
    assert done["status"] == "completed"
    assert done["supportingInfo"] == [{"reference": f"urn:uuid:{_study_id('A2', SECOND_FILM)}"}]
    studies = [
        e["resource"]["id"]
        for e in fhir_bundle(engine=history, mrn="P1")["entry"]
        if e["resource"]["resourceType"] == "ImagingStudy"
    ]
    assert _study_id("A2", SECOND_FILM) in studies  # the reference resolves in the Bundle
    following = requests["monitoring_radiograph 2026-05-22"]  # 42 days after 10 Apr
    assert following["status"] == "active"
    assert following["occurrencePeriod"] == {"start": "2026-04-11"}
    assert "supportingInfo" not in following


def test_screens_cancelled_by_ho_evidence_are_revoked_and_non_imaging_reminders_left_out(
    history: Engine,
) -> None:
    stored = _stored(history)
    screens = {due: s for (rule, due), s in stored.items() if rule == "hip_ultrasound_screen"}
    assert screens and set(screens.values()) == {"cancelled"}
    assert ("consider_prophylaxis", "2026-01-15") in stored
    requests = _requests(fhir_bundle(engine=history, mrn="P1"))
    assert {k.split()[0] for k in requests} == {"hip_ultrasound_screen", "monitoring_radiograph"}
    for due in screens:
        screen = requests[f"hip_ultrasound_screen {due}"]
        assert screen["status"] == "revoked"
        assert screen["extension"][1] == {
            "url": fhir_requests.STATUS_EXT,
            "valueCode": "cancelled",
        }
        assert screen["note"][0]["text"]  # the planner's reason, kept
        # an ultrasound of either hip within 7 days either side of the due date
        day = dt.date.fromisoformat(due)
        assert screen["occurrencePeriod"] == {
            "start": str(day - dt.timedelta(days=7)),
            "end": str(day + dt.timedelta(days=7)),
        }
        assert screen["code"]["coding"][1] == codes.coding(codes.DICOM, "US")
        assert [s["text"] for s in screen["bodySite"]] == ["hip left", "hip right"]


def test_every_service_request_is_valid_fhir_and_the_bundle_holds_them_as_built(
    history: Engine,
) -> None:
    bundle = fhir_bundle(engine=history)
    requests = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert len(requests) == len(_requests(bundle)) >= 3
    model = get_fhir_model_class("ServiceRequest")
    for resource in requests:
        assert model.model_validate(resource).model_dump(mode="json", exclude_none=True) == resource


def test_the_search_route_filters_by_status(history: Engine) -> None:
    add_role_users(history)
    token = {"Authorization": f"Bearer {api_token(history, 'clinician')}"}
    with make_client(history) as client:
        every = client.get("/fhir/ServiceRequest?patient=P1", headers=token)
        active = client.get("/fhir/ServiceRequest?patient=P1&status=active", headers=token)
        closed = client.get(
            "/fhir/ServiceRequest", params={"patient": "P1", "status": "completed,revoked"},
            headers=token,
        )  # fmt: skip
        other = client.get("/fhir/ServiceRequest?patient=P2&status=active", headers=token)
    assert every.headers["content-type"].startswith("application/fhir+json")
    everything = every.json()
    assert everything["type"] == "searchset"
    statuses = sorted(e["resource"]["status"] for e in everything["entry"])
    assert "active" in statuses and "completed" in statuses and "revoked" in statuses
    assert [e["resource"]["status"] for e in active.json()["entry"]] == ["active"]
    assert active.json()["total"] == 1
    assert sorted(e["resource"]["status"] for e in closed.json()["entry"]) == [
        s for s in statuses if s != "active"
    ]
    assert other.status_code == 200 and other.json()["total"] == 0
    bundle, shown = fhir_service_requests(engine=history, mrn="P1", statuses=["active"])
    assert active.json() == bundle and shown == ["P1"]


def test_the_search_route_refuses_a_bad_status_an_unknown_patient_and_no_credentials(
    history: Engine,
) -> None:
    add_role_users(history)
    token = {"Authorization": f"Bearer {api_token(history, 'surgeon')}"}
    with make_client(history) as client:
        bad = client.get("/fhir/ServiceRequest?patient=P1&status=active,open", headers=token)
        nobody = client.get("/fhir/ServiceRequest?patient=NOBODY", headers=token)
        everyone = client.get("/fhir/ServiceRequest?status=active", headers=token)
        anonymous = client.get("/fhir/ServiceRequest?patient=P1")
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    words = bad.json()["issue"][0]["diagnostics"]
    assert "status parameter" in words and "'open'" in words
    assert nobody.status_code == 404 and nobody.json()["resourceType"] == "OperationOutcome"
    # without a patient: every patient's, and a view logged for each patient shown
    assert everyone.status_code == 200 and everyone.json()["total"] == 1
    with history.connect() as conn:
        views = conn.execute(
            sa.text("SELECT mrn FROM audit_event WHERE action = 'view' ORDER BY mrn")
        ).scalars()
        assert list(views) == ["P1"]
    assert anonymous.status_code == 401 and "Okafor" not in anonymous.text


def test_a_bundle_with_service_requests_imports_its_records_and_skips_them(
    history: Engine, tmp_path: Path
) -> None:
    from tracker.store import database

    bundle = fhir_bundle(engine=history)
    assert _requests(bundle)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    target = database.make_engine(f"sqlite:///{tmp_path / 'target.db'}")
    database.upgrade(target)
    summary = import_fhir(engine=target, path=path)
    assert summary.added["imaging.csv"] == 2
    assert count_rows(target) == count_rows(history)
    with target.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reminder")).scalar_one() == 0
    target.dispose()


@pytest.mark.parametrize("rule", ["hip_ultrasound_screen", "recurrence_radiograph"])
def test_the_period_is_the_window_the_planners_check_accepts(rule: str) -> None:
    """A record on each edge of occurrencePeriod satisfies the reminder by the planner's
    own check; a record a day outside it does not."""
    import pandas as pd

    from tracker.interchange import csv_format as fmt
    from tracker.reminders.rules import day_number, from_day_number

    resected, due = dt.date(2026, 1, 1), dt.date(2026, 4, 2)  # recurrence checkpoint 91
    span = fhir_requests.window(rule, day_number(due), day_number(resected), PROTOCOL.reminders)
    assert span is not None and span[1] is not None
    first, last = from_day_number(span[0]), from_day_number(span[1])
    modality = "ultrasound" if rule == "hip_ultrasound_screen" else "radiograph"
    days = [first - dt.timedelta(days=1), first, last, last + dt.timedelta(days=1)]
    verdicts = []
    for day in days:
        finding = {c.name: "" for c in fmt.IMAGING.columns} | {
            "mrn": "P1", "date": day.isoformat(), "modality": modality, "site": "hip",
            "side": "right", "ho": "absent",
        }  # fmt: skip
        resection = {c.name: "" for c in fmt.PROCEDURES.columns} | {
            "mrn": "P1", "kind": "resection", "date": resected.isoformat(), "site": "hip",
            "side": "right",
        }  # fmt: skip
        frames = {
            fmt.IMAGING.name: pd.DataFrame([finding], dtype=object),
            fmt.BONE_SCANS.name: pd.DataFrame(columns=[c.name for c in fmt.BONE_SCANS.columns]),
            fmt.PROCEDURES.name: pd.DataFrame([resection], dtype=object),
        }
        site = (None, None) if rule == "hip_ultrasound_screen" else ("hip", "right")
        reminder = pd.DataFrame(
            [{"mrn": "P1", "rule": rule, "site": site[0], "side": site[1], "due": due}]
        )
        found = fhir_requests.satisfying_records(reminder, frames, dt.date(2027, 1, 1), PROTOCOL)
        verdicts.append(found[0] is not None)
    assert verdicts == [False, True, True, False]


def _frames(imaging: list[dict[str, str]], scans: list[dict[str, str]]) -> dict[str, Any]:
    import pandas as pd

    from tracker.interchange import csv_format as fmt

    def frame(file: fmt.FileFormat, rows: list[dict[str, str]]) -> pd.DataFrame:
        blank = {c.name: "" for c in file.columns}
        return pd.DataFrame([blank | {"mrn": "P1"} | r for r in rows], columns=list(blank))

    return {
        fmt.IMAGING.name: frame(fmt.IMAGING, imaging),
        fmt.BONE_SCANS.name: frame(fmt.BONE_SCANS, scans),
        fmt.PROCEDURES.name: frame(fmt.PROCEDURES, []),
    }


def _satisfied_by(rule: str, site: str | None, due: str, frames: dict[str, Any]) -> Any:
    import pandas as pd

    side = "right" if site else None
    reminder = pd.DataFrame(
        [{"mrn": "P1", "rule": rule, "site": site, "side": side, "due": dt.date.fromisoformat(due)}]
    )
    return fhir_requests.satisfying_records(reminder, frames, dt.date(2027, 1, 1), PROTOCOL)[0]


def test_a_maturity_scan_is_satisfied_by_the_first_delayed_phase_scan_after_the_last() -> None:
    site = {"site": "hip", "side": "right"}
    scans = [
        {"date": "2026-01-10", "phase": "delayed", "ratio": "3.1"} | site,  # counted from
        {"date": "2026-03-01", "phase": "blood_pool", "ratio": "2.0"} | site,  # not delayed
        {"date": "2026-04-20", "phase": "delayed", "ratio": "2.5"} | site,  # the one
        {"date": "2026-06-01", "phase": "delayed", "ratio": "2.2"} | site,  # later still
    ]
    due = "2026-04-10"  # 90 days after 10 Jan
    assert _satisfied_by("maturity_bone_scan", "hip", due, _frames([], scans)) == ("bone_scan", 2)
    assert _satisfied_by("maturity_bone_scan", "hip", due, _frames([], scans[:2])) is None


def test_a_post_course_radiograph_counts_at_a_site_with_ho_evidence_only() -> None:
    seen = {"date": "2026-01-05", "modality": "ultrasound", "site": "hip", "side": "right"}
    knee = {"date": "2026-05-01", "modality": "radiograph", "site": "knee", "side": "left"}
    hip = {"date": "2026-05-03", "modality": "ct", "site": "hip", "side": "right"}
    imaging = [seen | {"ho": "present"}, knee | {"ho": "absent"}, hip | {"ho": "absent"}]
    due = "2026-06-01"  # 56 days after a course that ended 6 Apr
    assert _satisfied_by("post_course_radiograph", None, due, _frames(imaging, [])) == (
        "imaging",
        2,
    )
    assert _satisfied_by("post_course_radiograph", None, due, _frames(imaging[:2], [])) is None
