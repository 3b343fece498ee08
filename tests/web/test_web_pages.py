"""Pages and API behaviour: sign-in, CSRF, rate limit, audit of views, forms that
keep what was typed, the version check, and 422s with field paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import (
    PASSWORD,
    api_token,
    csrf_in,
    sign_in,
)


def test_session_cookie_is_httponly_and_samesite(client: TestClient) -> None:
    page = client.get("/signin")
    response = client.post(
        "/signin",
        data={"username": "clinician", "password": PASSWORD, "csrf_token": csrf_in(page.text)},
    )
    cookie = response.headers["set-cookie"].lower()
    assert "ho_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/worklist").status_code == 200


def test_wrong_password_is_refused_with_a_sentence(client: TestClient) -> None:
    page = client.get("/signin")
    response = client.post(
        "/signin",
        data={"username": "clinician", "password": "nope", "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 401
    assert "do not match" in response.text
    assert 'value="clinician"' in response.text  # what was typed is kept


def test_sign_in_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/signin")
    response = client.post("/signin", data={"username": "clinician", "password": PASSWORD})
    assert response.status_code == 403


def test_repeated_failed_sign_ins_are_delayed_even_with_the_right_password(
    client: TestClient,
) -> None:
    from tracker.web.auth import NAME_FREE_FAILURES

    for _ in range(NAME_FREE_FAILURES + 1):  # the free failures, then one that costs a wait
        page = client.get("/signin")
        client.post(
            "/signin",
            data={"username": "surgeon", "password": "wrong", "csrf_token": csrf_in(page.text)},
        )
    page = client.get("/signin")
    response = client.post(
        "/signin",
        data={"username": "surgeon", "password": PASSWORD, "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    assert int(response.headers["retry-after"]) >= 1  # seconds, never a 15-minute lockout


def test_a_form_post_without_the_session_csrf_token_is_refused(client: TestClient) -> None:
    sign_in(client, "clinician")
    response = client.post(
        "/patients/H-READY/labs/new",
        data={"date": "2026-01-05", "analyte": "alp", "value": "90", "unit": "U/L"},
    )
    assert response.status_code == 403
    assert "security token" in response.text


def test_patient_page_shows_criteria_and_evidence_and_is_audited(
    client: TestClient, demo_engine: Engine
) -> None:
    from tracker.services.audit import audit_trail

    sign_in(client, "surgeon")
    page = client.get("/patients/H-READY?as_of=2026-10-31")
    assert page.status_code == 200
    assert "radiographic maturity" in page.text and "scan stabilised" in page.text
    assert 'data-readiness="ready"' in page.text
    views = [e for e in audit_trail(engine=demo_engine, mrn="H-READY") if e.action == "view"]
    assert views and views[0].username == "surgeon"


def test_patient_list_filters_live_in_the_url(client: TestClient) -> None:
    sign_in(client, "clinician")
    page = client.get("/patients?readiness=ready")
    assert page.status_code == 200
    assert "H-READY" in page.text and "H-FOP" not in page.text
    assert "H-FOP" in client.get("/patients?flag=genetic_ho").text
    refused = client.get("/patients?stage=ripe")
    assert refused.status_code == 422 and "stage" in refused.text


def test_unknown_patient_is_a_404_page_and_api_answer(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    assert client.get("/patients/NOBODY").status_code == 404
    token = api_token(demo_engine, "clinician")
    answer = client.get("/api/v1/patients/NOBODY", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 404 and "NOBODY" in answer.json()["detail"]


def test_impossible_lab_is_refused_in_place_keeping_what_was_typed(client: TestClient) -> None:
    sign_in(client, "clinician")
    form = client.get("/patients/H-READY/labs/new")
    response = client.post(
        "/patients/H-READY/labs/new",
        data={
            "csrf_token": csrf_in(form.text),
            "date": "1900-01-01",  # before the patient was born
            "analyte": "alp",
            "value": "123.5",
            "unit": "U/L",
        },
    )
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert 'value="123.5"' in response.text and 'value="U/L"' in response.text
    assert re.search(r'id="f-date-err">[^<]*birth', response.text), response.text[-3000:]


def test_imaging_study_with_two_sites_is_saved_and_shown(client: TestClient) -> None:
    sign_in(client, "clinician")
    form = client.get("/patients/H-READY/imaging/new")
    response = client.post(
        "/patients/H-READY/imaging/new",
        data={
            "csrf_token": csrf_in(form.text),
            "date": "2026-09-01",
            "modality": "radiograph",
            "findings[0].site": "knee",
            "findings[0].side": "left",
            "findings[0].ho": "present",
            "findings[0].calcification": "zonal",
            "findings[1].site": "elbow",
            "findings[1].side": "right",
            "findings[1].ho": "present",
            "save": "1",
        },
    )
    assert response.status_code == 303, response.text
    page = client.get("/patients/H-READY?as_of=2026-10-31")
    assert 'id="site-knee-left"' in page.text and 'id="site-elbow-right"' in page.text


def test_the_second_of_two_concurrent_corrections_is_refused(
    client: TestClient, demo_engine: Engine
) -> None:
    from tracker.services.patients import patient_story

    sign_in(client, "clinician")
    story, _ = patient_story(engine=demo_engine, mrn="H-READY")
    lab = story.labs[0]
    url = f"/patients/H-READY/labs/{lab.id}/edit"
    first = client.get(url)
    second = client.get(url)
    values = {
        "date": lab.date.isoformat(),
        "analyte": lab.analyte,
        "unit": lab.unit,
        "save": "1",
    }
    token, version = csrf_in(first.text), re.search(r'name="version" value="(\d+)"', first.text)
    assert version
    ok = client.post(url, data={**values, "value": "77", "csrf_token": token,
                                "version": version.group(1)})  # fmt: skip
    assert ok.status_code == 303, ok.text
    late = client.post(url, data={**values, "value": "88", "csrf_token": csrf_in(second.text),
                                  "version": version.group(1)})  # fmt: skip
    assert late.status_code == 409
    assert "reload" in late.text.lower()
    assert 'value="88"' in late.text  # the refused change is still on screen to re-apply


def test_api_refuses_impossible_values_with_field_paths(
    client: TestClient, demo_engine: Engine
) -> None:
    token = api_token(demo_engine, "clinician")
    auth = {"Authorization": f"Bearer {token}"}
    typed = client.post(
        "/api/v1/patients/H-READY/imaging",
        json={"date": "2026-01-01", "modality": "radiograph",
              "findings": [{"site": "hip", "side": "left", "ho": "present", "brooker": 7}]},
        headers=auth,
    )  # fmt: skip
    assert typed.status_code == 422
    assert typed.json()["detail"][0]["loc"] == ["body", "findings", 0, "brooker"]
    course = client.post(
        "/api/v1/patients/H-READY/courses",
        json={"agent": "indomethacin", "intent": "prophylaxis", "start_date": "1850-01-01"},
        headers=auth,
    )
    assert course.status_code == 422
    assert any("start_date" in e["loc"] for e in course.json()["detail"])


def test_api_assessment_equals_the_cli_json(client: TestClient, demo_engine: Engine) -> None:
    import datetime as dt

    from tracker.services.assessment import assess_one
    from tracker.staging import to_json

    token = api_token(demo_engine, "surgeon")
    answer = client.get(
        "/api/v1/patients/H-READY/assessment?as_of=2026-10-31",
        headers={"Authorization": f"Bearer {token}"},
    )
    expected = to_json(assess_one(engine=demo_engine, mrn="H-READY", as_of=dt.date(2026, 10, 31)))
    assert answer.json() == expected


def test_a_surgeon_acknowledges_only_readiness_reviews(
    client: TestClient, demo_engine: Engine
) -> None:
    import datetime as dt

    from tracker.protocol import Protocol
    from tracker.reminders.planner import plan
    from tracker.services.worklist import every_row

    day = dt.date(2026, 10, 31)
    plan(engine=demo_engine, as_of=day, protocol=Protocol())
    rows = list(every_row(engine=demo_engine, today=day))
    other = next(r for r in rows if r["rule"] != "readiness_review")
    token = api_token(demo_engine, "surgeon")
    refused = client.post(
        f"/api/v1/reminders/{other['id']}/acknowledge",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 403
    clinician = api_token(demo_engine, "clinician")
    done = client.post(
        f"/api/v1/reminders/{other['id']}/acknowledge",
        headers={"Authorization": f"Bearer {clinician}"},
    )
    assert done.status_code == 200 and done.json()["status"] == "acknowledged"


def test_patient_page_lists_pending_dicom_sites_until_their_finding_is_recorded(
    client: TestClient, demo_engine: Engine, tmp_path: Path
) -> None:
    from tests.interop.test_dicom_import import radiograph
    from tracker.services.interop import import_dicom_files, pending_sites

    radiograph(
        tmp_path / "knee.dcm", PatientID="H-READY", StudyDate="20250801",
        AccessionNumber="ACC-WEB", BodyPartExamined="KNEE", Laterality="R",
    )  # fmt: skip
    import_dicom_files(engine=demo_engine, paths=[tmp_path / "knee.dcm"])
    [waiting] = pending_sites(engine=demo_engine, mrn="H-READY")
    row = f'id="pending-site-{waiting.id}"'
    link = f"/patients/H-READY/imaging/{waiting.study_id}/edit?site=knee&amp;side=right"

    sign_in(client, "surgeon")  # sees the site, but may not record findings
    page = client.get("/patients/H-READY")
    assert row in page.text and "ACC-WEB" in page.text and "KNEE" in page.text
    assert link not in page.text
    client.cookies.clear()

    sign_in(client, "clinician")
    page = client.get("/patients/H-READY")
    assert row in page.text and link in page.text
    form = client.get(link.replace("&amp;", "&"))
    assert form.status_code == 200
    assert '<option value="knee" selected>' in form.text  # the new finding is prefilled
    assert '<option value="right" selected>' in form.text
    version = re.search(r'name="version" value="(\d+)"', form.text)
    assert version
    saved = client.post(
        f"/patients/H-READY/imaging/{waiting.study_id}/edit",
        data={
            "csrf_token": csrf_in(form.text), "version": version.group(1),
            "date": "2025-08-01", "modality": "radiograph", "accession": "ACC-WEB",
            "findings[0].site": "knee", "findings[0].side": "right",
            "findings[0].ho": "absent", "save": "1",
        },
    )  # fmt: skip
    assert saved.status_code == 303, saved.text
    page = client.get("/patients/H-READY")
    assert row not in page.text and "DICOM sites waiting" not in page.text
    assert pending_sites(engine=demo_engine, mrn="H-READY") == []


def _lab_form(client: TestClient, demo_engine: Engine) -> tuple[Any, str, str, str]:
    """H-READY's first lab, the URL of its correction form, the form's CSRF token and version."""
    from tracker.services.patients import patient_story

    story, _ = patient_story(engine=demo_engine, mrn="H-READY")
    lab = story.labs[0]
    form = client.get(f"/patients/H-READY/labs/{lab.id}/edit")
    assert form.status_code == 200
    assert f'action="/patients/H-READY/labs/{lab.id}/void"' in form.text
    version = re.search(r'name="version" value="(\d+)"', form.text)
    assert version
    return lab, f"/patients/H-READY/labs/{lab.id}/void", csrf_in(form.text), version.group(1)


def test_a_clinician_voids_a_lab_from_its_correction_form(
    client: TestClient, demo_engine: Engine
) -> None:
    from tracker.services.audit import audit_trail

    sign_in(client, "clinician")
    lab, url, token, version = _lab_form(client, demo_engine)
    before = client.get("/patients/H-READY")
    assert f"/labs/{lab.id}/edit" in before.text
    response = client.post(
        url, data={"csrf_token": token, "version": version, "reason": "entered on the wrong day"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/patients/H-READY"
    after = client.get(response.headers["location"])
    notice = re.search(r'<p class="notice" role="status">([^<]*)</p>', after.text)
    assert notice and notice.group(1).startswith("Lab result voided for "), after.text[:500]
    assert "?done=" not in after.text
    assert f"/labs/{lab.id}/edit" not in after.text
    voids = [e for e in audit_trail(engine=demo_engine, mrn="H-READY") if e.action == "void"]
    assert len(voids) == 1
    assert voids[0].username == "clinician" and voids[0].entity_id == lab.id
    assert voids[0].after and voids[0].after["voided_reason"] == "entered on the wrong day"


def test_a_record_is_corrected_or_voided_only_under_its_own_patient(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    lab, url, token, version = _lab_form(client, demo_engine)
    elsewhere = url.replace("/patients/H-READY/", "/patients/H-NONE/")
    assert elsewhere != url
    voided = client.post(elsewhere, data={"csrf_token": token, "version": version, "reason": "x"})
    assert voided.status_code == 404
    corrected = client.post(
        elsewhere.replace("/void", "/edit"),
        data={"csrf_token": token, "version": version, "save": "1", "value": "99"},
    )
    assert corrected.status_code == 404
    assert f"/labs/{lab.id}/edit" in client.get("/patients/H-READY").text  # untouched


def test_a_void_without_a_reason_is_refused_in_place(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    lab, url, token, version = _lab_form(client, demo_engine)
    response = client.post(url, data={"csrf_token": token, "version": version, "reason": "   "})
    assert response.status_code == 422
    assert re.search(r'id="v-reason-err">[^<]*required', response.text), response.text[-2000:]
    assert 'id="v-reason"' in response.text and 'aria-invalid="true"' in response.text
    assert f"/labs/{lab.id}/edit" in client.get("/patients/H-READY").text  # still there


def test_a_stale_void_shows_the_record_as_it_is_now_and_keeps_the_reason(
    client: TestClient, demo_engine: Engine
) -> None:
    from tracker.services.records import correct_lab

    sign_in(client, "clinician")
    lab, url, token, version = _lab_form(client, demo_engine)
    # someone else corrects the lab after this form was opened
    correct_lab(
        engine=demo_engine, actor="admin", record_id=lab.id, expected_version=int(version),
        changes={"value": 123.5},
    )  # fmt: skip
    stale = client.post(
        url, data={"csrf_token": token, "version": version, "reason": "entered twice"}
    )
    assert stale.status_code == 409
    assert "Not voided." in stale.text and "admin" in stale.text
    assert 'value="123.5"' in stale.text  # the record as it is now
    assert re.search(r'id="v-reason"[^>]*>entered twice</textarea>', stale.text)
    newer = re.search(r'name="version" value="(\d+)"', stale.text)
    assert newer and int(newer.group(1)) == int(version) + 1
    assert f"/labs/{lab.id}/edit" in client.get("/patients/H-READY").text  # not voided
    # voiding again from the redrawn form, now up to date, goes through
    again = client.post(
        url,
        data={"csrf_token": csrf_in(stale.text), "version": newer.group(1), "reason": "twice"},
    )
    assert again.status_code == 303, again.text[-2000:]
    assert f"/labs/{lab.id}/edit" not in client.get("/patients/H-READY").text


def test_a_surgeon_may_not_void_by_page_or_api(client: TestClient, demo_engine: Engine) -> None:
    sign_in(client, "clinician")
    lab, url, _, version = _lab_form(client, demo_engine)
    client.cookies.clear()
    sign_in(client, "surgeon")
    token = csrf_in(client.get("/worklist").text)
    page = client.post(url, data={"csrf_token": token, "version": version, "reason": "no"})
    assert page.status_code == 403
    api = client.post(
        f"/api/v1/records/labs/{lab.id}/void",
        json={"reason": "no", "version": int(version)},
        headers={"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"},
    )
    assert api.status_code == 403


def test_api_void_refuses_a_stale_version_and_a_blank_reason(
    client: TestClient, demo_engine: Engine
) -> None:
    from tracker.services.patients import patient_story

    auth = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    story, _ = patient_story(engine=demo_engine, mrn="H-READY")
    lab = story.labs[0]
    url = f"/api/v1/records/labs/{lab.id}/void"
    blank = client.post(url, json={"reason": "  ", "version": lab.version}, headers=auth)
    assert blank.status_code == 422
    assert blank.json()["detail"][0]["loc"] == ["body", "reason"]
    missing = client.post(url, json={"version": lab.version}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "reason"]
    ok = client.post(url, json={"reason": "duplicate", "version": lab.version}, headers=auth)
    assert ok.status_code == 200, ok.text
    assert ok.json()["id"] == lab.id and ok.json()["version"] == lab.version + 1
    again = client.post(url, json={"reason": "duplicate", "version": lab.version}, headers=auth)
    assert again.status_code == 409
    unknown = client.post(
        "/api/v1/records/labs/999999/void", json={"reason": "x", "version": 1}, headers=auth
    )
    assert unknown.status_code == 404
    story, _ = patient_story(engine=demo_engine, mrn="H-READY")
    assert lab.id not in [r.id for r in story.labs]
    schema = client.get("/api/v1/openapi.json", headers=auth).json()
    assert "/api/v1/records/{entity}/{record_id}/void" in schema["paths"]
    assert "VoidIn" in schema["components"]["schemas"]
