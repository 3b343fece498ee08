"""`GET /fhir/Patient/{mrn}/$everything`: the export's Bundle, for authenticated users."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import add_role_users, api_token, make_client, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.services.interop import fhir_bundle

URL = "/fhir/Patient/P1/$everything"


def _store(engine: Engine, folder: Path) -> None:
    write_csv(folder, "patients.csv", [{"mrn": "P1", "family_name": "Okafor"}, {"mrn": "P2"}])
    write_csv(folder, "injuries.csv", [{"mrn": "P1", "kind": "burn", "date": "2024-02-01"}])
    import_folder(engine, folder)
    add_role_users(engine)


def _views(engine: Engine) -> int:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM audit_event WHERE action = 'view' AND mrn = 'P1'"
        return int(conn.execute(sa.text(query)).scalar_one())


def test_token_holder_gets_the_patients_bundle_and_the_view_is_logged(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    _store(sqlite_engine, tmp_path)
    token = api_token(sqlite_engine, "surgeon")
    with make_client(sqlite_engine) as client:
        response = client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json() == fhir_bundle(engine=sqlite_engine, mrn="P1")
    assert _views(sqlite_engine) == 1


def test_signed_in_clinician_reads_it_too(sqlite_engine: Engine, tmp_path: Path) -> None:
    _store(sqlite_engine, tmp_path)
    with make_client(sqlite_engine) as client:
        sign_in(client, "clinician")
        bundle = client.get(URL).json()
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Patient", "Condition"]


def test_without_credentials_fhir_clients_get_401_and_unknown_patients_404(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    _store(sqlite_engine, tmp_path)
    token = api_token(sqlite_engine, "clinician")
    with make_client(sqlite_engine) as client:
        anonymous = client.get(URL)
        wrong = client.get(URL, headers={"Authorization": "Bearer not-a-token"})
        missing = client.get(
            "/fhir/Patient/NOBODY/$everything", headers={"Authorization": f"Bearer {token}"}
        )
    assert anonymous.status_code == wrong.status_code == 401
    assert "Okafor" not in anonymous.text
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert _views(sqlite_engine) == 0


def test_a_voided_record_leaves_the_bundle_and_the_research_export(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    from tracker.services.interop import export_research
    from tracker.services.records import void_record

    _store(sqlite_engine, tmp_path / "csv")
    with sqlite_engine.connect() as conn:
        injury_id = conn.execute(sa.text("SELECT id FROM injury")).scalar_one()
    void_record(
        engine=sqlite_engine,
        actor="clinician",
        entity="injury",
        record_id=injury_id,
        expected_version=1,
        reason="entered for the wrong patient",
    )
    kinds = [e["resource"]["resourceType"] for e in fhir_bundle(engine=sqlite_engine)["entry"]]
    assert kinds == ["Patient", "Patient"]
    environ = {"HO_TRACKER_DEID_KEY": "x" * 20}
    export_research(engine=sqlite_engine, folder=tmp_path / "out", environ=environ)
    assert (tmp_path / "out" / "injuries.csv").read_text() == "mrn,kind,date\n"
