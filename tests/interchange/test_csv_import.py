"""CSV interchange import: all or nothing, every bad row named, re-import adds nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.errors import Problem, ValidationFailed
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder

TODAY = dt.date(2026, 11, 1)


def good_folder(folder: Path) -> Path:
    """A small, valid story: SCI patient with a hip lesion, and a second patient."""
    write_csv(
        folder,
        "patients.csv",
        [
            {
                "mrn": "A1",
                "birth_date": "1980-01-02",
                "sex": "male",
                "family_name": "Okafor",
                "given_name": "Chidi",
                "team": "spinal_unit",
            },
            {
                "mrn": "A2",
                "birth_date": "",
                "sex": "female",
                "family_name": "",
                "given_name": "",
                "team": "",
            },
        ],
    )
    write_csv(
        folder,
        "injuries.csv",
        [
            {
                "mrn": "A1",
                "kind": "spinal_cord_injury",
                "date": "2024-01-01",
                "notes": "T6 complete",
            },
            {"mrn": "A2", "kind": "hip_arthroplasty", "date": "2025-02-01", "notes": ""},
        ],
    )
    write_csv(
        folder,
        "imaging.csv",
        [
            {
                "mrn": "A1",
                "date": "2024-03-01",
                "modality": "radiograph",
                "site": "hip",
                "side": "left",
                "ho": "present",
                "calcification": "peripheral",
                "brooker": "2",
                "accession": "X1",
                "uptake": "",
            },
            {
                "mrn": "A1",
                "date": "2024-03-01",
                "modality": "radiograph",
                "site": "hip",
                "side": "right",
                "ho": "absent",
                "calcification": "",
                "brooker": "0",
                "accession": "X1",
            },
            {
                "mrn": "A1",
                "date": "2024-02-20",
                "modality": "ultrasound",
                "site": "hip",
                "side": "left",
                "ho": "present",
                "calcification": "",
                "brooker": "",
                "accession": "",
            },
        ],
    )
    write_csv(
        folder,
        "bone_scans.csv",
        [
            {
                "mrn": "A1",
                "date": "2024-03-02",
                "site": "hip",
                "side": "left",
                "phase": "delayed",
                "ratio": "",
                "lesion_counts": "6100",
                "reference_counts": "1000",
                "reference_region": "contralateral femur",
            },
            {
                "mrn": "A1",
                "date": "2024-06-02",
                "site": "hip",
                "side": "left",
                "phase": "delayed",
                "ratio": "3.9",
                "lesion_counts": "",
                "reference_counts": "",
                "reference_region": "",
            },
        ],
    )
    write_csv(
        folder,
        "treatments.csv",
        [
            {
                "mrn": "A1",
                "agent": "etidronate",
                "intent": "treatment",
                "start_date": "2024-03-05",
                "end_date": "2024-05-28",
                "planned_weeks": "12",
                "dose": "20",
                "dose_unit": "mg/kg/day",
                "site": "",
                "side": "",
            },
        ],
    )
    write_csv(
        folder,
        "procedures.csv",
        [
            {
                "mrn": "A1",
                "kind": "resection",
                "date": "2025-06-01",
                "site": "hip",
                "side": "left",
                "notes": "",
            },
        ],
    )
    write_csv(
        folder,
        "labs.csv",
        [
            {
                "mrn": "A1",
                "date": "2024-03-01",
                "analyte": "alp",
                "value": "180",
                "unit": "U/L",
                "ref_low": "30",
                "ref_high": "130",
            },
        ],
    )
    return folder


def problems_of(engine: Engine, folder: Path) -> list[Problem]:
    before = count_rows(engine)
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, folder, today=TODAY)
    assert count_rows(engine) == before, "a rejected import must write nothing"
    return failed.value.problems


def test_valid_folder_is_stored_whole(engine: Engine, tmp_path: Path) -> None:
    summary = import_folder(engine, good_folder(tmp_path / "in"), today=TODAY)
    assert summary.added == {
        "patients.csv": 2,
        "injuries.csv": 2,
        "imaging.csv": 3,
        "bone_scans.csv": 2,
        "treatments.csv": 1,
        "procedures.csv": 1,
        "labs.csv": 1,
    }
    counts = count_rows(engine)
    assert counts["imaging_study"] == 2  # two findings on one radiograph, one ultrasound
    assert counts["site_finding"] == 3


def test_reimport_adds_nothing(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    import_folder(engine, folder, today=TODAY)
    before = count_rows(engine)
    summary = import_folder(engine, folder, today=TODAY)
    assert summary.total_added == 0
    assert sum(summary.unchanged.values()) == 12
    assert count_rows(engine) == before


def test_ratio_is_computed_from_counts_when_only_counts_are_given(
    engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, good_folder(tmp_path / "in"), today=TODAY)
    export_folder(engine, tmp_path / "out")
    lines = (tmp_path / "out" / "bone_scans.csv").read_text().splitlines()
    assert lines[1] == "A1,2024-03-02,hip,left,delayed,6.1,6100,1000,contralateral femur"


def test_export_then_import_into_empty_database_gives_the_same_files(
    engine: Engine, sqlite_engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, good_folder(tmp_path / "in"), today=TODAY)
    export_folder(engine, tmp_path / "first")
    import_folder(sqlite_engine, tmp_path / "first", today=TODAY)
    export_folder(sqlite_engine, tmp_path / "second")
    for first in sorted((tmp_path / "first").iterdir()):
        assert first.read_bytes() == (tmp_path / "second" / first.name).read_bytes(), first.name


def test_new_rows_for_a_stored_patient_are_added_beside_the_old(
    engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, good_folder(tmp_path / "in"), today=TODAY)
    more = tmp_path / "more"
    write_csv(
        more,
        "imaging.csv",
        [
            # a new site on the stored radiograph, and a new study
            {
                "mrn": "A1",
                "date": "2024-03-01",
                "modality": "radiograph",
                "site": "knee",
                "side": "left",
                "ho": "absent",
                "accession": "X1",
            },
            {
                "mrn": "A1",
                "date": "2024-09-01",
                "modality": "ct",
                "site": "hip",
                "side": "left",
                "ho": "present",
                "accession": "",
            },
        ],
    )
    summary = import_folder(engine, more, today=TODAY)
    assert summary.added == {"imaging.csv": 2}
    counts = count_rows(engine)
    assert counts["imaging_study"] == 3
    assert counts["site_finding"] == 5


def _one(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("file", "line", "column", "value", "reason"),
    [
        ("imaging.csv", 2, "modality", "xray", "'xray' is not one of ultrasound, radiograph"),
        ("imaging.csv", 3, "brooker", "5", "5 is outside 0 to 4"),
        ("imaging.csv", 4, "ho", "", "is required"),
        ("injuries.csv", 2, "date", "2024-02-30", "'2024-02-30' is not a date"),
        ("injuries.csv", 3, "date", "01/02/2025", "'01/02/2025' is not a date"),
        ("injuries.csv", 2, "date", "2027-01-01", "2027-01-01 is in the future"),
        ("bone_scans.csv", 3, "ratio", "0", "0 must be greater than 0"),
        ("bone_scans.csv", 3, "ratio", "-1.5", "-1.5 must be greater than 0"),
        ("bone_scans.csv", 3, "ratio", "abc", "'abc' is not a number"),
        (
            "treatments.csv",
            2,
            "end_date",
            "2024-03-01",
            "2024-03-01 is before start_date 2024-03-05",
        ),
        ("labs.csv", 2, "analyte", "ALP", "'ALP' is not one of alp, bone_alp"),
        ("labs.csv", 2, "unit", "IU/L", "'IU/L' is not one of the units for alp: U/L, ukat/L"),
        ("labs.csv", 2, "unit", "u/l", "'u/l' is not one of the units for alp: U/L, ukat/L"),
        ("patients.csv", 2, "sex", "M", "'M' is not one of female, male, other, unknown"),
        (
            "injuries.csv",
            2,
            "date",
            "1979-12-31",
            "1979-12-31 is before the patient's birth date 1980-01-02",
        ),
        ("imaging.csv", 2, "uptake", "increased", "is recorded only for bone_scan, spect and pet"),
    ],
)
def test_bad_value_is_named_by_file_line_and_field_and_nothing_is_written(
    engine: Engine, tmp_path: Path, file: str, line: int, column: str, value: str, reason: str
) -> None:
    folder = good_folder(tmp_path / "in")
    path = folder / file
    rows = path.read_text().splitlines()
    header = rows[0].split(",")
    cells = rows[line - 1].split(",")
    cells[header.index(column)] = value
    rows[line - 1] = ",".join(cells)
    path.write_text("\n".join(rows) + "\n")
    problem = _one(problems_of(engine, folder))
    assert (problem.source, problem.line, problem.field) == (file, line, column)
    assert reason in problem.reason


def test_every_bad_row_is_listed_not_just_the_first(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "labs.csv",
        [
            {"mrn": "A1", "date": "2024-03-01", "analyte": "alp", "value": "x", "unit": "U/L"},
            {"mrn": "A1", "date": "2024-04-01", "analyte": "alp", "value": "90", "unit": "U/L"},
            {"mrn": "A1", "date": "2024-05-01", "analyte": "alp", "value": "", "unit": ""},
        ],
    )
    found = {(p.line, p.field) for p in problems_of(engine, folder)}
    assert found == {(2, "value"), (4, "value"), (4, "unit")}


def test_row_for_an_unknown_patient_is_refused(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "labs.csv",
        [
            {"mrn": "NOPE", "date": "2024-03-01", "analyte": "crp", "value": "9", "unit": "mg/L"},
        ],
    )
    problem = _one(problems_of(engine, folder))
    assert (problem.line, problem.field) == (2, "mrn")
    assert "'NOPE' is not a known patient" in problem.reason


def test_duplicate_rows_within_a_file_name_the_first_line(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "injuries.csv",
        [
            {"mrn": "A1", "kind": "burn", "date": "2024-01-01"},
            {"mrn": "A2", "kind": "burn", "date": "2024-01-01"},
            {"mrn": "A1", "kind": "burn", "date": "2024-01-01"},
        ],
    )
    problem = _one(problems_of(engine, folder))
    assert problem.line == 4
    assert "repeats line 2" in problem.reason


def test_missing_required_column_is_reported_on_the_header_line(
    engine: Engine, tmp_path: Path
) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "procedures.csv",
        [{"mrn": "A1", "kind": "resection", "date": "2025-01-01", "site": "hip"}],
    )
    problem = _one(problems_of(engine, folder))
    assert (problem.source, problem.line, problem.field) == ("procedures.csv", 1, "side")
    assert problem.reason == "required column is missing"


def test_unknown_column_is_refused_so_typos_are_not_silently_dropped(
    engine: Engine, tmp_path: Path
) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "patients.csv",
        [{"mrn": "A1", "birthdate": "1980-01-02"}, {"mrn": "A2", "birthdate": ""}],
    )
    problem = _one(problems_of(engine, folder))
    assert (problem.line, problem.field) == (1, "birthdate")


def test_non_utf8_file_names_the_line_of_the_bad_byte(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    (folder / "injuries.csv").write_bytes(
        b"mrn,kind,date,notes\nA1,burn,2024-01-01,\nA2,burn,2025-03-01,caf\xe9\n"
    )
    problem = _one(problems_of(engine, folder))
    assert (problem.source, problem.line) == ("injuries.csv", 3)
    assert "not UTF-8" in problem.reason


def test_counts_that_disagree_with_the_ratio_are_refused(engine: Engine, tmp_path: Path) -> None:
    folder = good_folder(tmp_path / "in")
    write_csv(
        folder,
        "bone_scans.csv",
        [
            {
                "mrn": "A1",
                "date": "2024-03-02",
                "site": "hip",
                "side": "left",
                "phase": "delayed",
                "ratio": "2.0",
                "lesion_counts": "6100",
                "reference_counts": "1000",
            },
            {
                "mrn": "A1",
                "date": "2024-03-03",
                "site": "hip",
                "side": "left",
                "phase": "delayed",
                "ratio": "",
                "lesion_counts": "6100",
                "reference_counts": "",
            },
        ],
    )
    found = {(p.line, p.field): p.reason for p in problems_of(engine, folder)}
    assert "disagrees with lesion_counts/reference_counts = 6.1" in found[(2, "ratio")]
    assert "required unless lesion_counts and reference_counts" in found[(3, "ratio")]


def test_a_row_that_contradicts_the_stored_record_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, good_folder(tmp_path / "in"), today=TODAY)
    changed = tmp_path / "changed"
    write_csv(
        changed,
        "labs.csv",
        [
            {
                "mrn": "A1",
                "date": "2024-03-01",
                "analyte": "alp",
                "value": "95",
                "unit": "U/L",
                "ref_low": "30",
                "ref_high": "130",
            },
        ],
    )
    problem = _one(problems_of(engine, changed))
    assert (problem.line, problem.field) == (2, "value")
    assert "differs from the stored record ('180')" in problem.reason


def test_one_bad_row_among_many_good_ones_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    write_csv(folder, "patients.csv", [{"mrn": f"P{i:04d}"} for i in range(500)])
    labs = [
        {"mrn": f"P{i:04d}", "date": "2025-01-01", "analyte": "alp", "value": "100", "unit": "U/L"}
        for i in range(500)
    ]
    labs[321]["value"] = "-"
    write_csv(folder, "labs.csv", labs)
    problem = _one(problems_of(engine, folder))
    assert (problem.source, problem.line, problem.field) == ("labs.csv", 323, "value")
    assert count_rows(engine)["patient"] == 0


INTERCHANGE_NAMES = (
    "patients.csv, injuries.csv, imaging.csv, bone_scans.csv, treatments.csv, "
    "procedures.csv, labs.csv"
)


def test_unknown_csv_file_rejects_the_import(engine: Engine, tmp_path: Path) -> None:
    # The newcomer's folder: injuries.csv misspelt. Skipped, the patients would be
    # stored without their injuries and never screened.
    folder = good_folder(tmp_path / "in")
    (folder / "injuries.csv").rename(folder / "injurys.csv")
    (folder / "README.txt").write_text("exported from the ward spreadsheet\n")  # not a .csv
    problem = _one(problems_of(engine, folder))
    assert (problem.source, problem.line, problem.field) == ("injurys.csv", None, "file")
    assert "is not an interchange file" in problem.reason
    assert INTERCHANGE_NAMES in problem.reason
    assert sum(count_rows(engine).values()) == 0


def test_unknown_csv_file_alone_is_named_not_reported_as_an_empty_folder(
    engine: Engine, tmp_path: Path
) -> None:
    write_csv(tmp_path / "in", "Patients.CSV", [{"mrn": "A1"}])  # case counts in a name
    problem = _one(problems_of(engine, tmp_path / "in"))
    assert problem.source == "Patients.CSV" and INTERCHANGE_NAMES in problem.reason


def test_cli_import_with_an_unknown_csv_file_exits_2_naming_it(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from tracker.cli import run

    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    folder = good_folder(tmp_path / "in")
    (folder / "injuries.csv").rename(folder / "injurys.csv")
    assert run(["import", str(folder)]) == 2
    errors = capsys.readouterr().err
    assert "injurys.csv: file: is not an interchange file" in errors
    assert INTERCHANGE_NAMES in errors and "Nothing was written" in errors
    assert sum(count_rows(engine).values()) == 0


def test_web_import_of_several_files_with_an_unknown_one_stores_none(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    from tests.web.web_support import add_role_users, csrf_in, make_client, sign_in

    add_role_users(sqlite_engine)
    folder = good_folder(tmp_path / "in")
    (folder / "injuries.csv").rename(folder / "injurys.csv")
    files = [
        ("files", (path.name, path.read_bytes(), "text/csv")) for path in sorted(folder.iterdir())
    ]
    with make_client(sqlite_engine) as client:
        sign_in(client, "clinician")
        form = client.get("/import")
        page = client.post("/import", data={"csrf_token": csrf_in(form.text)}, files=files)
    assert page.status_code == 422
    assert "injurys.csv" in page.text and "is not an interchange file" in page.text
    assert count_rows(sqlite_engine)["patient"] == 0
