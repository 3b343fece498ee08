"""Spreadsheet-safe exports (issue 15, failure 4 and requirement 6).

A text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a
formula to a spreadsheet (OWASP CSV injection). Every CSV export (the folder export
with its patients.csv, and the de-identified research export) writes such a cell with
a `'` in front, and the import takes that quote off again, so export -> import ->
export gives the same bytes. Numbers and dates, which the format writes itself, are
never touched: -0.5 in a numeric column is a number.

The values are planted straight into the database, as data that predates the input
rules would be (a tab or a carriage return cannot come in through the import any more).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.security.support import TRIGGERS, formula_cells
from tests.security.support import csv_rows as _rows
from tracker.interchange import csv_format as fmt
from tracker.interchange import deidentify
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder
from tracker.services.assessment import assess_all, write_cohort_assessment

PAYLOADS = {
    "cmd": "=cmd|' /C calc'!A0",
    "hyperlink": '=HYPERLINK("http://x.io","go")',  # 30: dose_unit's limit
    "plus": "+SUM(1+1)*cmd|' /C calc'!A0",
    "minus": "-2+3+cmd|' /C calc'!A0",
    "at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "carriage-return": "\r=1+1",
}
KEY = b"a-long-research-secret-2026"

# Every free-text cell of the interchange files (table, column), besides the MRN and
# the team, which are planted on their own; lab units are a fixed list (a CHECK).
TEXT_CELLS = {
    ("patient", "family_name"): ("patients.csv", "family_name"),
    ("patient", "given_name"): ("patients.csv", "given_name"),
    ("injury", "notes"): ("injuries.csv", "notes"),
    ("imaging_study", "accession"): ("imaging.csv", "accession"),
    ("site_finding", "notes"): ("imaging.csv", "notes"),
    ("bone_scan_measurement", "reference_region"): ("bone_scans.csv", "reference_region"),
    ("treatment_course", "dose_unit"): ("treatments.csv", "dose_unit"),
    ("procedure", "notes"): ("procedures.csv", "notes"),
    ("clinical_exam", "notes"): ("exams.csv", "notes"),
}


def _store_one_of_each(engine: Engine, folder: Path) -> None:
    """One patient with one record in every interchange file, in plain words."""
    write_csv(
        folder,
        "patients.csv",
        [{"mrn": "P1", "birth_date": "1970-01-01", "family_name": "Okafor", "team": "ward"}],
    )
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
                "accession": "A1",
            }
        ],
    )
    write_csv(
        folder,
        "bone_scans.csv",
        [
            {
                "mrn": "P1",
                "date": "2024-03-02",
                "site": "hip",
                "side": "left",
                "phase": "delayed",
                "ratio": 1.5,
                "reference_region": "femur",
            }
        ],
    )
    write_csv(
        folder,
        "treatments.csv",
        [
            {
                "mrn": "P1",
                "agent": "etidronate",
                "intent": "treatment",
                "start_date": "2024-03-05",
                "dose": 20,
                "dose_unit": "mg/kg/day",
            }
        ],
    )
    write_csv(
        folder,
        "procedures.csv",
        [{"mrn": "P1", "kind": "resection", "date": "2024-04-01", "site": "hip", "side": "left"}],
    )
    write_csv(
        folder,
        "labs.csv",
        [
            {
                "mrn": "P1",
                "date": "2024-03-01",
                "analyte": "crp",
                "value": -0.5,
                "unit": "mg/L",
                "ref_low": -1,
                "ref_high": 5,
            }
        ],
    )
    write_csv(
        folder,
        "exams.csv",
        [{"mrn": "P1", "date": "2024-03-01", "site": "hip", "side": "left", "pain": 3}],
    )
    write_csv(
        folder,
        "rom.csv",
        [
            {
                "mrn": "P1",
                "date": "2024-03-01",
                "site": "hip",
                "side": "left",
                "movement": "flexion",
                "degrees": 95,
            }
        ],
    )
    import_folder(engine, folder)


def _plant(engine: Engine, value: str) -> None:
    """`value` in every text cell, the MRN and the team name (as old data might hold it)."""
    with engine.begin() as conn:
        for table, column in TEXT_CELLS:
            conn.execute(sa.text(f"UPDATE {table} SET {column} = :v"), {"v": value})
        conn.execute(sa.text("UPDATE patient SET mrn = :v"), {"v": value})
        conn.execute(sa.text("INSERT INTO team (name) VALUES (:v)"), {"v": value})
        conn.execute(sa.text("UPDATE patient SET team = :v"), {"v": value})


def _planted(engine: Engine, folder: Path, payload: str) -> str:
    """One record of each kind stored, then PAYLOADS[payload] planted in every text
    cell (`_plant`); the planted value."""
    _store_one_of_each(engine, folder)
    value = PAYLOADS[payload]
    _plant(engine, value)
    return value


def _stored(engine: Engine, table: str, column: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT {column} FROM {table}")).scalars())


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_patient_export_quotes_names_mrn_and_team_that_begin_like_a_formula(
    payload: str, engine: Engine, tmp_path: Path
) -> None:
    value = _planted(engine, tmp_path / "in", payload)
    export_folder(engine, tmp_path / "out")
    [patient] = _rows(tmp_path / "out" / "patients.csv")
    for column in ("mrn", "family_name", "given_name", "team"):
        assert patient[column] == "'" + value, column


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_folder_export_quotes_every_text_cell_that_begins_like_a_formula(
    payload: str, engine: Engine, tmp_path: Path
) -> None:
    value = _planted(engine, tmp_path / "in", payload)
    export_folder(engine, tmp_path / "out")
    for file_name, column in [*TEXT_CELLS.values(), *((f.name, "mrn") for f in fmt.FORMATS)]:
        [row] = _rows(tmp_path / "out" / file_name)
        assert row[column] == "'" + value, (file_name, column)
    assert formula_cells(tmp_path / "out") == []


def test_negative_numbers_are_numbers_not_formulas(engine: Engine, tmp_path: Path) -> None:
    _store_one_of_each(engine, tmp_path / "in")
    export_folder(engine, tmp_path / "out")
    [lab] = _rows(tmp_path / "out" / "labs.csv")
    assert (lab["value"], lab["ref_low"], lab["ref_high"]) == ("-0.5", "-1", "5")
    [patient] = _rows(tmp_path / "out" / "patients.csv")
    assert (patient["mrn"], patient["birth_date"]) == ("P1", "1970-01-01")


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_research_export_quotes_kept_text_and_hashes_the_stored_mrn(
    payload: str, engine: Engine, tmp_path: Path
) -> None:
    value = _planted(engine, tmp_path / "in", payload)
    deidentify.export_deidentified(engine=engine, folder=tmp_path / "out", key=KEY, keep_team=True)
    out = tmp_path / "out"
    [patient] = _rows(out / "patients.csv")
    assert patient["team"] == "'" + value
    # the pseudonym is the stored MRN's, not the quoted cell's: studies stay linkable
    assert patient["mrn"] == deidentify.pseudonym(KEY, value)
    [scan] = _rows(out / "bone_scans.csv")
    assert scan["reference_region"] == "'" + value
    [course] = _rows(out / "treatments.csv")
    assert course["dose_unit"] == "'" + value
    assert formula_cells(out) == []


# Values the import accepts (a tab or CR at the start is refused, and stripped, as
# leading space always was), with and without a quote of their own in front.
ROUND_TRIP = [
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)",
    "-2+3",
    "@SUM(A1)",
    "'=already quoted by someone",
    "''+two quotes",
    "'tis a plain quote",
    "O'Brien",
]


def test_neutralised_cells_round_trip_byte_identical_and_store_the_original_text(
    engine: Engine, sqlite_engine: Engine, tmp_path: Path
) -> None:
    patients = [
        {"mrn": f"M{n}", "family_name": value, "given_name": value, "team": f"t{value}"}
        for n, value in enumerate(ROUND_TRIP)
    ]
    patients.append({"mrn": "=HYPERLINK(1)", "family_name": "-", "given_name": "@"})
    write_csv(tmp_path / "in", "patients.csv", patients)  # type: ignore[arg-type]
    write_csv(
        tmp_path / "in",
        "injuries.csv",
        [{"mrn": "=HYPERLINK(1)", "kind": "burn", "date": "2024-01-10", "notes": "=1+1\n+2"}],
    )
    import_folder(engine, tmp_path / "in")
    export_folder(engine, tmp_path / "a")
    import_folder(sqlite_engine, tmp_path / "a")
    export_folder(sqlite_engine, tmp_path / "b")
    for exported in sorted((tmp_path / "a").iterdir()):
        assert exported.read_bytes() == (tmp_path / "b" / exported.name).read_bytes()
    for store in (engine, sqlite_engine):
        names = set(_stored(store, "patient", "family_name"))
        # a hand-written quoted formula cell is read without its first quote
        read = {"'=already quoted by someone": "=already quoted by someone",
                "''+two quotes": "'+two quotes"}  # fmt: skip
        assert names == {*(read.get(v, v) for v in ROUND_TRIP), "-"}
        assert set(_stored(store, "patient", "mrn")) >= {"=HYPERLINK(1)", "M0"}
        assert _stored(store, "injury", "notes") == ["=1+1\n+2"]
        assert "t=cmd|' /C calc'!A0" in _stored(store, "team", "name")
    exported = {r["mrn"]: r for r in _rows(tmp_path / "a" / "patients.csv")}
    assert exported["M0"]["family_name"] == "'=cmd|' /C calc'!A0"
    assert exported["M4"]["family_name"] == "'=already quoted by someone"
    assert "'=HYPERLINK(1)" in exported
    # a value that needs no quote is written as it is
    assert exported["M6"]["family_name"] == "'tis a plain quote"
    assert exported["M7"]["family_name"] == "O'Brien"


def test_a_hand_written_quoted_formula_cell_is_read_without_its_quote(
    engine: Engine, tmp_path: Path
) -> None:
    write_csv(
        tmp_path / "in",
        "patients.csv",
        [
            {"mrn": "P1", "family_name": "'=1+1", "given_name": "'Ada"},
            {"mrn": "'@P2", "family_name": "''-x", "given_name": "' =1"},
        ],
    )
    import_folder(engine, tmp_path / "in")
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT mrn, family_name, given_name FROM patient ORDER BY id")
        ).all()
    assert [tuple(row) for row in stored] == [("P1", "=1+1", "'Ada"), ("@P2", "'-x", "' =1")]


def test_a_note_with_a_lone_carriage_return_stays_one_row(
    engine: Engine, sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Notes may hold line breaks; a lone CR must be quoted too, or a spreadsheet (and
    the import) starts a new row there."""
    _store_one_of_each(engine, tmp_path / "in")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE injury SET notes = :v"), {"v": "first\rsecond"})
    export_folder(engine, tmp_path / "a")
    assert len(_rows(tmp_path / "a" / "injuries.csv")) == 1
    import_folder(sqlite_engine, tmp_path / "a")
    assert _stored(sqlite_engine, "injury", "notes") == ["first\rsecond"]
    export_folder(sqlite_engine, tmp_path / "b")
    for exported in sorted((tmp_path / "a").iterdir()):
        assert exported.read_bytes() == (tmp_path / "b" / exported.name).read_bytes()


# --- the cohort assessment (`ho-tracker assess --all --out sites.csv`) ---------------------


@pytest.mark.parametrize("payload", ["cmd", "minus", "at"])
def test_cohort_assessment_csv_quotes_an_mrn_that_begins_like_a_formula(
    payload: str, engine: Engine, tmp_path: Path
) -> None:
    value = _planted(engine, tmp_path / "in", payload)
    frame = assess_all(engine=engine, as_of=dt.date(2024, 6, 1))
    write_cohort_assessment(frame, tmp_path / "sites.csv")
    written = _rows(tmp_path / "sites.csv")
    assert written and {row["mrn"] for row in written} == {"'" + value}
    text = [str(name) for name in frame.columns if frame[name].dtype == object]
    starts = [(row["mrn"], name) for row in written for name in text if row[name][:1] in TRIGGERS]
    assert not starts
    # only the MRN gained its quote: every other cell is written as pandas writes it
    quoted = frame.assign(mrn="'" + frame["mrn"].astype(str))
    assert (tmp_path / "sites.csv").read_text(encoding="utf-8") == quoted.to_csv(index=False)
    # the Parquet file keeps the stored MRN as it is
    write_cohort_assessment(frame, tmp_path / "sites.parquet")
    assert set(pd.read_parquet(tmp_path / "sites.parquet")["mrn"]) == {value}
