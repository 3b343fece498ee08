"""The OpenAPI document needs sign-in like the rest of the API, and there is no docs
page loading scripts from a CDN (issue 15, failure 10)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import api_token, sign_in


def test_the_openapi_document_needs_a_token_or_a_session(
    client: TestClient, demo_engine: Engine
) -> None:
    anonymous = client.get("/api/v1/openapi.json")
    assert anonymous.status_code == 401
    assert "paths" not in anonymous.text
    bearer = {"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"}
    document = client.get("/api/v1/openapi.json", headers=bearer)
    assert document.status_code == 200
    assert "/api/v1/patients" in document.json()["paths"]
    assert document.headers["cache-control"] == "no-store"
    sign_in(client, "clinician")
    assert "/api/v1/patients" in client.get("/api/v1/openapi.json").json()["paths"]


def test_there_is_no_docs_page_loading_third_party_scripts(client: TestClient) -> None:
    assert client.get("/api/v1/docs").status_code in (401, 404)
    sign_in(client, "admin")
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 404
    assert "cdn" not in docs.text.lower()
