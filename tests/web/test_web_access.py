"""Every route refuses the anonymous and the wrong role (issue 6, access).

The routes are enumerated from the app itself, so a route added later without a
guard fails here."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import api_token, csrf_in, sign_in

OPEN_PATHS = {"/signin", "/healthz", "/api/v1/openapi.json", "/api/v1/docs"}  # by design
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
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_a_bad_or_unknown_token_is_refused(client: TestClient) -> None:
    for header in ("Bearer nonsense", "Bearer ", "Basic abc"):
        response = client.get("/api/v1/patients", headers={"Authorization": header})
        assert response.status_code == 401


def test_a_surgeon_cannot_edit_records_by_page_or_api(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "surgeon")
    token = api_token(demo_engine, "surgeon")
    editing = [(m, p, u) for m, p, u in every_route(client) if EDITING.search(p)]
    assert len(editing) >= 15
    for method, path, url in editing:
        if path.startswith("/api/"):
            if method != "POST":
                continue
            response = client.post(url, json={}, headers={"Authorization": f"Bearer {token}"})
            # a surgeon is refused before the body is read or after it is valid: never 2xx
            assert response.status_code in (403, 422), (url, response.status_code)
        else:
            data = {"csrf_token": _csrf(client)} if method == "POST" else None
            response = client.request(method, url, data=data)
            assert response.status_code == 403, (method, url, response.status_code)


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
