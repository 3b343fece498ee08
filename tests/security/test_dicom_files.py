"""Any file at all given to the DICOM import (issue 15, item 8): each of pydicom's
bundled test files, as it is and rewritten for a stored patient, is imported or
refused with a reason naming the file and the element; the import never raises
anything else. A study is never dated before 1900, in the future, or before the
patient's birth; a refused run writes nothing."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.data.data_manager import DATA_ROOT
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.interop.test_dicom_import import radiograph
from tracker.cli import run
from tracker.errors import ValidationFailed
from tracker.interchange.csv_import import import_folder
from tracker.interchange.dicom_import import STUDY_DATE, import_dicom

TODAY = dt.date(2026, 11, 1)
LATE_BORN = "JXD191021006"  # a PatientID of J2K_pixelrep_mismatch.dcm, studied 2019-10-19
# PatientIDs the bundled files carry: stored, so those files go as far as being written
STORED = ("4MR1", "1CT1", "8NM1", "13US1", "204", "021234567", "12345678", "77654033")


def bundled_files() -> list[Path]:
    """Every test file pydicom ships (what `get_testdata_files("**/*")` finds offline;
    files it would download are not here and are left out)."""
    found = sorted(p for p in Path(DATA_ROOT, "test_files").rglob("*") if p.is_file())
    return [p for p in found if p.suffix != ".py" and "__pycache__" not in p.parts]


@pytest.fixture
def patients(engine: Engine, tmp_path: Path) -> Engine:
    rows: list[dict[str, object]] = [{"mrn": m, "birth_date": "1940-01-02"} for m in STORED]
    rows += [
        {"mrn": LATE_BORN, "birth_date": "2020-01-01"},
        {"mrn": "P1", "birth_date": "1990-05-06"},
    ]
    write_csv(tmp_path / "csv", "patients.csv", rows)
    import_folder(engine, tmp_path / "csv")
    return engine


def studies(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM imaging_study")).scalar_one())


def outcome(engine: Engine, path: Path) -> str | list[tuple[str, str]]:
    """'imported', or the refusals (element, reason) of a refused file; anything the
    import raises besides a refusal fails the test, naming the file."""
    before = studies(engine)
    try:
        import_dicom(engine, [path], today=TODAY)
    except ValidationFailed as refused:
        assert studies(engine) == before, f"{path.name}: a refused file wrote a study"
        assert refused.problems, path
        for problem in refused.problems:
            assert problem.source == str(path) and problem.field and problem.reason, problem
        return [(p.field, p.reason) for p in refused.problems]
    except Exception as error:  # the bug this test is about
        pytest.fail(f"{path.name}: the import raised {type(error).__name__}: {error}")
    return "imported"


def rewritten(files: list[Path], folder: Path, **elements: str) -> Iterator[Path]:
    """Each file pydicom can read and write again, with these elements changed (files
    pydicom cannot rewrite are pydicom's business and are left out)."""
    folder.mkdir()
    for number, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                for keyword, value in elements.items():
                    setattr(header, keyword, value)
                target = folder / f"{number:03d}-{path.name}"
                header.save_as(target)
        except Exception:
            continue
        yield target


def test_every_bundled_file_is_imported_or_refused_with_a_reason(
    patients: Engine, tmp_path: Path
) -> None:
    files = bundled_files()
    assert len(files) > 50, "pydicom's test files are missing"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd files; so be it
        said = {path.name: outcome(patients, path) for path in files}
    imported = [name for name, result in said.items() if result == "imported"]
    assert len(imported) > 10 and len(imported) < len(files)
    assert said["README.txt"][0][0] == "file"
    assert said["J2K_pixelrep_mismatch.dcm"] == [
        (STUDY_DATE, "2019-10-19 is before the patient's birth date 2020-01-01")
    ]
    # all at once: one refusal naming every refused file, and nothing written
    written = studies(patients)
    with pytest.raises(ValidationFailed) as every, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_dicom(patients, files, today=TODAY)
    refused = {name for name, result in said.items() if result != "imported"}
    assert {Path(p.source).name for p in every.value.problems} >= refused - {"rtplan.dump"}
    assert studies(patients) == written


def test_every_bundled_file_rewritten_for_a_stored_patient_is_imported_or_refused(
    patients: Engine, tmp_path: Path
) -> None:
    files = bundled_files()
    good = {"PatientID": "P1", "StudyDate": "20250310", "Modality": "CT"}
    made = list(rewritten(files, tmp_path / "good", **good))
    assert len(made) > 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        said = [outcome(patients, path) for path in made]
    assert said.count("imported") > 40
    before_birth = {**good, "StudyDate": "19900505"}
    for path in rewritten(files, tmp_path / "early", **before_birth):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = outcome(patients, path)
        assert result != "imported", path.name
        if (STUDY_DATE, "1990-05-05 is before the patient's birth date 1990-05-06") not in result:
            assert any(field == "file" for field, _ in result), (path.name, result)


@pytest.mark.parametrize(
    ("study_date", "reason"),
    [
        ("19900505", "1990-05-05 is before the patient's birth date 1990-05-06"),
        ("18991231", "1899-12-31 is before 1900-01-01"),
        ("00010101", "0001-01-01 is before 1900-01-01"),
        ("20261102", "2026-11-02 is in the future"),
        ("99991231", "9999-12-31 is in the future"),
        ("2025031", "'2025031' is not YYYYMMDD"),
    ],
)
def test_a_study_outside_the_calendar_or_before_birth_is_refused_and_nothing_written(
    patients: Engine, tmp_path: Path, study_date: str, reason: str
) -> None:
    good = radiograph(tmp_path / "good.dcm")
    bad = radiograph(tmp_path / "bad.dcm", StudyDate=study_date, AccessionNumber="ACC-78")
    with pytest.raises(ValidationFailed) as refused:
        import_dicom(patients, [good, bad], today=TODAY)
    assert [(p.source, p.field, p.reason) for p in refused.value.problems] == [
        (str(bad), STUDY_DATE, reason)
    ]
    assert studies(patients) == 0
    assert import_dicom(patients, [good], today=TODAY).studies_added == 1


def test_a_study_on_the_birth_date_and_on_today_is_taken(patients: Engine, tmp_path: Path) -> None:
    born = radiograph(tmp_path / "born.dcm", StudyDate="19900506")
    today = radiograph(tmp_path / "today.dcm", StudyDate="20261101", AccessionNumber="ACC-79")
    assert import_dicom(patients, [born, today], today=TODAY).studies_added == 2


@pytest.mark.parametrize(
    ("element", "value", "field"),
    [
        ("PatientID", "P\x001", "(0010,0020) PatientID"),
        ("PatientID", "P/1", "(0010,0020) PatientID"),
        ("AccessionNumber", "A" * 65, "(0008,0050) AccessionNumber"),
        ("BodyPartExamined", "B" * 65, "(0018,0015) BodyPartExamined"),
    ],
)
def test_header_text_the_tracker_cannot_store_is_refused_by_element(
    patients: Engine, tmp_path: Path, element: str, value: str, field: str
) -> None:
    bad = radiograph(tmp_path / "bad.dcm", **{element: value})
    with pytest.raises(ValidationFailed) as refused:
        import_dicom(patients, [bad], today=TODAY)
    assert [(p.source, p.field) for p in refused.value.problems] == [(str(bad), field)]
    assert studies(patients) == 0


def test_the_command_line_names_the_file_and_element_of_a_study_before_birth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--database-url", f"sqlite:///{tmp_path / 'tracker.db'}"]
    write_csv(tmp_path / "csv", "patients.csv", [{"mrn": "P1", "birth_date": "1990-05-06"}])
    assert run([*base, "import", str(tmp_path / "csv")]) == 0
    bad = radiograph(tmp_path / "early.dcm", StudyDate="19900505")
    capsys.readouterr()
    assert run([*base, "dicom", "import", str(bad)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"{bad}: {STUDY_DATE}: 1990-05-05 is before the patient's birth date 1990-05-06" in said
    assert run([*base, "dicom", "import", str(radiograph(tmp_path / "ok.dcm"))]) == 0
