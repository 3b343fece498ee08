"""Security headers on every response, from one middleware (issue 15, requirement 5)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import SECRET, api_token, sign_in
from tracker.config import Settings
from tracker.web.app import create_app


def _assert_protected(response_headers: dict[str, str] | object, where: str) -> None:
    headers = response_headers  # httpx.Headers
    csp = headers["content-security-policy"]  # type: ignore[index]
    assert "frame-ancestors 'none'" in csp, where
    assert "unsafe-inline" not in csp.split("script-src")[-1].split(";")[0], where
    assert "http" not in csp, where  # no third-party origin
    assert headers["x-frame-options"] == "DENY", where  # type: ignore[index]
    assert headers["x-content-type-options"] == "nosniff", where  # type: ignore[index]
    assert headers["referrer-policy"] == "no-referrer", where  # type: ignore[index]


def test_pages_errors_redirects_api_fhir_and_static_files_all_carry_the_headers(
    client: TestClient, demo_engine: Engine
) -> None:
    token = api_token(demo_engine, "clinician")
    bearer = {"Authorization": f"Bearer {token}"}
    answers = {
        "sign-in page": client.get("/signin"),
        "redirect": client.get("/worklist"),
        "static": client.get("/static/style.css"),
        "api 401": client.get("/api/v1/patients"),
        "api": client.get("/api/v1/patients", headers=bearer),
        "fhir": client.get("/fhir/Patient/H-READY/$everything", headers=bearer),
        "healthz": client.get("/healthz"),
        "missing": client.get("/no-such-page"),
    }
    sign_in(client, "clinician")
    answers["patient page"] = client.get("/patients/H-READY")
    answers["not found page"] = client.get("/patients/NOBODY")
    answers["report"] = client.get("/patients/H-READY/report.html")
    answers["figure"] = client.get("/patients/H-READY/trend.svg")
    for where, response in answers.items():
        _assert_protected(response.headers, where)


def test_everything_but_static_files_is_never_stored_by_a_cache(
    client: TestClient, demo_engine: Engine
) -> None:
    bearer = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    assert client.get("/api/v1/patients", headers=bearer).headers["cache-control"] == "no-store"
    fhir = client.get("/fhir/Patient/H-READY/$everything", headers=bearer)
    assert fhir.headers["cache-control"] == "no-store"
    assert client.get("/healthz").headers["cache-control"] == "no-store"
    sign_in(client, "clinician")
    for url in ("/patients/H-READY", "/patients/H-READY/report.html", "/worklist", "/board"):
        assert client.get(url).headers["cache-control"] == "no-store", url
    assert client.get("/static/style.css").headers["cache-control"] == "no-cache"


def test_pages_forbid_inline_script_and_reports_run_no_script_at_all(
    client: TestClient,
) -> None:
    sign_in(client, "clinician")
    page = client.get("/patients/H-READY")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and "javascript:" not in page.text
    report = client.get("/patients/H-READY/report.html")
    policy = report.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy


def test_hsts_and_secure_cookies_only_when_the_app_runs_behind_https(
    demo_engine: Engine,
) -> None:
    plain = TestClient(create_app(Settings(database_url=str(demo_engine.url)), demo_engine,
                                  secret=SECRET))  # fmt: skip
    assert "strict-transport-security" not in plain.get("/signin").headers
    assert "secure" not in plain.get("/signin").headers["set-cookie"].lower()
    behind = Settings(database_url=str(demo_engine.url), behind_https=True)
    tls = TestClient(create_app(behind, demo_engine, secret=SECRET))
    answer = tls.get("/signin")
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert "; secure" in answer.headers["set-cookie"].lower()
