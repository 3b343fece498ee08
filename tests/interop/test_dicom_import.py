"""DICOM headers become imaging studies and pending sites; bad files stop the run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.cli import run
from tracker.errors import ValidationFailed
from tracker.interchange.csv_import import import_folder
from tracker.services.interop import import_dicom_files, pending_sites

TODAY = dt.date(2026, 11, 1)


def dicom_file(path: Path, **elements: str) -> Path:
    """A small header-only DICOM file (no pixel data) with the given elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header = Dataset()
    header.file_meta = meta
    header.SOPClassUID = meta.MediaStorageSOPClassUID
    header.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    header.StudyInstanceUID = generate_uid()
    for keyword, value in elements.items():
        setattr(header, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    header.save_as(path, enforce_file_format=True)
    return path


def radiograph(path: Path, **changes: str) -> Path:
    elements = {
        "PatientID": "P1",
        "StudyDate": "20250310",
        "Modality": "DX",
        "AccessionNumber": "ACC-77",
        "BodyPartExamined": "HIP",
        "Laterality": "L",
    }
    return dicom_file(path, **(elements | changes))


def _patients(engine: Engine, folder: Path) -> None:
    write_csv(folder, "patients.csv", [{"mrn": "P1"}, {"mrn": "P2"}])
    import_folder(engine, folder)


def _studies(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT date, modality, accession FROM imaging_study ORDER BY id")
            )
        ]


def test_header_gives_a_study_and_a_pending_site_and_reimport_adds_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    _patients(engine, tmp_path / "csv")
    files = [
        radiograph(tmp_path / "dicom" / "a.dcm"),
        radiograph(tmp_path / "dicom" / "b.dcm"),  # a second image of the same study
        radiograph(tmp_path / "dicom" / "c.dcm", Laterality="R"),
    ]
    summary = import_dicom_files(engine=engine, paths=[tmp_path / "dicom"], today=TODAY)
    assert (summary.files, summary.studies_added, summary.sites_added) == (3, 1, 2)
    assert [(str(d)[:10], m, a) for d, m, a in _studies(engine)] == [
        ("2025-03-10", "radiograph", "ACC-77")
    ]
    sites = pending_sites(engine=engine, mrn="P1")
    assert [(s.site, s.side, s.body_part, s.laterality) for s in sites] == [
        ("hip", "left", "HIP", "L"),
        ("hip", "right", "HIP", "R"),
    ]
    before = count_rows(engine)
    again = import_dicom_files(engine=engine, paths=files, today=TODAY)
    assert (again.studies_added, again.sites_added, again.unchanged) == (0, 0, 3)
    assert count_rows(engine) == before
    assert len(pending_sites(engine=engine)) == 2


@pytest.mark.parametrize(
    ("dicom", "tracker"),
    [("US", "ultrasound"), ("CR", "radiograph"), ("DX", "radiograph"), ("CT", "ct"),
     ("MR", "mri"), ("NM", "bone_scan"), ("PT", "pet")],
)  # fmt: skip
def test_dicom_modalities_map_to_the_trackers(
    dicom: str, tracker: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    _patients(sqlite_engine, tmp_path / "csv")
    radiograph(tmp_path / "x.dcm", Modality=dicom)
    import_dicom_files(engine=sqlite_engine, paths=[tmp_path / "x.dcm"], today=TODAY)
    assert [m for _, m, _ in _studies(sqlite_engine)] == [tracker]


def test_body_part_the_tracker_does_not_know_waits_with_site_unknown(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    _patients(sqlite_engine, tmp_path / "csv")
    radiograph(tmp_path / "d" / "x.dcm", BodyPartExamined="CHEST", Laterality="")
    dicom_file(tmp_path / "d" / "y.dcm", PatientID="P2", StudyDate="20250101", Modality="CT")
    summary = import_dicom_files(engine=sqlite_engine, paths=[tmp_path / "d"], today=TODAY)
    assert (summary.studies_added, summary.sites_added) == (2, 1)
    [site] = pending_sites(engine=sqlite_engine)
    assert (site.mrn, site.body_part, site.site, site.side) == ("P1", "CHEST", None, None)


BAD = {
    "not DICOM": (lambda p: p.write_text("hello, not an image") and p, "file"),
    "no study date": (lambda p: radiograph(p, StudyDate=""), "(0008,0020) StudyDate"),
    "unknown patient": (lambda p: radiograph(p, PatientID="NOBODY"), "(0010,0020) PatientID"),
    "modality not followed": (lambda p: radiograph(p, Modality="SR"), "(0008,0060) Modality"),
    "future date": (lambda p: radiograph(p, StudyDate="20991231"), "(0008,0020) StudyDate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_named_with_its_element_and_nothing_is_written(
    case: str, engine: Engine, tmp_path: Path
) -> None:
    _patients(engine, tmp_path / "csv")
    good = radiograph(tmp_path / "in" / "good.dcm")
    make, element = BAD[case]
    bad = tmp_path / "in" / "bad.dcm"
    make(bad)
    with pytest.raises(ValidationFailed) as failed:
        import_dicom_files(engine=engine, paths=[good, bad], today=TODAY)
    assert [(p.source, p.field) for p in failed.value.problems] == [(str(bad), element)]
    assert count_rows(engine)["imaging_study"] == 0
    assert pending_sites(engine=engine) == []


def test_dicom_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    write_csv(tmp_path / "csv", "patients.csv", [{"mrn": "P1"}])
    assert run(["--database-url", db, "import", str(tmp_path / "csv")]) == 0
    radiograph(tmp_path / "d" / "a.dcm", StudyDate="20240101")
    assert run(["--database-url", db, "dicom", "import", str(tmp_path / "d")]) == 0
    assert "1 studies and 1 pending sites added" in capsys.readouterr().out
    assert run(["--database-url", db, "dicom", "pending", "--mrn", "P1"]) == 0
    assert "HIP" in capsys.readouterr().out
    (tmp_path / "d" / "junk.dcm").write_text("junk")
    assert run(["--database-url", db, "dicom", "import", str(tmp_path / "d")]) == 2
    assert "junk.dcm: file: is not a DICOM file" in capsys.readouterr().err
