"""The import page says what it added in words: "Imported 3 new rows: 1 patient, 2
injuries.", never "Imported 1 new rows: patients.csv 1"; a form sent without a file
marks the file input."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import write_csv
from tests.web.form_walk import marked
from tests.web.web_support import csrf_in, sign_in
from tracker.web.routes.csvimport import rows_added


def upload(client: TestClient, *paths: Path) -> str:
    page = client.get("/import")
    response = client.post(
        "/import",
        data={"csrf_token": csrf_in(page.text)},
        files=[("files", (p.name, p.read_bytes(), "text/csv")) for p in paths],
    )
    assert response.status_code == 200, response.text
    return response.text


def test_one_new_lab_result_is_one_row_not_one_rows(client: TestClient, tmp_path: Path) -> None:
    sign_in(client, "clinician")
    labs = write_csv(
        tmp_path,
        "labs.csv",
        [{"mrn": "H-READY", "date": "2026-01-02", "analyte": "crp", "value": 4, "unit": "mg/L"}],
    )
    said = upload(client, labs)
    assert "Imported 1 new row: 1 lab result." in said
    assert "new rows" not in said and "labs.csv 1" not in said


def test_a_new_patient_with_two_injuries_is_counted_as_each_is_called(
    client: TestClient, tmp_path: Path
) -> None:
    sign_in(client, "clinician")
    patients = write_csv(
        tmp_path,
        "patients.csv",
        [{"mrn": "W-IMPORT", "birth_date": "1980-01-01", "sex": "male", "team": "spinal_unit"}],
    )
    injuries = write_csv(
        tmp_path,
        "injuries.csv",
        [
            {"mrn": "W-IMPORT", "kind": "burn", "date": "2026-01-02", "notes": ""},
            {"mrn": "W-IMPORT", "kind": "amputation", "date": "2026-01-03", "notes": ""},
        ],
    )
    assert "Imported 3 new rows: 1 patient, 2 injuries." in upload(client, patients, injuries)
    # the same files again add nothing, and the page says so
    assert "Nothing new to import: every row is already stored." in upload(
        client, patients, injuries
    )


def test_rows_added_names_every_interchange_file_as_its_records() -> None:
    assert rows_added(
        {
            "patients.csv": 2,
            "injuries.csv": 1,
            "imaging.csv": 3,
            "bone_scans.csv": 2,
            "treatments.csv": 1,
            "procedures.csv": 0,
            "labs.csv": 5,
        }
    ) == [
        "2 patients",
        "1 injury",
        "3 site findings",
        "2 bone-scan measurements",
        "1 treatment course",
        "5 lab results",
    ]


def test_import_without_a_file_marks_the_file_input(client: TestClient) -> None:
    sign_in(client, "clinician")
    page = client.get("/import")
    response = client.post(
        "/import",
        data={"csrf_token": csrf_in(page.text)},
        files=[("files", ("", b"", "application/octet-stream"))],
    )
    assert response.status_code == 422
    assert marked(response.text) == ["files"]
    assert "Choose one or more CSV files." in response.text
