"""Lab units are a vocabulary per analyte (model-spec v2, section 1): the one rule
refuses the same unit with the same words in a CSV file, a form, the API, a FHIR
Bundle and the database itself."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tests.web.web_support import add_role_users, api_token, csrf_in, make_client, sign_in
from tracker import vocab
from tracker.errors import ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_import import import_folder
from tracker.interchange.fhir_import import import_bundle
from tracker.services.interop import fhir_bundle
from tracker.services.records import add_lab, correct_lab

REFUSAL = "'IU/L' is not one of the units for alp: U/L, ukat/L"
LAB = {"date": "2024-03-01", "analyte": "alp", "value": 140, "unit": "IU/L"}


@pytest.fixture
def stored(sqlite_engine: Engine, tmp_path: Path) -> Engine:
    """Patient P1 with one ALP in U/L, and a user per role."""
    folder = tmp_path / "stored"
    write_csv(folder, "patients.csv", [{"mrn": "P1", "birth_date": "1970-01-01"}])
    write_csv(
        folder,
        "labs.csv",
        [{"mrn": "P1", "date": "2024-02-01", "analyte": "alp", "value": 120, "unit": "U/L"}],
    )
    import_folder(sqlite_engine, folder, actor="tests")
    add_role_users(sqlite_engine)
    return sqlite_engine


def _labs(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT analyte, unit FROM lab_result"))]


def test_lab_unit_outside_its_analyte_is_refused_everywhere(stored: Engine, tmp_path: Path) -> None:
    before = count_rows(stored)

    # a CSV file: file, line and field named
    folder = tmp_path / "csv"
    write_csv(folder, "labs.csv", [{"mrn": "P1", **LAB}])
    with pytest.raises(ValidationFailed) as csv_refusal:
        import_folder(stored, folder)
    assert [str(p) for p in csv_refusal.value.problems] == [f"labs.csv:2: unit: {REFUSAL}"]

    with make_client(stored) as client:
        # the web form: the reason beside the unit field
        sign_in(client, "clinician")
        form = client.get("/patients/P1/labs/new")
        page = client.post(
            "/patients/P1/labs/new",
            data={**{k: str(v) for k, v in LAB.items()}, "csrf_token": csrf_in(form.text)},
        )
        assert page.status_code == 422
        assert re.search(r'id="f-unit-err">Unit [^<]*is not one of the units for ALP', page.text)
        assert "U/L, ukat/L" in page.text

        # the API: the same words at body.unit
        token = api_token(stored, "clinician")
        answer = client.post(
            "/api/v1/patients/P1/labs", json=LAB, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 422
    assert {"loc": ["body", "unit"], "msg": REFUSAL, "type": "value_error"} in answer.json()[
        "detail"
    ]

    # a FHIR Bundle: at the Observation's valueQuantity.unit
    bundle = fhir_bundle(engine=stored, mrn="P1")
    index, lab = next(
        (i, e["resource"])
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["resourceType"] == "Observation"
    )
    lab["valueQuantity"]["unit"] = "IU/L"
    lab["effectiveDateTime"] = "2024-03-01"
    with pytest.raises(ValidationFailed) as fhir_refusal:
        import_bundle(stored, bundle, source="bundle.json")
    assert [str(p) for p in fhir_refusal.value.problems] == [
        f"bundle.json: Bundle.entry[{index}].resource.valueQuantity.unit: {REFUSAL}"
    ]

    # the database itself
    with pytest.raises(sa.exc.IntegrityError), stored.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lab_result (patient_id, date, analyte, value, unit) "
                "SELECT id, '2024-03-01', 'alp', 140, 'IU/L' FROM patient"
            )
        )
    assert count_rows(stored) == before
    assert _labs(stored) == [("alp", "U/L")]


def test_every_analyte_takes_each_of_its_own_units_and_no_other(
    stored: Engine, tmp_path: Path
) -> None:
    rows, expected_bad = [], []
    day = 0
    for analyte, units in vocab.LAB_UNITS.items():
        for unit in vocab.ALL_LAB_UNITS:
            day += 1
            rows.append(
                {"mrn": "P1", "date": f"2023-{1 + day // 28:02d}-{1 + day % 28:02d}",
                 "analyte": analyte, "value": 1, "unit": unit}
            )  # fmt: skip
            if unit not in units:
                expected_bad.append(len(rows) + 1)
    write_csv(tmp_path / "all", "labs.csv", rows)
    with pytest.raises(ValidationFailed) as refused:
        import_folder(stored, tmp_path / "all")
    assert sorted(p.line for p in refused.value.problems) == expected_bad
    assert {p.field for p in refused.value.problems} == {"unit"}

    good = [r for i, r in enumerate(rows) if i + 2 not in expected_bad]
    write_csv(tmp_path / "good", "labs.csv", good)
    summary = import_folder(stored, tmp_path / "good")
    assert summary.added["labs.csv"] == sum(len(u) for u in vocab.LAB_UNITS.values())


def test_a_unit_differing_only_in_case_is_refused_not_rewritten(stored: Engine) -> None:
    # units are case-sensitive UCUM-style strings: the import never guesses a spelling
    with pytest.raises(ValidationFailed) as refused:
        add_lab(engine=stored, actor="nurse", mrn="P1", date="2024-03-02", analyte="crp",
                value=4, unit="mg/l")  # fmt: skip
    [problem] = refused.value.problems
    assert (problem.field, problem.reason) == (
        "unit",
        "'mg/l' is not one of the units for crp: mg/L, mg/dL",
    )


def test_correcting_the_analyte_alone_is_checked_against_the_stored_unit(stored: Engine) -> None:
    with stored.connect() as conn:
        lab_id, version = conn.execute(sa.text("SELECT id, version FROM lab_result")).one()
    # an ALP in U/L re-labelled as a CRP would be a CRP in U/L: refused
    with pytest.raises(ValidationFailed) as refused:
        correct_lab(
            engine=stored, actor="nurse", record_id=lab_id, expected_version=version,
            changes={"analyte": "crp"},
        )  # fmt: skip
    assert [p.reason for p in refused.value.problems] == [
        "'U/L' is not one of the units for crp: mg/L, mg/dL"
    ]
    correct_lab(
        engine=stored, actor="nurse", record_id=lab_id, expected_version=version,
        changes={"analyte": "ck"},
    )  # fmt: skip
    assert _labs(stored) == [("ck", "U/L")]


def test_a_fhir_lab_is_read_by_its_ucum_code_when_it_has_one(stored: Engine) -> None:
    bundle = fhir_bundle(engine=stored, mrn="P1")
    lab = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    moved = copy.deepcopy(bundle)
    observation = next(
        e["resource"] for e in moved["entry"] if e["resource"].get("id") == lab.get("id")
    )
    observation["code"] = {"coding": [{"system": codes.ANALYTE, "code": "d_dimer"}]}
    # the display text may carry the micro sign; the UCUM code is what is read
    observation["valueQuantity"] = {
        "value": 0.4, "unit": "\u00b5g/mL FEU", "system": codes.UCUM, "code": "ug/mL{FEU}",
    }  # fmt: skip
    observation["effectiveDateTime"] = "2024-03-05"
    import_bundle(stored, moved, source="bundle.json")
    assert ("d_dimer", "ug/mL FEU") in _labs(stored)

    observation["effectiveDateTime"] = "2024-03-06"
    observation["valueQuantity"]["code"] = "ng/mL"  # FEU or DDU? not said: refused
    with pytest.raises(ValidationFailed) as refused:
        import_bundle(stored, moved, source="bundle.json")
    [problem] = refused.value.problems
    assert problem.field.endswith(".valueQuantity.code")
    assert problem.reason == (
        "'ng/mL' is not one of the units for d_dimer: mg/L FEU, ug/mL FEU, ng/mL FEU, ng/mL DDU"
    )
