"""One rule per value (issue 15, requirement 2): the same bad value sent through every
entry point (CSV import, the web form, the JSON API, the FHIR import) is refused with
the same reason, naming the same field, and nothing is written.

A new bad value is one `Bad(...)` line in BAD; a new entry point is one function in
ENTRY_POINTS that sends a record and returns the refusals as (field, reason) pairs.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.web.web_support import api_token, csrf_in, make_client, sign_in
from tracker import labels
from tracker.errors import ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_import import import_folder
from tracker.interchange.fhir_import import import_bundle
from tracker.store.models import Injury, LabResult, Patient, table_of

TODAY = dt.date.today()
TOMORROW = (TODAY + dt.timedelta(days=1)).isoformat()
STORED = "H-EARLY"  # a demo patient, born 1990-07-02, team brain_injury_unit
BORN = "1990-07-02"

# A good record of each kind; a bad value replaces one of its fields.
GOOD: dict[str, dict[str, Any]] = {
    "patient": {
        "mrn": "N-MATRIX",
        "birth_date": "1980-01-02",
        "sex": "female",
        "family_name": "Matrix",
        "given_name": "Ada",
        "team": "brain_injury_unit",
    },
    "injury": {"kind": "traumatic_brain_injury", "date": "2026-01-05", "notes": "fell"},
    "lab": {"date": "2026-01-05", "analyte": "alp", "value": 120.0, "unit": "U/L"},
}
UNKNOWN = re.compile(r"unknown column|Extra inputs are not permitted")


@dataclass(frozen=True)
class Bad:
    name: str
    record: str  # a key of GOOD
    field: str  # the CSV column, form input and API field
    value: Any
    reason: str | re.Pattern[str]  # what every entry point says about it
    skip: tuple[str, ...] = ()  # entry points the value cannot be sent through
    unknown: bool = False  # `field` is not a field of the record at all
    # a misspelt FHIR element, where FHIR spells the field otherwise (`note`, not `notes`)
    fhir_field: str | None = None


BAD = [
    Bad("crlf-in-mrn", "patient", "mrn", "N-1\r\n2",
        "contains a carriage return, which is not allowed"),
    Bad("slash-in-mrn", "patient", "mrn", "N/1",
        "contains a '/', which is not allowed in an MRN"),
    Bad("lf-in-team", "patient", "team", "brain\nunit",
        "contains a line break, which is not allowed"),
    Bad("nul-in-note", "injury", "notes", "left\x00side",
        "contains a NUL, which is not allowed"),
    Bad("bel-in-team", "patient", "team", "brain\x07unit",
        "contains control character U+0007, which is not allowed"),
    Bad("note-of-2001-characters", "injury", "notes", "x" * 2001,
        "is longer than 2000 characters"),
    Bad("lab-value-1e13", "lab", "value", 1e13, "is outside -1e12 to 1e12"),
    Bad("birth-1899-12-31", "patient", "birth_date", "1899-12-31",
        "1899-12-31 is before 1900-01-01"),
    Bad("birth-0001-01-01", "patient", "birth_date", "0001-01-01",
        "0001-01-01 is before 1900-01-01"),
    Bad("injury-tomorrow", "injury", "date", TOMORROW, f"{TOMORROW} is in the future"),
    Bad("lab-before-birth", "lab", "date", "1990-07-01",
        f"1990-07-01 is before the patient's birth date {BORN}"),
    Bad("misspelt-notes", "injury", "note", "fell", UNKNOWN, skip=("form",), unknown=True,
        fhir_field="notes"),
    Bad("misspelt-brooker-grade", "injury", "brooker_grade", 2, UNKNOWN, skip=("form",),
        unknown=True),
]  # fmt: skip

Refusals = list[tuple[str, str]]


def _row(bad: Bad) -> dict[str, Any]:
    row = dict(GOOD[bad.record])
    row[bad.field] = bad.value
    return row


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return str(value)


# --- the entry points ------------------------------------------------------------------------

CSV_FILES = {"patient": "patients.csv", "injury": "injuries.csv", "lab": "labs.csv"}


def through_csv(engine: Engine, tmp_path: Path, bad: Bad) -> Refusals:
    row = _row(bad)
    if bad.record != "patient":
        row = {"mrn": STORED, **row}
    with (tmp_path / CSV_FILES[bad.record]).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(row))
        writer.writerow([_text(v) for v in row.values()])
    try:
        import_folder(engine, tmp_path)
    except ValidationFailed as failed:
        return [(p.field, p.reason) for p in failed.problems]
    return []


FORM_URLS = {
    "patient": "/patients/new",
    "injury": f"/patients/{STORED}/injuries/new",
    "lab": f"/patients/{STORED}/labs/new",
}


def through_form(engine: Engine, tmp_path: Path, bad: Bad) -> Refusals:
    """The form page shows each problem beside its input as tracker.labels says it; a
    refusal is found by those words (the field's name followed by the reason)."""
    with make_client(engine) as client:
        sign_in(client, "clinician")
        url = FORM_URLS[bad.record]
        token = csrf_in(client.get(url).text)
        data = {k: _text(v) for k, v in _row(bad).items()}
        response = client.post(url, data={**data, "csrf_token": token})
    if response.status_code == 303:
        return []
    assert response.status_code == 422, response.text[:500]
    page = html.unescape(response.text)
    expected = bad.reason if isinstance(bad.reason, str) else ""
    said = labels.field_error(bad.field, expected).says
    return [(bad.field, expected)] if said in page else [("page", page[:2000])]


API_URLS = {
    "patient": "/api/v1/patients",
    "injury": f"/api/v1/patients/{STORED}/injuries",
    "lab": f"/api/v1/patients/{STORED}/labs",
}


def through_api(engine: Engine, tmp_path: Path, bad: Bad) -> Refusals:
    with make_client(engine) as client:
        headers = {"Authorization": f"Bearer {api_token(engine, 'clinician')}"}
        response = client.post(API_URLS[bad.record], json=_row(bad), headers=headers)
    if response.status_code == 201:
        return []
    assert response.status_code == 422, response.text
    return [(str(d["loc"][-1]), d["msg"]) for d in response.json()["detail"]]


PATIENT_URL = "urn:uuid:patient"
# the element each field comes from, as the FHIR import names it
FHIR_ELEMENTS = {
    "mrn": "identifier",
    "team": "extension[team]",
    "birth_date": "birthDate",
    "notes": "note",
    ("injury", "date"): "onsetDateTime",
    ("lab", "date"): "effectiveDateTime",
    "value": "valueQuantity.value",
}


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _fhir_patient(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": codes.MRN_SYSTEM, "value": row["mrn"]}],
        "name": [{"family": row["family_name"], "given": [row["given_name"]]}],
        "gender": row["sex"],
        "birthDate": row["birth_date"],
        "extension": [{"url": codes.TEAM_EXT, "valueString": row["team"]}],
    }


def _fhir_record(bad: Bad, row: dict[str, Any]) -> dict[str, Any]:
    record = bad.record
    subject = {"reference": PATIENT_URL}
    if record == "injury":
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "category": [_coding(codes.RECORD, codes.INJURY)],
            "code": _coding(codes.INJURY_KIND, row["kind"]),
            "subject": subject,
            "onsetDateTime": row["date"],
            "note": [{"text": row["notes"]}],
        }
    else:
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "category": [_coding(codes.RECORD, codes.LAB)],
            "code": _coding(codes.ANALYTE, row["analyte"]),
            "subject": subject,
            "effectiveDateTime": row["date"],
            "valueQuantity": {
                "value": row["value"], "unit": row["unit"], "system": codes.UCUM,
                "code": row["unit"],
            },
        }  # fmt: skip
    if bad.unknown:  # a misspelt element
        resource[bad.fhir_field or bad.field] = bad.value
    return resource


def through_fhir(engine: Engine, tmp_path: Path, bad: Bad) -> Refusals:
    row = _row(bad)
    if bad.record == "patient":
        entries = [{"fullUrl": PATIENT_URL, "resource": _fhir_patient(row)}]
    else:
        with engine.connect() as conn:
            p = table_of(Patient).c
            stored = conn.execute(sa.select(Patient).where(p.mrn == STORED)).one()
        patient = {k: getattr(stored, k) for k in GOOD["patient"]}
        patient["birth_date"] = patient["birth_date"].isoformat()
        entries = [
            {"fullUrl": PATIENT_URL, "resource": _fhir_patient(patient)},
            {"fullUrl": "urn:uuid:record", "resource": _fhir_record(bad, row)},
        ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    try:
        import_bundle(engine, bundle)
    except ValidationFailed as failed:
        return [(p.field, p.reason) for p in failed.problems]
    return []


EntryPoint = Callable[[Engine, Path, Bad], Refusals]
ENTRY_POINTS: dict[str, EntryPoint] = {
    "csv": through_csv,
    "form": through_form,
    "api": through_api,
    "fhir": through_fhir,
}


def _named_by(entry: str, bad: Bad, field_name: str) -> bool:
    """Whether a refusal's field is the bad value's field, as that entry point names it."""
    if entry != "fhir":
        return field_name == bad.field
    if bad.unknown:
        return field_name.endswith(f".{bad.fhir_field or bad.field}")
    element = FHIR_ELEMENTS.get((bad.record, bad.field)) or FHIR_ELEMENTS[bad.field]
    return field_name.endswith(f".{element}")


def _said(bad: Bad, reason: str) -> bool:
    if isinstance(bad.reason, str):
        return reason == bad.reason
    return bad.reason.search(reason) is not None


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            model.__name__: conn.execute(
                sa.select(sa.func.count()).select_from(table_of(model))
            ).scalar_one()
            for model in (Patient, Injury, LabResult)
        }


CASES = [
    pytest.param(entry, bad, id=f"{bad.name}-through-{entry}")
    for bad in BAD
    for entry in ENTRY_POINTS
    if entry not in bad.skip
]


@pytest.mark.parametrize(("entry", "bad"), CASES)
def test_the_same_bad_value_is_refused_alike_through_every_entry_point(
    demo_engine: Engine, tmp_path: Path, entry: str, bad: Bad
) -> None:
    before = _counts(demo_engine)
    refusals = ENTRY_POINTS[entry](demo_engine, tmp_path, bad)
    assert refusals, f"{bad.name} through {entry} was accepted"
    matching = [(f, r) for f, r in refusals if _named_by(entry, bad, f) and _said(bad, r)]
    assert matching, (
        f"{bad.name} through {entry}: expected {bad.field}: {bad.reason}, got {refusals}"
    )
    assert _counts(demo_engine) == before, "nothing is written when a value is refused"


@pytest.mark.parametrize("record", list(GOOD))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_the_good_records_of_the_matrix_are_accepted_through_every_entry_point(
    demo_engine: Engine, tmp_path: Path, entry: str, record: str
) -> None:
    """The matrix's good records pass everywhere, so each refusal above is the bad value's."""
    good = Bad("good", record, "family_name" if record == "patient" else "date",
               GOOD[record]["family_name" if record == "patient" else "date"], "")  # fmt: skip
    assert ENTRY_POINTS[entry](demo_engine, tmp_path, good) == []
