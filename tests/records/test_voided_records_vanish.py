"""A voided record is invisible to every reader: story, assessment (one patient and
the cohort), export, the import's natural-key matching, the patient list, reminders."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import write_csv
from tests.records.record_support import TODAY, add_patient
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.services import records
from tracker.services.assessment import assess_all, assess_one
from tracker.services.patients import list_patients
from tracker.store.story import load_story

AS_OF = dt.date(2025, 6, 1)


def scan(db: Engine, date: str, ratio: str) -> records.Saved:
    (saved,) = records.add_bone_scan(
        engine=db,
        actor="alice",
        mrn="A001",
        date=date,
        today=TODAY,
        measurements=[{"site": "hip", "side": "right", "phase": "delayed", "ratio": ratio}],
    )
    return saved


@pytest.fixture
def db(engine: Engine) -> Engine:
    """A right hip with a mature radiograph and falling scans 4.0 -> 1.8 (Kim: met),
    then a mistyped third scan of 2.6 that makes the activity rise."""
    add_patient(engine)
    records.add_imaging_study(
        engine=engine,
        actor="alice",
        mrn="A001",
        date="2025-04-01",
        modality="radiograph",
        findings=[{"site": "hip", "side": "right", "ho": "present", "cortex": "well_defined"}],
        today=TODAY,
    )
    scan(engine, "2025-01-10", "4.0")
    scan(engine, "2025-03-10", "1.8")
    return engine


def hip(db: Engine) -> tuple[str, float | None, str]:
    (site,) = assess_one(engine=db, mrn="A001", as_of=AS_OF).sites
    criterion = next(c for c in site.criteria if c.name == "scan_stabilised")
    return str(site.activity), site.latest_ratio, str(criterion.status)


def cohort_ratio(db: Engine) -> float:
    frame = assess_all(engine=db, as_of=AS_OF)
    return float(frame.loc[frame["mrn"] == "A001", "latest_ratio"].iloc[0])


def exported_ratios(db: Engine, folder: Path) -> list[str]:
    export_folder(db, folder)
    with (folder / "bone_scans.csv").open(encoding="utf-8") as handle:
        return [row["ratio"] for row in csv.DictReader(handle)]


def test_voided_scan_changes_the_assessment_and_the_export(db: Engine, tmp_path: Path) -> None:
    wrong = scan(db, "2025-05-10", "2.6")
    assert hip(db) == ("rising", 2.6, "unmet")
    assert cohort_ratio(db) == 2.6
    assert exported_ratios(db, tmp_path / "before") == ["4", "1.8", "2.6"]

    records.void_record(
        engine=db,
        actor="alice",
        entity="bone_scan_measurement",
        record_id=wrong.id,
        expected_version=1,
        reason="typed into the wrong patient",
    )
    assert hip(db) == ("declining", 1.8, "met")
    assert cohort_ratio(db) == 1.8
    assert exported_ratios(db, tmp_path / "after") == ["4", "1.8"]
    with Session(db) as session:
        assert [s.ratio for s in load_story(session, "A001").bone_scans] == [4.0, 1.8]


def test_import_re_enters_a_voided_record_and_re_import_adds_nothing(
    db: Engine, tmp_path: Path
) -> None:
    injury = records.add_injury(
        engine=db, actor="alice", mrn="A001", kind="burn", date="2025-01-05", today=TODAY
    )
    records.void_record(
        engine=db,
        actor="alice",
        entity="injury",
        record_id=injury.id,
        expected_version=1,
        reason="wrong kind",
    )
    row = {"mrn": "A001", "kind": "burn", "date": "2025-01-05", "notes": ""}
    write_csv(tmp_path / "in", "injuries.csv", [row])
    assert import_folder(db, tmp_path / "in", today=TODAY).added == {"injuries.csv": 1}
    again = import_folder(db, tmp_path / "in", today=TODAY)
    assert (again.added, again.unchanged) == ({"injuries.csv": 0}, {"injuries.csv": 1})


def test_voided_records_leave_the_patient_list_and_the_reminders(db: Engine) -> None:
    add_patient(db, "B002")
    injury = records.add_injury(
        engine=db,
        actor="alice",
        mrn="B002",
        kind="spinal_cord_injury",
        date="2025-05-01",
        today=TODAY,
    )
    (listed,) = list_patients(engine=db, search="B002")
    assert listed.injuries == "spinal_cord_injury"
    planned = plan(engine=db, as_of=AS_OF, protocol=Protocol(), dry_run=True)
    assert "hip_ultrasound_screen" in set(
        planned.created.loc[planned.created["mrn"] == "B002", "rule"]
    )

    records.void_record(
        engine=db,
        actor="alice",
        entity="injury",
        record_id=injury.id,
        expected_version=1,
        reason="not this patient",
    )
    (listed,) = list_patients(engine=db, search="B002")
    assert listed.injuries == ""
    assert list_patients(engine=db, injury="spinal_cord_injury") == []
    planned = plan(engine=db, as_of=AS_OF, protocol=Protocol(), dry_run=True)
    assert "B002" not in set(planned.created["mrn"])


def test_a_voided_patient_leaves_the_list(db: Engine) -> None:
    add_patient(db, "C003")
    with db.connect() as conn:
        pid = conn.exec_driver_sql("SELECT id FROM patient WHERE mrn = 'C003'").scalar_one()
    records.void_record(
        engine=db,
        actor="admin",
        entity="patient",
        record_id=pid,
        expected_version=1,
        reason="duplicate registration",
    )
    assert [p.mrn for p in list_patients(engine=db)] == ["A001"]
