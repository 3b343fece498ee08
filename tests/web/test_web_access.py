"""Every route refuses the anonymous and the wrong role (issue 6, access).

The routes are enumerated from the app itself, so a route added later without a
guard fails here."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import api_token, csrf_in, sign_in
from tracker.protocol import Protocol

OPEN_PATHS = {"/signin", "/healthz"}  # by design
SAMPLE = {"mrn": "H-READY", "slug": "injuries", "entity": "injuries", "fmt": "html"}
# Writes a clinician may do and a surgeon may not; pages and forms for an admin alone.
EDITING = re.compile(r"/(new|edit|stop|void)$|^/import$|^/api/v1/patients/\{mrn\}/\w[\w-]*$")
ADMIN_ONLY = re.compile(r"^/admin/")


def every_route(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, template path, concrete URL) of every route the app serves."""
    found = []
    for prefix, route in _flatten(client.app.routes, ""):  # type: ignore[attr-defined]
        path = prefix + getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if not path or path in OPEN_PATHS or path.startswith("/static"):
            continue
        if path.startswith("/api/v1/docs"):
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "1"), path)
        for method in sorted(methods - {"HEAD"}):
            found.append((method, path, url))
    return found


def _flatten(routes: list[object], prefix: str) -> list[tuple[str, object]]:
    """Routes, with those of included routers (FastAPI wraps them) opened up."""
    out: list[tuple[str, object]] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            out += _flatten(inner.routes, prefix + getattr(context, "prefix", ""))
        elif hasattr(route, "methods"):
            out.append((prefix, route))
    return out


def test_every_route_but_sign_in_and_probes_refuses_anonymous_requests(
    client: TestClient,
) -> None:
    routes = every_route(client)
    assert len(routes) > 25, "the route enumeration found too few routes"
    for method, path, url in routes:
        response = client.request(method, url, json={} if path.startswith("/api") else None)
        if path.startswith(("/api/", "/fhir/")):  # machine clients get 401, not a redirect
            assert response.status_code == 401, (method, url, response.status_code)
        else:
            assert response.status_code == 303, (method, url, response.status_code)
            assert response.headers["location"].startswith("/signin?next="), (method, url)


def test_open_routes_answer_without_a_session(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/signin").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_a_bad_or_unknown_token_is_refused(client: TestClient) -> None:
    for header in ("Bearer nonsense", "Bearer ", "Basic abc"):
        response = client.get("/api/v1/patients", headers={"Authorization": header})
        assert response.status_code == 401


@pytest.mark.parametrize("role", ["surgeon", "admin"])
def test_only_a_clinician_opens_or_sends_a_record_form(client: TestClient, role: str) -> None:
    """Every form of every record kind, and the CSV import, refuse a surgeon and an admin."""
    from tracker.web.formspec import FORMS

    sign_in(client, role)
    editing = [
        (m, u.replace("/injuries/", f"/{slug}/"))
        for m, p, u in every_route(client)
        if EDITING.search(p) and "/api/" not in p
        for slug in (FORMS if "{slug}" in p else ["injuries"])
    ]
    assert len(editing) >= 30
    for method, url in editing:
        data = {"csrf_token": _csrf(client)} if method == "POST" else None
        response = client.request(method, url, data=data)
        assert response.status_code == 403, (role, method, url, response.status_code)


PLANNED_ON = dt.date(2026, 11, 2)  # the demo's latest records are from late October 2026


def valid_api_writes(engine: Engine) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Every API write (by route template) with a concrete URL and a body the API
    accepts from a clinician: refused for another role, the refusal can only be the
    role check. A reminder that is open, not a readiness review (which a surgeon may
    acknowledge), and a live injury of H-READY at the version stored."""
    from tracker.reminders.planner import plan
    from tracker.services.patients import patient_story
    from tracker.services.worklist import every_row

    plan(engine=engine, as_of=PLANNED_ON, protocol=Protocol())
    reminder = next(
        r for r in every_row(engine=engine, today=PLANNED_ON) if r["rule"] != "readiness_review"
    )
    injury = patient_story(engine=engine, mrn="H-READY")[0].injuries[0]
    day = "2026-10-30"
    patient = "/api/v1/patients/H-READY"
    return {
        "/api/v1/patients": (
            "/api/v1/patients", {"mrn": "H-API-NEW", "family_name": "Rowe", "given_name": "Ada"}
        ),
        "/api/v1/patients/{mrn}/injuries": (
            f"{patient}/injuries", {"kind": "burn", "date": day}
        ),
        "/api/v1/patients/{mrn}/imaging": (
            f"{patient}/imaging",
            {"date": day, "modality": "radiograph",
             "findings": [{"site": "knee", "side": "left", "ho": "absent"}]},
        ),
        "/api/v1/patients/{mrn}/bone-scans": (
            f"{patient}/bone-scans",
            {"date": day,
             "measurements": [{"site": "knee", "side": "left", "phase": "delayed", "ratio": 1.1}]},
        ),
        "/api/v1/patients/{mrn}/courses": (
            f"{patient}/courses",
            {"agent": "physiotherapy", "intent": "treatment", "start_date": day},
        ),
        "/api/v1/patients/{mrn}/procedures": (
            f"{patient}/procedures",
            {"kind": "manipulation", "date": day, "site": "knee", "side": "left"},
        ),
        "/api/v1/patients/{mrn}/labs": (
            f"{patient}/labs", {"date": day, "analyte": "crp", "value": 4, "unit": "mg/L"}
        ),
        "/api/v1/records/{entity}/{record_id}/void": (
            f"/api/v1/records/injuries/{injury.id}/void",
            {"reason": "entered on the wrong patient", "version": injury.version},
        ),
        "/api/v1/reminders/{reminder_id}/acknowledge": (
            f"/api/v1/reminders/{reminder['id']}/acknowledge", None
        ),
    }  # fmt: skip


def test_api_writes_with_valid_bodies_are_refused_by_the_role_check_alone(
    client: TestClient, demo_engine: Engine
) -> None:
    """A surgeon may not add, void or acknowledge (but a readiness review) and an admin
    may do none of it: exactly 403, with bodies a clinician then saves (2xx)."""
    writes = valid_api_writes(demo_engine)
    api_posts = {p for m, p, _ in every_route(client) if m == "POST" and p.startswith("/api/")}
    assert api_posts == set(writes), "every API write needs a valid body in this test"
    for role in ("surgeon", "admin"):
        token = api_token(demo_engine, role)
        for path, (url, body) in writes.items():
            response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, (role, path, response.status_code, response.text)
    token = api_token(demo_engine, "clinician")
    for path, (url, body) in writes.items():
        response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (200, 201), (path, response.status_code, response.text)


def test_surgeon_api_write_with_a_valid_body_is_forbidden(
    client: TestClient, demo_engine: Engine
) -> None:
    token = api_token(demo_engine, "surgeon")
    response = client.post(
        "/api/v1/patients/H-READY/labs",
        json={"date": "2026-01-05", "analyte": "alp", "value": 90, "unit": "U/L"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403


def test_only_an_admin_sees_the_audit_trail_users_and_protocol(client: TestClient) -> None:
    admin_routes = [(m, p, u) for m, p, u in every_route(client) if ADMIN_ONLY.search(p)]
    admin_pages = [u for m, p, u in admin_routes if m == "GET"]
    admin_writes = [u for m, p, u in admin_routes if m == "POST"]
    assert {"/admin/audit", "/admin/users", "/admin/protocol"} <= set(admin_pages)
    assert len(admin_writes) >= 5  # add, disable, enable, token, check a protocol
    for role in ("clinician", "surgeon"):
        client.cookies.clear()
        sign_in(client, role)
        for url in admin_pages:
            assert client.get(url).status_code == 403, (role, url)
        for url in admin_writes:  # with this session's CSRF token: refused for the role
            response = client.post(url, data={"csrf_token": _csrf(client)})
            assert response.status_code == 403, (role, url, response.status_code)
    client.cookies.clear()
    sign_in(client, "admin")
    for url in admin_pages:
        assert client.get(url).status_code == 200, url


def _csrf(client: TestClient) -> str:
    return csrf_in(client.get("/worklist").text)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_off_site(client: TestClient, target: str) -> None:
    page = client.get(f"/signin?next={target}")
    assert 'name="next" value="/worklist"' in page.text
