"""The bedside examination through FHIR (issue 16): signs, pain and range of motion as
Observations, the imaging indication as ImagingStudy.reasonCode, and back."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.errors import ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_import import import_folder
from tracker.services.interop import fhir_bundle, import_fhir

EXAMS = [
    {
        "mrn": "B1",
        "date": "2024-02-10",
        "site": "hip",
        "side": "right",
        "swelling": "yes",
        "warmth": "yes",
        "erythema": "no",
        "pain": 6,
        "notes": "warm, swollen right hip",
    },
    {"mrn": "B1", "date": "2024-02-10", "site": "hip", "side": "left", "swelling": "no"},
    {"mrn": "B1", "date": "2024-03-01", "site": "knee", "side": "left", "pain": 0},
]
ROM = [
    {"mrn": "B1", "date": "2024-02-01", "site": "hip", "side": "right", "movement": m, "degrees": d}
    for m, d in (("flexion", 100), ("abduction", 35), ("internal_rotation", 12.5))
] + [
    {"mrn": "B1", "date": "2024-02-10", "site": "hip", "side": "right", "movement": "flexion"}
    | {"degrees": 70}
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One brain-injured patient: exams, range of motion, a Doppler for a DVT query and a
    radiograph with no indication."""
    from tracker.store import database

    folder = tmp_path_factory.mktemp("bedside")
    write_csv(folder, "patients.csv", [{"mrn": "B1", "birth_date": "1980-05-05"}])
    write_csv(
        folder,
        "injuries.csv",
        [{"mrn": "B1", "kind": "traumatic_brain_injury", "date": "2024-01-05"}],
    )
    study = {"mrn": "B1", "site": "hip", "ho": "absent"}
    write_csv(
        folder,
        "imaging.csv",
        [
            study
            | {"date": "2024-02-11", "modality": "ultrasound", "side": s}
            | {"accession": "US1", "indication": "dvt_query"}
            for s in ("left", "right")
        ]
        + [study | {"date": "2024-03-02", "modality": "radiograph", "side": "right"}],
    )
    write_csv(folder, "exams.csv", EXAMS)
    write_csv(folder, "rom.csv", ROM)
    engine = database.make_engine(f"sqlite:///{folder / 'src.db'}")
    database.upgrade(engine)
    import_folder(engine, folder)
    return fhir_bundle(engine=engine, mrn="B1")


def _observations(bundle: dict, record: str) -> list[dict]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["category"][0]["coding"][0]["code"] == record
    ]


def _index(bundle: dict, record: str) -> int:
    for i, entry in enumerate(bundle["entry"]):
        category = entry["resource"].get("category") or [{}]
        if isinstance(category, list) and category[0].get("coding", [{}])[0].get("code") == record:
            return i
    raise AssertionError(f"no {record}")


def _bedside_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            n: conn.execute(sa.text(f"SELECT count(*) FROM {n}")).scalar_one()
            for n in ("clinical_exam", "range_of_motion")
        }


def _import(engine: Engine, document: dict, tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(document))
    import_fhir(engine=engine, path=path)


def test_exam_rom_and_indication_come_back_as_the_same_bundle(
    bundle: dict, engine: Engine, tmp_path: Path
) -> None:
    _import(engine, bundle, tmp_path)
    assert _bedside_rows(engine) == {"clinical_exam": 3, "range_of_motion": 4}
    assert fhir_bundle(engine=engine, mrn="B1") == bundle
    _import(engine, bundle, tmp_path)  # the natural keys: a second import adds nothing
    assert _bedside_rows(engine) == {"clinical_exam": 3, "range_of_motion": 4}


def test_the_bedside_bundle_is_valid_fhir(bundle: dict) -> None:
    assert Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True) == bundle


def test_swollen_warm_hip_is_an_exam_observation_with_loinc_pain(bundle: dict) -> None:
    exams = _observations(bundle, codes.EXAM)
    assert len(exams) == 3
    right = next(o for o in exams if o["bodySite"]["text"] == "hip right")
    assert right["code"]["coding"][0] == codes.coding(
        codes.RECORD, "clinical_exam", "clinical exam"
    )
    assert right["category"][1]["coding"][0]["code"] == "exam"
    laterality = right["bodySite"]["extension"][0]["valueCodeableConcept"]["coding"]
    assert laterality[1] == codes.coding(codes.SNOMED, "24028007", "Right")
    parts = {c["code"]["coding"][0]["code"]: c for c in right["component"]}
    assert list(parts) == ["swelling", "warmth", "erythema", "pain"]
    assert parts["swelling"]["valueCodeableConcept"]["coding"] == [
        codes.coding(codes.SIGN, "yes", "yes"),
        codes.coding(codes.SNOMED, "52101004", "Present"),
    ]
    assert parts["erythema"]["valueCodeableConcept"]["coding"][0]["code"] == "no"
    assert parts["pain"]["valueInteger"] == 6
    assert parts["pain"]["code"]["coding"][1]["system"] == codes.LOINC
    assert parts["pain"]["code"]["coding"][1]["code"] == "72514-3"
    assert right["note"] == [{"text": "warm, swollen right hip"}]
    # a sign not examined is no component; pain 0 is a rating, not a blank
    left = next(o for o in exams if o["bodySite"]["text"] == "hip left")
    assert [c["code"]["coding"][0]["code"] for c in left["component"]] == ["swelling"]
    knee = next(o for o in exams if o["bodySite"]["text"] == "knee left")
    assert knee["component"][0]["valueInteger"] == 0


def test_hip_flexion_is_a_rom_observation_in_degrees(bundle: dict) -> None:
    rom = _observations(bundle, codes.ROM)
    assert len(rom) == 4
    flexion = [o for o in rom if o["code"]["coding"][0]["code"] == "flexion"]
    assert [o["valueQuantity"]["value"] for o in flexion] == [100, 70]
    assert flexion[0]["code"]["coding"][0]["system"] == codes.MOVEMENT
    assert flexion[0]["valueQuantity"] | {"value": 0} == {
        "value": 0,
        "unit": "deg",
        "system": codes.UCUM,
        "code": "deg",
    }
    assert flexion[0]["bodySite"]["text"] == "hip right"
    rotation = next(o for o in rom if o["code"]["coding"][0]["code"] == "internal_rotation")
    assert rotation["valueQuantity"]["value"] == 12.5


def test_doppler_for_dvt_query_carries_its_indication(bundle: dict) -> None:
    studies = {
        s["extension"][0]["valueCode"]: s
        for s in (e["resource"] for e in bundle["entry"])
        if s["resourceType"] == "ImagingStudy"
    }
    assert studies["ultrasound"]["reasonCode"] == [codes.concept(codes.INDICATION, "dvt_query")]
    assert "reasonCode" not in studies["radiograph"]


def _right_hip_exam(b: dict) -> int:
    return next(
        i
        for i, e in enumerate(b["entry"])
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == codes.EXAM
        and e["resource"]["bodySite"]["text"] == "hip right"
    )


def _pain_eleven(b: dict) -> str:
    i = _right_hip_exam(b)
    pain = b["entry"][i]["resource"]["component"][-1]
    assert pain["code"]["coding"][0]["code"] == "pain"
    pain["valueInteger"] = 11
    return f"Bundle.entry[{i}].resource.component[pain].valueInteger"


def _unknown_movement_code(b: dict) -> str:
    i = _index(b, codes.ROM)
    b["entry"][i]["resource"]["code"]["coding"][0]["code"] = "wiggle"
    return f"Bundle.entry[{i}].resource.code.coding"


def _movement_without_tracker_coding(b: dict) -> str:
    i = _index(b, codes.ROM)
    b["entry"][i]["resource"]["code"] = {"coding": [{"system": codes.LOINC, "code": "0-0"}]}
    return f"Bundle.entry[{i}].resource.code"


def _rom_for_unknown_patient(b: dict) -> str:
    i = _index(b, codes.ROM)
    b["entry"][i]["resource"]["subject"] = {"reference": "urn:uuid:nobody"}  # its own
    return f"Bundle.entry[{i}].resource.subject"


def _degrees_out_of_range(b: dict) -> str:
    i = _index(b, codes.ROM)
    b["entry"][i]["resource"]["valueQuantity"]["value"] = 250
    return f"Bundle.entry[{i}].resource.valueQuantity.value"


def _radians(b: dict) -> str:
    i = _index(b, codes.ROM)
    b["entry"][i]["resource"]["valueQuantity"]["code"] = "rad"
    return f"Bundle.entry[{i}].resource.valueQuantity.code"


def _unknown_sign_answer(b: dict) -> str:
    i = _right_hip_exam(b)
    swelling = b["entry"][i]["resource"]["component"][0]
    swelling["valueCodeableConcept"]["coding"][0]["code"] = "maybe"
    return f"Bundle.entry[{i}].resource.component[swelling].valueCodeableConcept.coding"


def _unknown_indication(b: dict) -> str:
    i = next(n for n, e in enumerate(b["entry"]) if e["resource"].get("reasonCode"))
    b["entry"][i]["resource"]["reasonCode"][0]["coding"][0]["code"] = "curiosity"
    return f"Bundle.entry[{i}].resource.reasonCode[0].coding"


BROKEN: list[tuple[Callable[[dict], str], str]] = [
    (_pain_eleven, "11"),
    (_unknown_movement_code, "wiggle"),
    (_movement_without_tracker_coding, codes.MOVEMENT),
    (_rom_for_unknown_patient, "no Patient"),
    (_degrees_out_of_range, "250"),
    (_radians, "rad"),
    (_unknown_sign_answer, "maybe"),
    (_unknown_indication, "curiosity"),
]


@pytest.mark.parametrize(("break_it", "said"), BROKEN, ids=[f.__name__[1:] for f, _ in BROKEN])
def test_bad_bedside_value_is_refused_at_its_element_and_nothing_is_written(
    bundle: dict,
    engine: Engine,
    tmp_path: Path,
    break_it: Callable[[dict], str],
    said: str,
) -> None:
    broken = copy.deepcopy(bundle)
    element = break_it(broken)
    with pytest.raises(ValidationFailed) as failed:
        _import(engine, broken, tmp_path)
    problems = failed.value.problems
    assert {p.field.split(".resource")[0] for p in problems} == {element.split(".resource")[0]}
    assert element in [p.field for p in problems], problems
    assert any(said in p.reason for p in problems if p.field == element), problems
    assert set(count_rows(engine).values()) == {0}
    assert _bedside_rows(engine) == {"clinical_exam": 0, "range_of_motion": 0}


def test_another_systems_boolean_sign_is_read_as_yes_or_no(
    bundle: dict, engine: Engine, tmp_path: Path
) -> None:
    changed = copy.deepcopy(bundle)
    i = _right_hip_exam(changed)
    swelling = changed["entry"][i]["resource"]["component"][0]
    del swelling["valueCodeableConcept"]
    swelling["valueBoolean"] = True
    _import(engine, changed, tmp_path)
    assert fhir_bundle(engine=engine, mrn="B1") == bundle


def test_pain_coded_in_loinc_alone_is_read_as_pain(
    bundle: dict, engine: Engine, tmp_path: Path
) -> None:
    changed = copy.deepcopy(bundle)
    i = _right_hip_exam(changed)
    pain = changed["entry"][i]["resource"]["component"][-1]
    pain["code"] = {"coding": [pain["code"]["coding"][1]]}
    assert pain["code"]["coding"][0]["code"] == "72514-3"
    _import(engine, changed, tmp_path)
    assert fhir_bundle(engine=engine, mrn="B1") == bundle
