"""Hostile and broken FHIR Bundles (issue 15, item 9) are refused in words.

An unknown resourceType once surfaced as fhir.resources' `KeyError 'R4.FooType'`, and
deeply nested JSON as a `RecursionError`. Every such file is now the normal user error
(ValidationFailed, naming the element), through the import service (both backends)
and the `fhir import` command (exit 2, the words on stderr), and nothing is written.

A value holding a lone CR once split its row in the temporary CSV the FHIR import
writes (and `'=x` lost its quote): the temporary files are written as the CSV export
writes, so every value reaches the import's value rules as it stood in the Bundle.

There is no FHIR import page or API route (only `GET /fhir/Patient/{mrn}/$everything`
reads): the web side has nothing to refuse here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import count_rows
from tracker.cli import run
from tracker.errors import ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.interchange.fhir_import import MAX_DEPTH, import_bundle
from tracker.services.imports import import_fhir


def _bundle(*, mrn: str = "P1", note: str = "healing well", team: str = "") -> dict[str, Any]:
    """A small valid Bundle: one patient and one injury with a note."""
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": codes.MRN_SYSTEM, "value": mrn}],
        "birthDate": "1970-01-01",
    }
    if team:
        patient["extension"] = [{"url": codes.TEAM_EXT, "valueString": team}]
    injury = {
        "resourceType": "Condition",
        "category": [{"coding": [{"system": codes.RECORD, "code": codes.INJURY}]}],
        "code": {"coding": [{"system": codes.INJURY_KIND, "code": "burn"}]},
        "subject": {"reference": "urn:uuid:patient"},
        "onsetDateTime": "2024-01-10",
        "note": [{"text": note}],
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:patient", "resource": patient},
            {"fullUrl": "urn:uuid:injury", "resource": injury},
        ],
    }


def _text(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False)


def _entry(resource: Any) -> str:
    """A valid Bundle with one more entry holding `resource`."""
    bundle = _bundle(mrn="P2")
    bundle["entry"].append({"fullUrl": "urn:uuid:extra", "resource": resource})
    return _text(bundle)


def _nested(depth: int) -> str:
    """A Bundle whose patient carries an extension nested `depth` arrays deep."""
    text = _text(_bundle(mrn="P2"))
    return text.replace('"birthDate"', '"x": ' + "[" * depth + "]" * depth + ', "birthDate"', 1)


def _changed(change: Callable[[dict[str, Any]], None]) -> str:
    bundle = _bundle(mrn="P2")
    change(bundle)
    return _text(bundle)


def _big_note(bundle: dict[str, Any]) -> None:
    bundle["entry"][1]["resource"]["note"] = [{"text": "x" * 5_000_000}]


def _bad_birth_date(bundle: dict[str, Any]) -> None:
    bundle["entry"][0]["resource"]["birthDate"] = "the first of May"


def _contained_unknown(bundle: dict[str, Any]) -> None:
    bundle["entry"][0]["resource"]["contained"] = [{"resourceType": "Foo", "id": "f"}]


# case: (file text, element named, words in the reason)
HOSTILE: dict[str, tuple[str | bytes, str, str]] = {
    "unknown resourceType": (
        _entry({"resourceType": "Foo"}),
        "Bundle.entry[2].resource.resourceType",
        "'Foo' is not a FHIR R4 resource type",
    ),
    "unsupported resourceType": (
        _entry({"resourceType": "Account", "status": "active"}),
        "Bundle.entry[2].resource.resourceType",
        "'Account' is not supported",
    ),
    "resourceType missing": (
        _entry({"id": "x"}),
        "Bundle.entry[2].resource.resourceType",
        "is required",
    ),
    "resourceType a number": (
        _entry({"resourceType": 5}),
        "Bundle.entry[2].resource.resourceType",
        "not a number",
    ),
    "resourceType a huge string": (
        _entry({"resourceType": "Q" * 1_000_000}),
        "Bundle.entry[2].resource.resourceType",
        "is not a FHIR R4 resource type",
    ),
    "resource a string": (_entry("Patient"), "Bundle.entry[2].resource", "not an object"),
    "entry a number": (
        _changed(lambda b: b["entry"].append(7)),
        "Bundle.entry[2]",
        "must be an object",
    ),
    "entry not a list": (
        _changed(lambda b: b.update(entry="everything")),
        "Bundle.entry",
        "must be a list",
    ),
    "contained resource of an unknown type": (
        _changed(_contained_unknown),
        "Bundle",
        "is not valid FHIR R4",
    ),
    "invalid FHIR (pydantic)": (
        _changed(_bad_birth_date),
        "Bundle.entry.0.resource.birthDate",
        "is not valid FHIR R4",
    ),
    "top level an array": (_text([_bundle()]), "Bundle.resourceType", "not an array"),
    "top level a string": (_text("Bundle"), "Bundle.resourceType", "not a string"),
    "top level a number": ("42", "Bundle.resourceType", "not a number"),
    "top level null": ("null", "Bundle.resourceType", "not null"),
    "top level a Patient": (
        _text(_bundle()["entry"][0]["resource"]),
        "Bundle.resourceType",
        "not a Patient",
    ),
    "100000 levels deep": ("[" * 100_000 + "]" * 100_000, "Bundle", "100000 levels deep"),
    "100000 levels deep, unclosed": ('{"a":' * 100_000, "Bundle", "levels deep"),
    "1000 levels deep inside a Bundle": (_nested(1000), "Bundle", f"at most {MAX_DEPTH}"),
    "invalid JSON": ("{ not json", "Bundle", "is not JSON: Expecting property name"),
    "invalid JSON, line and column": ('{\n "resourceType": "Bundle",\n}', "Bundle", "line 3"),
    "empty file": ("", "Bundle", "is not JSON"),
    "NaN": (_text(_bundle()).replace('"1970-01-01"', "NaN"), "Bundle", "NaN"),
    "a 5000-digit number": (
        '{"resourceType": "Bundle", "n": ' + "9" * 5000 + "}",
        "Bundle",
        "5000",
    ),
    "not UTF-8": (b'{"resourceType": "Bundle\xff"}', "Bundle", "not UTF-8"),
    "a 5 MB note": (
        _changed(_big_note),
        "Bundle.entry[1].resource.note",
        "is longer than 2000 characters",
    ),
}


@pytest.fixture
def stored(engine: Engine) -> Engine:
    """One patient already stored, so that "nothing written" is not just "empty"."""
    import_bundle(engine, _bundle(mrn="P0", team="ward"))
    return engine


def _counts(engine: Engine) -> dict[str, int]:
    counts = count_rows(engine)
    with engine.connect() as conn:
        for table in ("team", "audit_event"):
            counts[table] = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    return counts


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundle_is_refused_in_words_and_nothing_is_written(
    case: str, stored: Engine, tmp_path: Path
) -> None:
    content, element, words = HOSTILE[case]
    path = _write(tmp_path, content)
    before = _counts(stored)
    with pytest.raises(ValidationFailed) as failed:
        import_fhir(engine=stored, path=path, actor="tester")
    found = [(p.source, p.field, p.reason) for p in failed.value.problems]
    assert any(
        source == "hostile.json" and field == element and words in reason
        for source, field, reason in found
    ), found
    assert all(len(reason) < 400 for _, _, reason in found), "the words stay readable"
    assert all(p.sentence() for p in failed.value.problems)
    assert _counts(stored) == before


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundle_makes_the_command_exit_2_with_words(
    case: str, sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import_bundle(sqlite_engine, _bundle(mrn="P0"))
    content, element, words = HOSTILE[case]
    path = _write(tmp_path, content)
    before = _counts(sqlite_engine)
    assert run(["--database-url", _url(sqlite_engine), "fhir", "import", str(path)]) == 2
    said = capsys.readouterr().err
    assert f"hostile.json: {element}: " in said and words in said, said
    assert "Traceback" not in said and "Nothing was written" in said
    assert _counts(sqlite_engine) == before


def test_a_parsed_document_nested_too_deep_is_refused_without_recursion(
    sqlite_engine: Engine,
) -> None:
    """A caller handing over parsed JSON (not a file) is held to the same depth."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    bundle = _bundle()
    bundle["entry"][0]["resource"]["x"] = deep
    with pytest.raises(ValidationFailed, match="levels deep"):
        import_bundle(sqlite_engine, bundle, source="deep.json")
    assert count_rows(sqlite_engine)["patient"] == 0


def test_an_exported_bundle_is_far_below_the_depth_limit(tmp_path: Path) -> None:
    from tracker.interchange.fhir_import import _text_depth

    assert _text_depth(_text(_bundle(team="ward"))) < MAX_DEPTH // 4


# --- values through the temporary CSV: exactly as in the Bundle ---

NOTES = {
    "lone CR": "first\rsecond",
    "CRLF": "first\r\nsecond",
    "LF": "first\nsecond",
    "leading =": '=HYPERLINK("http://x.io","go")',
    "leading quote then =": "'=SUM(A1)",
    "two quotes then +": "''+1",
    "CR then =": "a\r=1+1",
    "quote and comma": 'she said "no, not yet"',
    "apostrophe": "O'Brien's 'tis",
}


def _stored_notes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT notes FROM injury ORDER BY id")).scalars())


@pytest.mark.parametrize("case", sorted(NOTES))
def test_a_note_reaches_the_store_exactly(case: str, engine: Engine, tmp_path: Path) -> None:
    path = _write(tmp_path, _text(_bundle(note=NOTES[case])))
    summary = import_fhir(engine=engine, path=path, actor="tester")
    assert summary.added == {"patients.csv": 1, "injuries.csv": 1}
    assert _stored_notes(engine) == [NOTES[case]]
    again = import_fhir(engine=engine, path=path, actor="tester")  # same row: nothing new
    assert again.total_added == 0


def test_a_lone_cr_note_through_the_command(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _text(_bundle(note="first\rsecond")))
    assert run(["--database-url", _url(engine), "fhir", "import", str(path)]) == 0, (
        capsys.readouterr().err
    )
    assert _stored_notes(engine) == ["first\rsecond"]


@pytest.mark.parametrize("mrn", ["P\r1", "P\r\n1"])
def test_a_lone_cr_in_an_mrn_is_the_mrn_rule_refusal(
    mrn: str, stored: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _text(_bundle(mrn=mrn)))
    before = _counts(stored)
    with pytest.raises(ValidationFailed) as failed:
        import_fhir(engine=stored, path=path, actor="tester")
    places = {(p.field, p.reason) for p in failed.value.problems}
    assert places == {
        ("Bundle.entry[0].resource.identifier", "contains a carriage return, which is not allowed"),
        ("Bundle.entry[1].resource.subject", "contains a carriage return, which is not allowed"),
    }, places
    assert run(["--database-url", _url(stored), "fhir", "import", str(path)]) == 2
    assert "contains a carriage return" in capsys.readouterr().err
    assert _counts(stored) == before


@pytest.mark.parametrize("text", ["=P1", "'=P1", "+1", "@home"])
def test_formula_looking_identifiers_are_stored_as_written(
    text: str, sqlite_engine: Engine
) -> None:
    import_bundle(sqlite_engine, _bundle(mrn=text, team=text))
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT mrn FROM patient")).scalar_one() == text
        assert conn.execute(sa.text("SELECT name FROM team")).scalar_one() == text
