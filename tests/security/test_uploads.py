"""Upload limits (issue 15, requirement 10): a body over the configured maximum is
refused with 413 before it is read into memory, with or without Content-Length, and
nothing of it is imported."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import SECRET, csrf_in, sign_in
from tracker.config import Settings
from tracker.web.app import create_app

LIMIT = 64 * 1024


def _small_limit_client(engine: Engine) -> TestClient:
    settings = Settings(database_url=str(engine.url), max_upload_bytes=LIMIT)
    app = create_app(settings, engine, secret=SECRET)
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def _patients_csv(rows: int) -> bytes:
    lines = ["mrn,birth_date,sex,family_name,given_name,team"]
    lines += [f"UP-{i:06d},1970-01-01,female,Upload,Test{i},spinal_unit" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _patient_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT count(*) FROM patient WHERE mrn LIKE 'UP-%'")).scalar_one()
        )


def test_an_upload_over_the_limit_is_refused_with_a_readable_413_and_nothing_imported(
    demo_engine: Engine,
) -> None:
    client = sign_in(_small_limit_client(demo_engine), "clinician")
    token = csrf_in(client.get("/import").text)
    big = _patients_csv(3000)
    assert len(big) > LIMIT
    refused = client.post(
        "/import", data={"csrf_token": token}, files={"files": ("patients.csv", big)}
    )
    assert refused.status_code == 413
    assert "The file is larger than 64 KB" in refused.text
    assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
    assert _patient_count(demo_engine) == 0


def test_a_chunked_body_without_content_length_is_cut_off_at_the_limit(
    demo_engine: Engine,
) -> None:
    client = sign_in(_small_limit_client(demo_engine), "clinician")
    token = csrf_in(client.get("/import").text)
    boundary = "bound"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="patients.csv"'
            "\r\nContent-Type: text/csv\r\n\r\n"
        ).encode()
        + _patients_csv(3000)
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    refused = client.post(
        "/import",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert refused.status_code == 413
    assert "The file is larger than 64 KB" in refused.text
    assert _patient_count(demo_engine) == 0


def test_the_api_refuses_an_oversized_body_with_json(demo_engine: Engine) -> None:
    from tests.web.web_support import api_token

    client = _small_limit_client(demo_engine)
    bearer = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    big = {"mrn": "UP-API", "notes": "x" * (LIMIT + 1)}
    for extra in ({}, {"Transfer-Encoding": "chunked"}):
        refused = client.post("/api/v1/patients", json=big, headers={**bearer, **extra})
        assert refused.status_code == 413
        assert refused.json()["detail"].startswith("The file is larger than 64 KB")


def test_an_upload_under_the_limit_is_imported(demo_engine: Engine) -> None:
    client = sign_in(_small_limit_client(demo_engine), "clinician")
    token = csrf_in(client.get("/import").text)
    small = _patients_csv(20)
    assert len(small) < LIMIT
    done = client.post(
        "/import", data={"csrf_token": token}, files={"files": ("patients.csv", small)}
    )
    assert done.status_code == 200, done.text
    assert _patient_count(demo_engine) == 20


def test_the_default_limit_is_twenty_megabytes() -> None:
    assert Settings(smtp_from="ho@clinic.example.org").max_upload_bytes == 20 * 1024 * 1024
