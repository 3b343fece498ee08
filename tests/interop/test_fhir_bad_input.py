"""A Bundle that cannot be stored is refused whole, each problem at its FHIR element."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.errors import ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_import import import_folder
from tracker.services.interop import fhir_bundle, import_fhir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small Bundle: one patient with an injury, a radiograph finding and a lab."""
    from tracker.store import database

    folder = tmp_path_factory.mktemp("bad")
    write_csv(folder, "patients.csv", [{"mrn": "P1", "birth_date": "1970-01-01"}])
    write_csv(folder, "injuries.csv", [{"mrn": "P1", "kind": "burn", "date": "2024-01-10"}])
    write_csv(
        folder,
        "imaging.csv",
        [
            {
                "mrn": "P1",
                "date": "2024-03-01",
                "modality": "radiograph",
                "site": "elbow",
                "side": "left",
                "ho": "present",
                "brooker": 2,
            }
        ],
    )
    write_csv(
        folder,
        "labs.csv",
        [{"mrn": "P1", "date": "2024-03-01", "analyte": "alp", "value": 140, "unit": "U/L"}],
    )
    engine = database.make_engine(f"sqlite:///{folder / 'src.db'}")
    database.upgrade(engine)
    import_folder(engine, folder)
    return fhir_bundle(engine=engine, mrn="P1")


def _index(bundle: dict, kind: str, record: str | None = None) -> int:
    for i, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        category = resource.get("category") or [{}]
        first = category[0] if isinstance(category, list) else category
        if resource["resourceType"] == kind and (
            record is None or first.get("coding", [{}])[0].get("code") == record
        ):
            return i
    raise AssertionError(f"no {kind} {record}")


def _unsupported(b: dict) -> str:
    b["entry"].append(
        {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "Account", "status": "active"}}
    )
    return f"Bundle.entry[{len(b['entry']) - 1}].resource.resourceType"


def _broken_subject(b: dict) -> str:
    i = _index(b, "Observation", codes.LAB)
    b["entry"][i]["resource"]["subject"]["reference"] = "urn:uuid:nobody"
    return f"Bundle.entry[{i}].resource.subject"


def _broken_study(b: dict) -> str:
    i = _index(b, "Observation", codes.FINDING)
    b["entry"][i]["resource"]["derivedFrom"][0]["reference"] = "ImagingStudy/gone"
    return f"Bundle.entry[{i}].resource.derivedFrom[0]"


def _unknown_injury_code(b: dict) -> str:
    i = _index(b, "Condition", codes.INJURY)
    b["entry"][i]["resource"]["code"] = {"coding": [{"system": codes.INJURY_KIND, "code": "sci"}]}
    return f"Bundle.entry[{i}].resource.code.coding"


def _foreign_code_only(b: dict) -> str:
    i = _index(b, "Observation", codes.LAB)
    b["entry"][i]["resource"]["code"] = {"coding": [{"system": codes.LOINC, "code": "2345-7"}]}
    return f"Bundle.entry[{i}].resource.code"


def _brooker_out_of_range(b: dict) -> str:
    i = _index(b, "Observation", codes.FINDING)
    for component in b["entry"][i]["resource"]["component"]:
        if component["code"]["coding"][0]["code"] == "brooker":
            component["valueInteger"] = 7
    return f"Bundle.entry[{i}].resource.component[brooker].valueInteger"


def _lab_before_birth(b: dict) -> str:
    i = _index(b, "Observation", codes.LAB)
    b["entry"][i]["resource"]["effectiveDateTime"] = "1960-05-05"
    return f"Bundle.entry[{i}].resource.effectiveDateTime"


def _not_fhir(b: dict) -> str:
    i = _index(b, "Patient")
    b["entry"][i]["resource"]["birthDate"] = "yesterday"
    return f"Bundle.entry.{i}.resource.birthDate"


CASES: dict[str, Callable[[dict], str]] = {
    "unsupported resource": _unsupported,
    "subject refers to no patient": _broken_subject,
    "finding refers to no study": _broken_study,
    "injury code outside the vocabulary": _unknown_injury_code,
    "lab with only an unknown LOINC code": _foreign_code_only,
    "brooker grade 7": _brooker_out_of_range,
    "lab dated before birth": _lab_before_birth,
    "invalid FHIR": _not_fhir,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_bundle_is_refused_at_its_element_and_nothing_is_written(
    case: str, bundle: dict, engine: Engine, tmp_path: Path
) -> None:
    broken = copy.deepcopy(bundle)
    element = CASES[case](broken)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValidationFailed) as failed:
        import_fhir(engine=engine, path=path)
    places = {(p.source, p.field) for p in failed.value.problems}
    assert ("broken.json", element) in places, failed.value.problems
    assert all(count == 0 for count in count_rows(engine).values())


def test_vocabulary_problem_lists_the_allowed_words(
    bundle: dict, tmp_path: Path, sqlite_engine: Engine
) -> None:
    broken = copy.deepcopy(bundle)
    _unknown_injury_code(broken)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ValidationFailed, match="spinal_cord_injury"):
        import_fhir(engine=sqlite_engine, path=path)


def test_a_file_that_is_not_json_is_named(tmp_path: Path, sqlite_engine: Engine) -> None:
    path = tmp_path / "notes.json"
    path.write_text("{ not json")
    with pytest.raises(ValidationFailed, match="notes.json: Bundle: is not JSON"):
        import_fhir(engine=sqlite_engine, path=path)


def test_standard_codes_alone_are_read_when_they_map_one_to_one(
    bundle: dict, tmp_path: Path, sqlite_engine: Engine
) -> None:
    changed = copy.deepcopy(bundle)
    i = _index(changed, "Observation", codes.LAB)
    changed["entry"][i]["resource"]["code"] = {
        "coding": [{"system": codes.LOINC, "code": "6768-6"}]
    }
    path = tmp_path / "loinc.json"
    path.write_text(json.dumps(changed))
    import_fhir(engine=sqlite_engine, path=path)
    assert count_rows(sqlite_engine)["lab_result"] == 1


def test_a_component_the_tracker_cannot_store_is_refused_not_dropped(
    bundle: dict, tmp_path: Path, sqlite_engine: Engine
) -> None:
    changed = copy.deepcopy(bundle)
    i = _index(changed, "Observation", codes.FINDING)
    changed["entry"][i]["resource"]["component"].append(
        {"code": {"coding": [{"system": codes.ELEMENT, "code": "bone_density"}]},
         "valueString": "low"}
    )  # fmt: skip
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(changed))
    with pytest.raises(ValidationFailed) as failed:
        import_fhir(engine=sqlite_engine, path=path)
    [problem] = failed.value.problems
    assert problem.field.startswith(f"Bundle.entry[{i}].resource.component[")
    assert "bone_density" in problem.reason
    assert count_rows(sqlite_engine)["patient"] == 0
