"""One rule per value (issue 15, failures 13 and 14): the record forms never drop a row
they were sent, numbers keep every digit through the API and the correction forms,
and the API refuses a field its bodies do not have. On both backends."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import count_rows
from tests.web.web_support import api_token, csrf_in, sign_in
from tracker import vocab
from tracker.store.models import LabResult, table_of
from tracker.web.formspec import MAX_ROWS

MRN = "H-EARLY"  # a demo patient born 1990-07-02
IMAGING = f"/patients/{MRN}/imaging/new"
PLACES = [(site, side) for site in vocab.values(vocab.Site) for side in ("left", "right")]


def _finding(index: int, site: str, side: str) -> dict[str, str]:
    at = f"findings[{index}]"
    return {f"{at}.site": site, f"{at}.side": side, f"{at}.ho": "present"}


def _post_imaging(client: TestClient, findings: dict[str, str]) -> Any:
    sign_in(client, "clinician")
    token = csrf_in(client.get(IMAGING).text)
    study = {"date": "2026-10-20", "modality": "radiograph", "accession": "ROWS-1"}
    return client.post(IMAGING, data={**study, **findings, "save": "1", "csrf_token": token})


def _findings_stored(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.site, f.side FROM site_finding f JOIN imaging_study s "
                "ON s.id = f.study_id WHERE s.accession = 'ROWS-1'"
            )
        ).all()
    return sorted((r[0], r[1]) for r in rows)


def test_the_imaging_form_saves_a_finding_sent_at_row_14_with_the_others(
    client: TestClient, demo_engine: Engine
) -> None:
    sent = {**_finding(0, "hip", "left"), **_finding(13, "knee", "right")}
    response = _post_imaging(client, sent)
    assert response.status_code == 303, response.text[-1500:]
    assert _findings_stored(demo_engine) == [("hip", "left"), ("knee", "right")]


def test_the_imaging_form_saves_as_many_findings_as_its_limit(
    client: TestClient, demo_engine: Engine
) -> None:
    sent: dict[str, str] = {}
    for index in range(MAX_ROWS):
        sent.update(_finding(index, *PLACES[index]))
    response = _post_imaging(client, sent)
    assert response.status_code == 303, response.text[-1500:]
    assert _findings_stored(demo_engine) == sorted(PLACES[:MAX_ROWS])


def test_a_finding_beyond_the_forms_limit_is_refused_beside_it_and_nothing_is_saved(
    client: TestClient, demo_engine: Engine
) -> None:
    before = count_rows(demo_engine)
    sent = {**_finding(0, "hip", "left"), **_finding(MAX_ROWS, "knee", "right")}
    response = _post_imaging(client, sent)
    assert response.status_code == 422
    page = response.text
    marked = re.search(rf'<select id="r-findings-{MAX_ROWS}-site"[^>]*>', page)
    assert marked and 'aria-invalid="true"' in marked.group(0)
    said = re.search(rf'id="r-findings-{MAX_ROWS}-site-err">([^<]*)<', page)
    assert said and f"at most {MAX_ROWS} findings" in said.group(1)
    assert count_rows(demo_engine) == before


def _lab_values(engine: Engine) -> list[float]:
    lab = table_of(LabResult)
    with engine.connect() as conn:
        return list(conn.execute(sa.select(lab.c.value).where(lab.c.analyte == "crp")).scalars())


def test_a_lab_value_sent_through_the_api_is_stored_with_every_digit(
    client: TestClient, demo_engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    body = {"date": "2026-10-20", "analyte": "crp", "value": 1234567.891, "unit": "mg/L"}
    response = client.post(f"/api/v1/patients/{MRN}/labs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert 1234567.891 in _lab_values(demo_engine)


def test_a_correction_form_shows_a_stored_number_in_full_so_saving_it_changes_nothing(
    client: TestClient, demo_engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    body = {"date": "2026-10-21", "analyte": "crp", "value": 12.3456789, "unit": "mg/L"}
    response = client.post(f"/api/v1/patients/{MRN}/labs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    sign_in(client, "clinician")
    page = client.get(f"/patients/{MRN}/labs/{response.json()['id']}/edit").text
    assert re.search(r'name="value" value="12\.3456789"', page), page[-3000:]


def test_a_misspelt_finding_field_sent_to_the_api_is_refused_naming_it(
    client: TestClient, demo_engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
    before = count_rows(demo_engine)
    body = {
        "date": "2026-10-20",
        "modality": "radiograph",
        "findings": [{"site": "hip", "side": "left", "ho": "present", "brooker_grade": 3}],
    }
    response = client.post(f"/api/v1/patients/{MRN}/imaging", json=body, headers=headers)
    assert response.status_code == 422, response.text
    locs = [d["loc"] for d in response.json()["detail"]]
    assert ["body", "findings", 0, "brooker_grade"] in locs
    assert count_rows(demo_engine) == before
