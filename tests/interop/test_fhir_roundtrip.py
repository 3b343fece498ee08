"""A cohort through FHIR and back: same records, same assessments, valid resources."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.cli import run
from tracker.errors import NotFound
from tracker.interchange import fhir_codes as codes
from tracker.interchange import synth
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder
from tracker.interchange.fhir_import import SUPPORTED
from tracker.services.assessment import assess_one
from tracker.services.interop import fhir_bundle, import_fhir
from tracker.staging import to_json
from tracker.store import database

AS_OF = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, dict]:
    """60 synthetic patients stored on SQLite, and their FHIR Bundle."""
    folder = tmp_path_factory.mktemp("cohort")
    synth.write_cohort(folder / "csv", patients=60, seed=23)
    _add_bedside(folder / "csv")
    engine = database.make_engine(f"sqlite:///{folder / 'source.db'}")
    database.upgrade(engine)
    import_folder(engine, folder / "csv")
    return engine, fhir_bundle(engine=engine)


def _add_bedside(folder: Path) -> None:
    """Bedside examinations and range of motion for a few patients, while synth writes
    none (issue 16): the round trip must carry them too."""
    if len((folder / "exams.csv").read_text().splitlines()) > 1:
        return  # synth writes them itself
    mrns = ["S000001", "S000002", "S000003"]
    exams = [
        {"mrn": m, "date": "2026-06-01", "site": "hip", "side": "right", "swelling": "yes"}
        | {"warmth": "no", "pain": 4 + i, "notes": "bedside"}
        for i, m in enumerate(mrns)
    ]
    rom = [
        {"mrn": m, "date": d, "site": "hip", "side": "right", "movement": "flexion"}
        | {"degrees": degrees}
        for m in mrns
        for d, degrees in (("2026-05-01", 100), ("2026-06-01", 72.5))
    ]
    write_csv(folder, "exams.csv", exams)
    write_csv(folder, "rom.csv", rom)


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_cohort_through_fhir_gives_the_same_records_and_the_same_assessments(
    source: tuple[Engine, dict], engine: Engine, tmp_path: Path
) -> None:
    origin, bundle = source
    path = tmp_path / "cohort.json"
    path.write_text(json.dumps(bundle))
    summary = import_fhir(engine=engine, path=path)
    assert summary.added["patients.csv"] == 60

    export_folder(origin, tmp_path / "a")
    export_folder(engine, tmp_path / "b")
    for exported in sorted((tmp_path / "a").iterdir()):
        assert exported.read_text() == (tmp_path / "b" / exported.name).read_text(), exported.name

    mrns = [r["identifier"][0]["value"] for r in _resources(bundle, "Patient")]
    for mrn in mrns:
        before = to_json(assess_one(engine=origin, mrn=mrn, as_of=AS_OF))
        after = to_json(assess_one(engine=engine, mrn=mrn, as_of=AS_OF))
        assert before == after, mrn

    assert import_fhir(engine=engine, path=path).total_added == 0


def test_every_exported_resource_is_valid_fhir(source: tuple[Engine, dict]) -> None:
    _, bundle = source
    kinds = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kinds.add(resource["resourceType"])
        model = get_fhir_model_class(resource["resourceType"])
        assert model.model_validate(resource).model_dump(mode="json", exclude_none=True) == (
            resource
        )
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
    assert kinds == set(SUPPORTED)


def test_standard_codes_sit_beside_the_tracker_codes(source: tuple[Engine, dict]) -> None:
    _, bundle = source
    alp = [
        o["code"]["coding"]
        for o in _resources(bundle, "Observation")
        if o["code"]["coding"][0] == codes.coding(codes.ANALYTE, "alp", "alp")
    ]
    assert alp and all(c[1]["system"] == codes.LOINC and c[1]["code"] == "6768-6" for c in alp)
    studies = _resources(bundle, "ImagingStudy")
    assert {s["modality"][0]["code"] for s in studies} <= {"US", "DX", "CT", "MR", "NM", "PT"}
    ho = [
        c
        for c in _resources(bundle, "Condition")
        if c["category"][0]["coding"][0]["code"] == codes.HO_SITE
    ]
    assert ho and all(c["code"]["coding"][0]["code"].startswith("M61.") for c in ho)
    observations = _resources(bundle, "Observation")
    pain = [
        c["code"]["coding"][1]
        for o in observations
        if o["code"]["coding"][0]["code"] == codes.EXAM
        for c in o.get("component", [])
        if c["code"]["coding"][0]["code"] == "pain"
    ]
    assert pain and all(c["system"] == codes.LOINC and c["code"] == "72514-3" for c in pain)
    rom = [o for o in observations if o["code"]["coding"][0]["system"] == codes.MOVEMENT]
    assert rom and all(o["valueQuantity"]["code"] == "deg" for o in rom)


def test_ho_condition_names_the_cause_and_the_site_in_icd10() -> None:
    assert codes.m61_code("hip", ["spinal_cord_injury"])["code"] == "M61.25"
    assert codes.m61_code("elbow", ["burn", "fop"])["code"] == "M61.12"
    assert codes.m61_code("knee", ["knee_arthroplasty"])["code"] == "M61.56"


def test_one_patient_bundle_holds_only_that_patient(source: tuple[Engine, dict]) -> None:
    origin, bundle = source
    mrn = _resources(bundle, "Patient")[0]["identifier"][0]["value"]
    one = fhir_bundle(engine=origin, mrn=mrn)
    patients = _resources(one, "Patient")
    assert [p["identifier"][0]["value"] for p in patients] == [mrn]
    subject = f"urn:uuid:{patients[0]['id']}"
    others = [e["resource"] for e in one["entry"] if e["resource"]["resourceType"] != "Patient"]
    assert others and all(r["subject"]["reference"] == subject for r in others)
    with pytest.raises(NotFound):
        fhir_bundle(engine=origin, mrn="NOBODY")


def test_fhir_export_and_import_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    synth.write_cohort(tmp_path / "csv", patients=3, seed=5)
    assert run(["--database-url", db, "import", str(tmp_path / "csv")]) == 0
    capsys.readouterr()
    assert run(["--database-url", db, "fhir", "export", "S000001"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["resourceType"] == "Bundle"
    out = tmp_path / "all.json"
    assert run(["--database-url", db, "fhir", "export", "--all", "--out", str(out)]) == 0
    empty = f"sqlite:///{tmp_path / 'b.db'}"
    assert run(["--database-url", empty, "fhir", "import", str(out)]) == 0
    assert count_rows(database.make_engine(empty))["patient"] == 3
    assert run(["--database-url", db, "fhir", "export"]) == 2
    assert "or use --all" in capsys.readouterr().err
