"""DICOM headers become imaging studies and pending sites; bad files stop the run;
a matching finding stored on the study (app, CLI or CSV import) completes a site."""

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
from tracker.errors import Conflict, ValidationFailed
from tracker.interchange.csv_import import import_folder
from tracker.services.audit import audit_trail
from tracker.services.imaging_records import correct_imaging_study, correct_site_finding
from tracker.services.interop import (
    complete_pending_site,
    import_dicom_files,
    pending_site,
    pending_sites,
)
from tracker.services.records import void_record

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


# --- completing pending sites -------------------------------------------------------------


def _study(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, version FROM imaging_study")).one()
    return row[0], row[1]


def _findings(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        query = "SELECT id, site, side, ho, brooker FROM site_finding WHERE voided_at IS NULL"
        return [tuple(r) for r in conn.execute(sa.text(query + " ORDER BY id"))]


def _left_and_right_hip(engine: Engine, folder: Path) -> dict[str, int]:
    """One study with two pending sites, hip left and hip right: their ids by side."""
    _patients(engine, folder / "csv")
    radiograph(folder / "dicom" / "l.dcm")
    radiograph(folder / "dicom" / "r.dcm", Laterality="R")
    import_dicom_files(engine=engine, paths=[folder / "dicom"], today=TODAY)
    return {str(s.side): s.id for s in pending_sites(engine=engine)}


def test_a_matching_finding_completes_its_pending_site_and_the_other_side_stays_pending(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _left_and_right_hip(engine, tmp_path)
    study_id, version = _study(engine)
    correct_imaging_study(
        engine=engine, actor="dr-a", record_id=study_id, expected_version=version,
        changes={"findings": [{"site": "hip", "side": "left", "ho": "present"}]}, today=TODAY,
    )  # fmt: skip
    left = pending_site(engine=engine, pending_id=ids["left"])
    assert (left.status, left.completed_by) == ("completed", "dr-a")
    assert left.completed_at is not None
    # a finding on the other side does not complete the right hip's site
    assert [s.id for s in pending_sites(engine=engine)] == [ids["right"]]
    audited = [e for e in audit_trail(engine=engine, mrn="P1") if e.entity == "dicom_pending_site"]
    assert [(e.entity_id, e.username, e.after and e.after["status"]) for e in audited] == [
        (ids["left"], "dr-a", "completed")
    ]
    # correcting the finding's side to right completes the right one, and the left hip,
    # which no finding names any more, waits again
    [(finding_id, *_)] = _findings(engine)
    correct_site_finding(
        engine=engine, actor="dr-b", record_id=finding_id, expected_version=1,
        changes={"side": "right"}, today=TODAY,
    )  # fmt: skip
    assert [s.id for s in pending_sites(engine=engine)] == [ids["left"]]
    right = pending_site(engine=engine, pending_id=ids["right"])
    assert (right.status, right.completed_by) == ("completed", "dr-b")
    left = pending_site(engine=engine, pending_id=ids["left"])
    assert (left.status, left.completed_by, left.completed_at) == ("pending", None, None)
    audited = [e for e in audit_trail(engine=engine, mrn="P1") if e.entity == "dicom_pending_site"]
    assert sorted((e.entity_id, e.username, e.after and e.after["status"]) for e in audited) == [
        (ids["left"], "dr-a", "completed"),
        (ids["left"], "dr-b", "pending"),
        (ids["right"], "dr-b", "completed"),
    ]


def test_correcting_the_studys_finding_to_the_other_side_reopens_the_first_site(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _left_and_right_hip(engine, tmp_path)
    study_id, version = _study(engine)
    correct_imaging_study(
        engine=engine, actor="dr-a", record_id=study_id, expected_version=version,
        changes={"findings": [{"site": "hip", "side": "left", "ho": "present"}]}, today=TODAY,
    )  # fmt: skip
    assert [s.id for s in pending_sites(engine=engine)] == [ids["right"]]
    # the study form corrects its first finding (row 0) to the right hip
    correct_imaging_study(
        engine=engine, actor="dr-b", record_id=study_id, expected_version=version + 1,
        changes={"findings": [{"side": "right"}]}, today=TODAY,
    )  # fmt: skip
    assert [s.id for s in pending_sites(engine=engine)] == [ids["left"]]
    assert pending_site(engine=engine, pending_id=ids["right"]).completed_by == "dr-b"


def test_voiding_the_finding_that_completed_a_site_makes_the_site_wait_again(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _left_and_right_hip(engine, tmp_path)
    complete_pending_site(
        engine=engine, actor="dr-a", pending_id=ids["left"], finding={"ho": "present"},
        today=TODAY,
    )  # fmt: skip
    complete_pending_site(
        engine=engine, actor="dr-a", pending_id=ids["right"], finding={"ho": "absent"},
        today=TODAY,
    )  # fmt: skip
    assert pending_sites(engine=engine) == []
    left_finding = next(f[0] for f in _findings(engine) if f[2] == "left")
    void_record(
        engine=engine, actor="dr-b", entity="site_finding", record_id=left_finding,
        expected_version=1, reason="entered on the wrong patient",
    )  # fmt: skip
    # the left hip waits for its finding again; the right one stays completed
    assert [s.id for s in pending_sites(engine=engine)] == [ids["left"]]
    assert pending_site(engine=engine, pending_id=ids["right"]).status == "completed"
    reopened = [
        e
        for e in audit_trail(engine=engine, mrn="P1")
        if e.entity == "dicom_pending_site" and e.after and e.after["status"] == "pending"
    ]
    assert [(e.entity_id, e.username) for e in reopened] == [(ids["left"], "dr-b")]
    # recording it again completes it again
    done = complete_pending_site(
        engine=engine, actor="dr-c", pending_id=ids["left"], finding={"ho": "absent"},
        today=TODAY,
    )  # fmt: skip
    assert (done.status, done.completed_by) == ("completed", "dr-c")


def test_completing_through_the_service_adds_the_finding_after_the_studys_own(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _left_and_right_hip(engine, tmp_path)
    done = complete_pending_site(
        engine=engine, actor="dr-a", pending_id=ids["left"],
        finding={"ho": "present", "brooker": 2}, today=TODAY,
    )  # fmt: skip
    assert (done.status, done.site, done.side) == ("completed", "hip", "left")
    right = complete_pending_site(
        engine=engine, actor="dr-a", pending_id=ids["right"], finding={"ho": "absent"},
        today=TODAY,
    )  # fmt: skip
    assert right.status == "completed"
    # the first finding was named unchanged, not overwritten by the second
    assert [f[1:] for f in _findings(engine)] == [
        ("hip", "left", "present", 2),
        ("hip", "right", "absent", None),
    ]
    assert _study(engine)[1] == 3  # two versioned corrections of the study
    with pytest.raises(Conflict, match="already completed by dr-a"):
        complete_pending_site(
            engine=engine, actor="dr-a", pending_id=ids["left"], finding={"ho": "absent"}
        )


def test_a_finding_at_another_side_leaves_the_site_pending(engine: Engine, tmp_path: Path) -> None:
    _patients(engine, tmp_path / "csv")
    radiograph(tmp_path / "l.dcm")  # hip, left
    import_dicom_files(engine=engine, paths=[tmp_path / "l.dcm"], today=TODAY)
    [waiting] = pending_sites(engine=engine)
    still = complete_pending_site(
        engine=engine, actor="dr-a", pending_id=waiting.id,
        finding={"ho": "absent", "side": "right"}, today=TODAY,
    )  # fmt: skip
    assert still.status == "pending" and still.completed_by is None
    assert [f[1:3] for f in _findings(engine)] == [("hip", "right")]
    assert [s.id for s in pending_sites(engine=engine)] == [waiting.id]


def test_a_site_the_header_did_not_map_is_completed_by_a_finding_at_any_site(
    engine: Engine, tmp_path: Path
) -> None:
    _patients(engine, tmp_path / "csv")
    radiograph(tmp_path / "x.dcm", BodyPartExamined="CHEST", Laterality="")
    import_dicom_files(engine=engine, paths=[tmp_path / "x.dcm"], today=TODAY)
    [waiting] = pending_sites(engine=engine)
    with pytest.raises(ValidationFailed) as failed:
        complete_pending_site(
            engine=engine, actor="dr-a", pending_id=waiting.id, finding={"ho": "absent"}
        )
    assert [p.field for p in failed.value.problems] == ["side", "site"]
    assert _findings(engine) == []
    done = complete_pending_site(
        engine=engine, actor="dr-a", pending_id=waiting.id,
        finding={"ho": "absent", "site": "shoulder", "side": "left"}, today=TODAY,
    )  # fmt: skip
    assert done.status == "completed"


def test_csv_import_of_the_studys_findings_completes_matching_sites(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _left_and_right_hip(engine, tmp_path)
    radiograph(tmp_path / "knee.dcm", StudyDate="20250311", BodyPartExamined="KNEE")
    import_dicom_files(engine=engine, paths=[tmp_path / "knee.dcm"], today=TODAY)
    knee = next(s.id for s in pending_sites(engine=engine) if s.site == "knee")
    study = {"mrn": "P1", "modality": "radiograph", "accession": "ACC-77"}
    write_csv(
        tmp_path / "more",
        "imaging.csv",
        [
            {**study, "date": "2025-03-10", "site": "hip", "side": "left", "ho": "present"},
            # the knee study's finding is at the other side: its site stays pending
            {**study, "date": "2025-03-11", "site": "knee", "side": "right", "ho": "absent"},
        ],
    )
    summary = import_folder(engine, tmp_path / "more", today=TODAY)
    assert summary.added["imaging.csv"] == 2
    assert count_rows(engine)["imaging_study"] == 2  # the findings joined the DICOM studies
    assert summary.sites_completed == [ids["left"]]
    left = pending_site(engine=engine, pending_id=ids["left"])
    assert (left.status, left.completed_by) == ("completed", "import")
    assert sorted(s.id for s in pending_sites(engine=engine)) == sorted([ids["right"], knee])


def test_dicom_complete_command(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = engine.url.render_as_string(hide_password=False)
    _patients(engine, tmp_path / "csv")
    radiograph(tmp_path / "d" / "hip.dcm", StudyDate="20240101")
    radiograph(tmp_path / "d" / "chest.dcm", StudyDate="20240102", BodyPartExamined="CHEST")
    assert run(["--database-url", db, "dicom", "import", str(tmp_path / "d")]) == 0
    by_part = {s.body_part: s.id for s in pending_sites(engine=engine)}
    capsys.readouterr()

    hip = ["--database-url", db, "dicom", "complete", str(by_part["HIP"])]
    assert run([*hip, "--ho", "yes", "--brooker", "1", "--by", "dr-a"]) == 0
    assert f"pending site {by_part['HIP']} completed" in capsys.readouterr().out
    assert [f[1:] for f in _findings(engine)] == [("hip", "left", "present", 1)]
    assert run(["--database-url", db, "dicom", "pending"]) == 0
    listed = capsys.readouterr().out
    assert "1 pending sites" in listed and "CHEST" in listed
    assert run(["--database-url", db, "dicom", "pending", "--all"]) == 0
    assert "completed" in capsys.readouterr().out

    chest = ["--database-url", db, "dicom", "complete", str(by_part["CHEST"]), "--ho", "no"]
    assert run(chest) == 2
    error = capsys.readouterr().err
    assert "Body Part Examined ('CHEST') gives no site" in error and "--site" in error
    assert len(error.strip().splitlines()) == 1
    assert len(_findings(engine)) == 1  # nothing written
    assert run([*chest, "--site", "other"]) == 0  # the side is the header's left
    assert pending_sites(engine=engine) == []
    assert [f[1:4] for f in _findings(engine)][1] == ("other", "left", "absent")

    assert run([*hip, "--ho", "no"]) == 2
    assert "already completed by dr-a" in capsys.readouterr().err
    assert run(["--database-url", db, "dicom", "complete", "999", "--ho", "no"]) == 2
    assert "no pending DICOM site 999" in capsys.readouterr().err
