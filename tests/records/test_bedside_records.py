"""The bedside examination in the store and the CSV interchange (issue 16, first slice):
examinations and range of motion are clinical records like the others (checked,
versioned, audited, voidable), exams.csv and rom.csv import all or nothing and round
trip byte for byte, and imaging studies carry their indication."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import write_csv
from tests.records.record_support import TODAY, add_patient, audit_rows, count
from tracker.errors import StaleRecord, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder
from tracker.interchange.deidentify import date_shift, export_deidentified, pseudonym
from tracker.services import records
from tracker.store.loaders import read_table
from tracker.store.story import load_story

ACTOR = "nurse.ng"
KEY = b"bedside-test-key-0123456789"

PATIENTS = [
    {"mrn": "A001", "birth_date": "1980-03-01", "sex": "male", "family_name": "Ng"},
    {"mrn": "A002", "birth_date": "1975-07-09", "sex": "female", "family_name": "Okafor"},
]
EXAMS = [
    {"mrn": "A001", "date": "2025-02-10", "site": "hip", "side": "right", "swelling": "yes",
     "warmth": "yes", "erythema": "no", "pain": "6", "notes": "hot, swollen right hip"},
    {"mrn": "A001", "date": "2025-02-10", "site": "hip", "side": "left", "swelling": "no",
     "warmth": "", "erythema": "", "pain": "0", "notes": ""},
    {"mrn": "A002", "date": "2025-03-01", "site": "elbow", "side": "left", "swelling": "",
     "warmth": "", "erythema": "", "pain": "", "notes": "=not a formula"},
]  # fmt: skip
ROM = [
    {"mrn": "A001", "date": "2025-02-01", "site": "hip", "side": "right",
     "movement": "flexion", "degrees": "100"},
    {"mrn": "A001", "date": "2025-02-10", "site": "hip", "side": "right",
     "movement": "flexion", "degrees": "70"},
    {"mrn": "A001", "date": "2025-02-10", "site": "hip", "side": "right",
     "movement": "abduction", "degrees": "22.5"},
    {"mrn": "A002", "date": "2025-03-01", "site": "elbow", "side": "left",
     "movement": "extension", "degrees": "0"},
]  # fmt: skip
IMAGING = [
    {"mrn": "A001", "date": "2025-02-11", "modality": "ultrasound", "site": "hip",
     "side": "right", "ho": "present", "indication": "symptoms"},
    {"mrn": "A001", "date": "2025-02-11", "modality": "ultrasound", "site": "hip",
     "side": "left", "ho": "absent", "indication": "symptoms"},
    {"mrn": "A002", "date": "2025-03-02", "modality": "ultrasound", "site": "thigh",
     "side": "left", "ho": "absent", "indication": "dvt_query"},
    {"mrn": "A002", "date": "2025-03-05", "modality": "radiograph", "site": "elbow",
     "side": "left", "ho": "absent", "indication": ""},
]  # fmt: skip


def _folder(tmp_path: Path, name: str = "in", **files: list[dict[str, object]]) -> Path:
    folder = tmp_path / name
    write_csv(folder, "patients.csv", PATIENTS)
    for file, rows in files.items():
        write_csv(folder, f"{file}.csv", rows)
    return folder


def _problems(failed: pytest.ExceptionInfo[ValidationFailed]) -> set[tuple[str, int | None, str]]:
    return {(p.source, p.line, p.field) for p in failed.value.problems}


def _nothing_written(engine: Engine) -> None:
    for table in ("patient", "clinical_exam", "range_of_motion", "imaging_study"):
        assert count(engine, table) == 0, table


# ---------------------------------------------------------------- CSV interchange


def test_exam_and_rom_round_trip_byte_identical(
    engine: Engine, sqlite_engine: Engine, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, exams=EXAMS, rom=ROM, imaging=IMAGING)
    summary = import_folder(engine, folder, today=TODAY)
    assert summary.added["exams.csv"] == 3 and summary.added["rom.csv"] == 4
    export_folder(engine, tmp_path / "a")
    import_folder(sqlite_engine, tmp_path / "a", today=TODAY)
    export_folder(sqlite_engine, tmp_path / "b")
    for exported in sorted((tmp_path / "a").iterdir()):
        assert exported.read_bytes() == (tmp_path / "b" / exported.name).read_bytes()
    exams = (tmp_path / "a" / "exams.csv").read_text().splitlines()
    assert exams[0] == "mrn,date,site,side,swelling,warmth,erythema,pain,notes"
    assert 'A001,2025-02-10,hip,right,yes,yes,no,6,"hot, swollen right hip"' in exams
    assert "A002,2025-03-01,elbow,left,,,,,'=not a formula" in exams
    rom = (tmp_path / "a" / "rom.csv").read_text().splitlines()
    assert rom[0] == "mrn,date,site,side,movement,degrees"
    assert "A001,2025-02-10,hip,right,abduction,22.5" in rom
    imaging = (tmp_path / "a" / "imaging.csv").read_text().splitlines()
    assert imaging[0].endswith(",accession,indication,notes")
    assert sum(",symptoms," in line for line in imaging) == 2
    # re-importing the same rows adds nothing (natural keys)
    assert import_folder(engine, folder, today=TODAY).total_added == 0


def test_pain_eleven_is_refused_naming_pain(engine: Engine, tmp_path: Path) -> None:
    rows = [{**EXAMS[0], "pain": "11"}, {**EXAMS[1], "pain": "-1"}, {**EXAMS[2], "pain": "3.5"}]
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, _folder(tmp_path, exams=rows), today=TODAY)
    assert _problems(failed) == {("exams.csv", 2, "pain"), ("exams.csv", 3, "pain"),
                                 ("exams.csv", 4, "pain")}  # fmt: skip
    reasons = {p.line: p.reason for p in failed.value.problems}
    assert reasons[2] == "11 is outside 0 to 10"
    _nothing_written(engine)


def test_a_sign_other_than_yes_or_no_is_refused_naming_the_sign(
    engine: Engine, tmp_path: Path
) -> None:
    with pytest.raises(ValidationFailed) as failed:
        import_folder(
            engine, _folder(tmp_path, exams=[{**EXAMS[0], "warmth": "warm"}]), today=TODAY
        )
    ((problem),) = failed.value.problems
    assert (problem.line, problem.field) == (2, "warmth")
    assert "yes, no" in problem.reason
    _nothing_written(engine)


@pytest.mark.parametrize("degrees", ["201", "-1", "ninety", ""])
def test_degrees_out_of_range_or_missing_is_refused_naming_degrees(
    engine: Engine, tmp_path: Path, degrees: str
) -> None:
    rows = [ROM[0], {**ROM[1], "degrees": degrees}]
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, _folder(tmp_path, rom=rows), today=TODAY)
    assert _problems(failed) == {("rom.csv", 3, "degrees")}
    _nothing_written(engine)


def test_unknown_movement_and_unknown_side_are_refused_naming_the_field(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [{**ROM[0], "movement": "circumduction"}, {**ROM[1], "side": "both"}]
    with pytest.raises(ValidationFailed) as failed:
        import_folder(
            engine, _folder(tmp_path, rom=rows, exams=[{**EXAMS[0], "side": "up"}]), today=TODAY
        )
    assert _problems(failed) == {
        ("rom.csv", 2, "movement"),
        ("rom.csv", 3, "side"),
        ("exams.csv", 2, "side"),
    }
    movement = next(p for p in failed.value.problems if p.field == "movement")
    assert "'circumduction' is not one of flexion, extension" in movement.reason
    _nothing_written(engine)


def test_rom_row_for_unknown_mrn_is_refused_and_nothing_written(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [*ROM, {**ROM[0], "mrn": "Z999"}]
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, _folder(tmp_path, rom=rows, exams=EXAMS), today=TODAY)
    ((problem),) = failed.value.problems
    assert (problem.source, problem.line, problem.field) == ("rom.csv", 6, "mrn")
    assert "'Z999' is not a known patient" in problem.reason
    _nothing_written(engine)


def test_repeated_natural_key_in_one_file_names_the_earlier_line(
    engine: Engine, tmp_path: Path
) -> None:
    with pytest.raises(ValidationFailed) as failed:
        import_folder(
            engine,
            _folder(tmp_path, rom=[ROM[1], {**ROM[1], "degrees": "75"}], exams=[EXAMS[0]] * 2),
            today=TODAY,
        )
    reasons = {(p.source, p.line): (p.field, p.reason) for p in failed.value.problems}
    assert reasons[("rom.csv", 3)][0] == "movement"
    assert reasons[("rom.csv", 3)][1].startswith("repeats line 2")
    assert reasons[("exams.csv", 3)][0] == "side"
    _nothing_written(engine)


def test_rows_of_one_study_must_share_its_indication(engine: Engine, tmp_path: Path) -> None:
    rows = [IMAGING[0], {**IMAGING[1], "indication": "screening"}, IMAGING[2]]
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, _folder(tmp_path, imaging=rows), today=TODAY)
    ((problem),) = failed.value.problems
    assert (problem.line, problem.field) == (3, "indication")
    assert "line 2" in problem.reason
    _nothing_written(engine)


def test_unknown_indication_is_refused_naming_indication(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as failed:
        import_folder(
            engine, _folder(tmp_path, imaging=[{**IMAGING[2], "indication": "dvt"}]), today=TODAY
        )
    ((problem),) = failed.value.problems
    assert (problem.line, problem.field) == (2, "indication")
    assert "dvt_query" in problem.reason


def test_a_new_finding_for_a_stored_study_may_not_change_its_indication(
    engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, _folder(tmp_path, imaging=[IMAGING[0]]), today=TODAY)
    later = _folder(tmp_path, "later", imaging=[{**IMAGING[1], "indication": "screening"}])
    with pytest.raises(ValidationFailed) as failed:
        import_folder(engine, later, today=TODAY)
    ((problem),) = failed.value.problems
    assert (problem.line, problem.field) == (2, "indication")
    assert "'symptoms'" in problem.reason
    # blank says nothing about it: the finding joins the study
    import_folder(engine, _folder(tmp_path, "blank", imaging=[{**IMAGING[1], "indication": ""}]))
    assert count(engine, "imaging_study") == 1 and count(engine, "site_finding") == 2


def test_a_v1_folder_without_the_new_files_or_column_still_imports(
    engine: Engine, tmp_path: Path
) -> None:
    v1 = [{k: v for k, v in row.items() if k != "indication"} for row in IMAGING]
    import_folder(engine, _folder(tmp_path, imaging=v1), today=TODAY)
    assert count(engine, "site_finding") == 4


def test_deidentified_export_keeps_exams_and_rom_with_dates_shifted(
    engine: Engine, tmp_path: Path
) -> None:
    import_folder(engine, _folder(tmp_path, exams=EXAMS, rom=ROM), today=TODAY)
    export_deidentified(engine=engine, folder=tmp_path / "deid", key=KEY, today=TODAY)
    exams = (tmp_path / "deid" / "exams.csv").read_text().splitlines()
    assert exams[0] == "mrn,date,site,side,swelling,warmth,erythema,pain"  # no notes
    shifted = dt.date(2025, 2, 10) + dt.timedelta(days=date_shift(KEY, "A001"))
    assert f"{pseudonym(KEY, 'A001')},{shifted},hip,right,yes,yes,no,6" in exams
    rom = (tmp_path / "deid" / "rom.csv").read_text().splitlines()
    assert len(rom) == 1 + len(ROM)
    assert f"{pseudonym(KEY, 'A001')},{shifted},hip,right,flexion,70" in rom
    assert not any("A001" in line or "A002" in line for line in exams + rom)


# ---------------------------------------------------------------- the database's rules


BAD = {
    "pain above 10": (
        "INSERT INTO clinical_exam (patient_id, date, site, side, pain) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 11)"
    ),
    "sign not yes/no": (
        "INSERT INTO clinical_exam (patient_id, date, site, side, warmth) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 'warm')"
    ),
    "exam site": (
        "INSERT INTO clinical_exam (patient_id, date, site, side) "
        "VALUES (:pid, '2025-01-01', 'toe', 'left')"
    ),
    "degrees above 200": (
        "INSERT INTO range_of_motion (patient_id, date, site, side, movement, degrees) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 'flexion', 201)"
    ),
    "degrees below 0": (
        "INSERT INTO range_of_motion (patient_id, date, site, side, movement, degrees) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 'flexion', -1)"
    ),
    "unknown movement": (
        "INSERT INTO range_of_motion (patient_id, date, site, side, movement, degrees) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 'circumduction', 90)"
    ),
    "unknown patient": (
        "INSERT INTO range_of_motion (patient_id, date, site, side, movement, degrees) "
        "VALUES (:pid + 1000, '2025-01-01', 'hip', 'left', 'flexion', 90)"
    ),
    "unknown indication": (
        "INSERT INTO imaging_study (patient_id, date, modality, indication) "
        "VALUES (:pid, '2025-01-01', 'ultrasound', 'dvt')"
    ),
    "voided without reason": (
        "INSERT INTO clinical_exam (patient_id, date, site, side, voided_at) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', '2025-02-01 00:00:00+00:00')"
    ),
}


def _pid(engine: Engine) -> int:
    add_patient(engine)
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT id FROM patient WHERE mrn = 'A001'")).scalar_one())


@pytest.mark.parametrize("rule", sorted(BAD))
def test_degrees_out_of_range_refused_by_database_check(engine: Engine, rule: str) -> None:
    pid = _pid(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(BAD[rule]), {"pid": pid})
    assert count(engine, "clinical_exam") == 0 and count(engine, "range_of_motion") == 0


def test_database_keeps_one_live_exam_per_joint_and_day_and_one_rom_per_movement(
    engine: Engine,
) -> None:
    pid = _pid(engine)
    exam = (
        "INSERT INTO clinical_exam (patient_id, date, site, side) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left')"
    )
    rom = (
        "INSERT INTO range_of_motion (patient_id, date, site, side, movement, degrees) "
        "VALUES (:pid, '2025-01-01', 'hip', 'left', 'flexion', 90)"
    )
    for sql in (exam, rom):
        with engine.begin() as conn:
            conn.execute(sa.text(sql), {"pid": pid})
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(sql), {"pid": pid})
    with engine.begin() as conn:  # a voided row does not block re-entering the record
        conn.execute(
            sa.text("UPDATE range_of_motion SET voided_at = CURRENT_TIMESTAMP, voided_reason = 'x'")
        )
        conn.execute(sa.text(rom), {"pid": pid})
    assert count(engine, "range_of_motion") == 2


# ---------------------------------------------------------------- record services


def test_exam_is_stored_corrected_and_voided_with_versions_and_audit_rows(engine: Engine) -> None:
    add_patient(engine)
    saved = records.add_exam(
        engine=engine, actor=ACTOR, mrn="A001", date="2025-02-10", site="hip", side="right",
        swelling="yes", warmth="yes", pain="6", today=TODAY,
    )  # fmt: skip
    assert (saved.entity, saved.version) == ("clinical_exam", 1)
    corrected = records.correct_exam(
        engine=engine, actor=ACTOR, record_id=saved.id, expected_version=1,
        changes={"erythema": "yes", "pain": 7}, today=TODAY,
    )  # fmt: skip
    assert corrected.version == 2
    with pytest.raises(StaleRecord):
        records.correct_exam(
            engine=engine, actor=ACTOR, record_id=saved.id, expected_version=1,
            changes={"pain": 2}, today=TODAY,
        )  # fmt: skip
    records.void_record(
        engine=engine, actor=ACTOR, entity="clinical_exam", record_id=saved.id,
        expected_version=2, reason="wrong patient",
    )  # fmt: skip
    rows = audit_rows(engine, "clinical_exam")
    assert [r["action"] for r in rows] == ["create", "correct", "void"]
    assert rows[1]["before"]["pain"] == 6 and rows[1]["after"]["pain"] == 7
    assert rows[1]["after"]["erythema"] == "yes"
    assert rows[2]["before"]["voided_at"] is None
    assert rows[2]["after"]["voided_reason"] == "wrong patient"
    assert count(engine, "clinical_exam", live=True) == 0
    with Session(engine) as session:
        assert load_story(session, "A001").exams == []


def test_exam_form_values_are_checked_as_exams_csv_rows(engine: Engine) -> None:
    add_patient(engine)
    with pytest.raises(ValidationFailed) as failed:
        records.add_exam(
            engine=engine, actor=ACTOR, mrn="A001", date="2025-02-10", site="hip",
            side="right", warmth="warm", pain="11", today=TODAY,
        )  # fmt: skip
    assert {p.field for p in failed.value.problems} == {"warmth", "pain"}
    records.add_exam(
        engine=engine, actor=ACTOR, mrn="A001", date="2025-02-10", site="hip", side="right",
        today=TODAY,
    )  # fmt: skip
    with pytest.raises(ValidationFailed, match="already recorded"):
        records.add_exam(
            engine=engine, actor=ACTOR, mrn="A001", date="2025-02-10", site="hip",
            side="right", pain="3", today=TODAY,
        )  # fmt: skip
    assert count(engine, "clinical_exam") == 1


def test_several_movements_are_stored_at_once_or_not_at_all(engine: Engine) -> None:
    add_patient(engine)
    joint = {"date": "2025-02-10", "site": "hip", "side": "right"}
    with pytest.raises(ValidationFailed) as failed:
        records.add_range_of_motion(
            engine=engine, actor=ACTOR, mrn="A001", **joint, today=TODAY,
            measurements=[
                {"movement": "flexion", "degrees": "95"},
                {"movement": "abduction", "degrees": "201"},
                {"movement": "twirl", "degrees": "10"},
            ],
        )  # fmt: skip
    assert {p.field for p in failed.value.problems} == {
        "measurements[1].degrees",
        "measurements[2].movement",
    }
    assert count(engine, "range_of_motion") == 0
    saved = records.add_range_of_motion(
        engine=engine, actor=ACTOR, mrn="A001", **joint, today=TODAY,
        measurements=[{"movement": "flexion", "degrees": "95"},
                      {"movement": "abduction", "degrees": 30}],
    )  # fmt: skip
    assert [s.entity for s in saved] == ["range_of_motion"] * 2
    flexion = saved[0]
    records.correct_range_of_motion(
        engine=engine, actor=ACTOR, record_id=flexion.id, expected_version=1,
        changes={"degrees": 90}, today=TODAY,
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        records.correct_range_of_motion(
            engine=engine, actor=ACTOR, record_id=flexion.id, expected_version=2,
            changes={"degrees": -5}, today=TODAY,
        )  # fmt: skip
    assert [p.field for p in refused.value.problems] == ["degrees"]
    assert [r["action"] for r in audit_rows(engine, "range_of_motion")] == [
        "create",
        "create",
        "correct",
    ]
    with Session(engine) as session:
        story = load_story(session, "A001")
    assert [(m.movement, m.degrees, m.version) for m in story.range_of_motion] == [
        ("abduction", 30.0, 1),
        ("flexion", 90.0, 2),
    ]
    with engine.connect() as conn:
        frame = read_table(conn, "range_of_motion")
    assert sorted(frame["degrees"].tolist()) == [30.0, 90.0]


def test_rom_for_an_unknown_patient_is_refused(engine: Engine) -> None:
    from tracker.errors import NotFound

    with pytest.raises(NotFound, match="Z999"):
        records.add_range_of_motion(
            engine=engine, actor=ACTOR, mrn="Z999", date="2025-02-10", site="hip",
            side="right", measurements=[{"movement": "flexion", "degrees": 90}], today=TODAY,
        )  # fmt: skip
    assert count(engine, "range_of_motion") == 0


def test_imaging_study_keeps_its_indication_and_its_natural_key_ignores_it(
    engine: Engine,
) -> None:
    add_patient(engine)
    study = {"engine": engine, "actor": ACTOR, "mrn": "A001", "date": "2025-02-11",
             "modality": "ultrasound", "today": TODAY,
             "findings": [{"site": "hip", "side": "left", "ho": "absent"}]}  # fmt: skip
    saved = records.add_imaging_study(**study, indication="dvt_query")
    with pytest.raises(ValidationFailed, match="already recorded"):
        records.add_imaging_study(**study, indication="screening")
    with pytest.raises(ValidationFailed) as failed:
        records.add_imaging_study(**{**study, "date": "2025-02-12"}, indication="dvt")
    assert [p.field for p in failed.value.problems] == ["indication"]
    records.correct_imaging_study(
        engine=engine, actor=ACTOR, record_id=saved.id, expected_version=1,
        changes={"indication": "symptoms"}, today=TODAY,
    )  # fmt: skip
    with Session(engine) as session:
        (stored,) = load_story(session, "A001").studies
    assert stored.study.indication == "symptoms"
    assert [f.site for f in stored.findings] == ["hip"]


def test_every_interchange_file_has_a_table_the_import_writes() -> None:
    from tracker.interchange import tables

    assert [f.name for f in fmt.FORMATS][-2:] == ["exams.csv", "rom.csv"]
    assert tables.SIMPLE_TABLES["exams.csv"].name == "clinical_exam"
    assert tables.SIMPLE_TABLES["rom.csv"].name == "range_of_motion"
