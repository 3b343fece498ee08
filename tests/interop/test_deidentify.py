"""The research export: no identifier survives, intervals stay exact, it re-imports."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import count_rows
from tracker.cli import run
from tracker.errors import TrackerError
from tracker.interchange import deidentify, synth
from tracker.interchange.csv_import import import_folder
from tracker.services.interop import export_research
from tracker.store import database

KEY = {"HO_TRACKER_DEID_KEY": "a-long-research-secret-2026"}


@pytest.fixture
def source(tmp_path: Path) -> Engine:
    """A store of its own (the `engine` fixture's SQLite file is `source`'s too)."""
    engine = database.make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    database.upgrade(engine)
    return engine


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, list[str]]:
    """A synthetic cohort with unmistakable identifiers planted in every identifying field."""
    folder = tmp_path / "cohort"
    synth.write_cohort(folder, patients=25, seed=31)
    secrets: list[str] = []
    patients = _rows(folder / "patients.csv")
    for n, row in enumerate(patients):
        row["family_name"], row["given_name"] = f"Zebulonova{n}", f"Quintessa{n}"
        row["birth_date"] = f"19{40 + n}-0{1 + n % 9}-1{n % 10}"
        secrets += [row["mrn"], row["family_name"], row["given_name"], row["birth_date"]]
    _write(folder / "patients.csv", patients)
    imaging = _rows(folder / "imaging.csv")
    for n, row in enumerate(imaging):
        row["accession"] = f"ACC{row['mrn']}{row['date'].replace('-', '')}{row['modality']}"
        row["notes"] = f"seen by Dr Hieronymus{n}"
        secrets += [row["accession"], row["notes"]]
    _write(folder / "imaging.csv", imaging)
    injuries = _rows(folder / "injuries.csv")
    for n, row in enumerate(injuries):
        row["notes"] = f"brought in by Marguerite{n}"
        secrets.append(row["notes"])
    _write(folder / "injuries.csv", injuries)
    return folder, secrets


def test_no_identifier_from_the_source_survives(
    planted: tuple[Path, list[str]], engine: Engine, tmp_path: Path
) -> None:
    folder, secrets = planted
    import_folder(engine, folder)
    export_research(engine=engine, folder=tmp_path / "out", environ=KEY)
    files = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert tmp_path / "out" / "extra" / "ages.csv" in files
    output = b"".join(p.read_bytes() for p in files)
    assert len(output) > 1000
    survivors = [s for s in secrets if s.encode() in output]
    assert survivors == []
    header = _rows(tmp_path / "out" / "patients.csv")[0].keys()
    assert set(header) == {"mrn", "sex"}


def test_dates_move_back_by_one_offset_per_patient_so_intervals_stay_exact(
    planted: tuple[Path, list[str]], source: Engine, tmp_path: Path
) -> None:
    folder, _ = planted
    import_folder(source, folder)
    export_research(engine=source, folder=tmp_path / "out", environ=KEY)
    key = KEY["HO_TRACKER_DEID_KEY"].encode()
    by_hash = {deidentify.pseudonym(key, r["mrn"]): r["mrn"] for r in _rows(folder / "labs.csv")}
    source = {(r["mrn"], r["analyte"], r["value"]): r["date"] for r in _rows(folder / "labs.csv")}
    shifted = _rows(tmp_path / "out" / "labs.csv")
    assert shifted
    for row in shifted:
        mrn = by_hash[row["mrn"]]
        moved = dt.date.fromisoformat(row["date"]) - dt.date.fromisoformat(
            source[(mrn, row["analyte"], row["value"])]
        )
        assert moved.days == deidentify.date_shift(key, mrn)
        assert -365 <= moved.days <= -1


def test_research_export_reimports_and_keeps_ages(
    planted: tuple[Path, list[str]], source: Engine, engine: Engine, tmp_path: Path
) -> None:
    folder, _ = planted
    import_folder(source, folder)
    counts = export_research(engine=source, folder=tmp_path / "out", environ=KEY)
    import_folder(engine, tmp_path / "out")
    assert count_rows(engine) == count_rows(source)
    ages = _rows(tmp_path / "out" / "extra" / "ages.csv")
    assert len(ages) == counts["patients.csv"] == 25
    assert all(row["age_at"] == "first_injury" and int(row["age_years"]) >= 0 for row in ages)


def test_same_key_same_pseudonyms_other_key_other_pseudonyms() -> None:
    a, b = b"k" * 16, b"j" * 16
    assert deidentify.pseudonym(a, "S1") == deidentify.pseudonym(a, "S1")
    assert deidentify.pseudonym(a, "S1") != deidentify.pseudonym(b, "S1")
    assert len(deidentify.pseudonym(a, "S1")) == 16
    shifts = {deidentify.date_shift(a, f"S{n}") for n in range(2000)}
    assert 0 not in shifts and min(shifts) >= -365 and max(shifts) <= -1 and len(shifts) > 300


def test_studies_told_apart_only_by_accession_stay_apart(
    source: Engine, engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    _write(folder / "patients.csv", [{"mrn": "P1"}])
    study = {
        "mrn": "P1",
        "date": "2024-05-01",
        "modality": "ct",
        "site": "hip",
        "side": "left",
        "ho": "present",
    }
    _write(folder / "imaging.csv", [study | {"accession": "X1"}, study | {"accession": "X2"}])
    import_folder(source, folder)
    export_research(engine=source, folder=tmp_path / "out", environ=KEY)
    rows = _rows(tmp_path / "out" / "imaging.csv")
    assert sorted(r["accession"] for r in rows) == ["1", "2"]
    import_folder(engine, tmp_path / "out")
    assert count_rows(engine)["imaging_study"] == 2


def test_export_refuses_to_run_without_a_key(
    source: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(TrackerError, match="HO_TRACKER_DEID_KEY"):
        export_research(engine=source, folder=tmp_path / "out", environ={})
    monkeypatch.delenv("HO_TRACKER_DEID_KEY", raising=False)
    db = str(source.url)
    assert run(["--database-url", db, "export", "--deidentified", str(tmp_path / "cli")]) == 2
    assert "HO_TRACKER_DEID_KEY" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
    monkeypatch.setenv("HO_TRACKER_DEID_KEY", KEY["HO_TRACKER_DEID_KEY"])
    assert run(["--database-url", db, "export", "--deidentified", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "extra" / "ages.csv").is_file()
