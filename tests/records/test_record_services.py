"""Adding, correcting and voiding every clinical record through the services, on
SQLite and PostgreSQL: validation by the CSV import's rules, versions, audit."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.records.record_support import TODAY, add_patient, audit_rows, count
from tracker.errors import Conflict, NotFound, ValidationFailed
from tracker.services import records


@pytest.fixture
def db(engine: Engine) -> Engine:
    add_patient(engine)
    return engine


def fields(failed: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    assert all(p.line is None for p in failed.value.problems)
    return {p.field: p.reason for p in failed.value.problems}


def study(db: Engine, **overrides: object) -> records.Saved:
    values: dict[str, object] = {
        "date": "2025-03-01",
        "modality": "radiograph",
        "findings": [
            {"site": "hip", "side": "right", "ho": "present", "brooker": "2"},
            {"site": "knee", "side": "left", "ho": "absent"},
        ],
    }
    values.update(overrides)
    return records.add_imaging_study(engine=db, actor="alice", mrn="A001", today=TODAY, **values)


def test_each_record_type_is_added_with_a_create_audit_row(db: Engine) -> None:
    added = [
        records.add_injury(
            engine=db,
            actor="alice",
            mrn="A001",
            kind="spinal_cord_injury",
            date="2025-01-10",
            today=TODAY,
        ),
        study(db),
        *records.add_bone_scan(
            engine=db,
            actor="alice",
            mrn="A001",
            date="2025-03-02",
            today=TODAY,
            measurements=[
                {"site": "hip", "side": "right", "phase": "delayed", "ratio": "4.1"},
                {
                    "site": "hip",
                    "side": "right",
                    "phase": "blood_pool",
                    "lesion_counts": "300",
                    "reference_counts": "100",
                },
            ],
        ),
        records.start_course(
            engine=db,
            actor="alice",
            mrn="A001",
            agent="indomethacin",
            intent="prophylaxis",
            start_date="2025-01-12",
            planned_weeks="6",
            today=TODAY,
        ),
        records.add_procedure(
            engine=db,
            actor="alice",
            mrn="A001",
            kind="resection",
            date="2025-05-02",
            site="hip",
            side="right",
            today=TODAY,
        ),
        records.add_lab(
            engine=db,
            actor="alice",
            mrn="A001",
            date="2025-03-02",
            analyte="alp",
            value="130",
            unit="U/L",
            ref_high="120",
            today=TODAY,
        ),
    ]
    assert [s.entity for s in added] == [
        "injury",
        "imaging_study",
        "bone_scan_measurement",
        "bone_scan_measurement",
        "treatment_course",
        "procedure",
        "lab_result",
    ]
    assert {s.version for s in added} == {1}
    assert count(db, "site_finding") == 2
    creates = audit_rows(db)
    assert [(r["action"], r["entity"], r["entity_id"]) for r in creates] == [
        ("create", s.entity, s.id) for s in added
    ]
    assert all(r["username"] == "alice" and r["mrn"] == "A001" for r in creates)
    assert creates[1]["after"]["findings"][0]["brooker"] == 2
    # the ratio follows from the counts, as in the CSV import
    assert creates[3]["after"]["ratio"] == 3.0


def test_impossible_values_are_refused_with_the_form_field_paths(db: Engine) -> None:
    with pytest.raises(ValidationFailed) as failed:
        study(
            db,
            date="1975-05-01",
            findings=[
                {"site": "hip", "side": "right", "ho": "present", "brooker": "2"},
                {"site": "hip", "side": "right", "ho": "maybe", "brooker": "7"},
            ],
        )
    problems = fields(failed)
    assert problems["date"] == "1975-05-01 is before the patient's birth date 1980-03-01"
    assert problems["findings[1].brooker"] == "7 is outside 0 to 4"
    assert problems["findings[1].ho"] == "'maybe' is not one of present, absent, indeterminate"

    with pytest.raises(ValidationFailed) as failed:
        records.add_bone_scan(
            engine=db,
            actor="alice",
            mrn="A001",
            date="2025-03-02",
            today=TODAY,
            measurements=[{"site": "hip", "side": "right", "phase": "delayed", "ratio": "0"}],
        )
    assert fields(failed) == {"measurements[0].ratio": "0 must be greater than 0"}

    with pytest.raises(ValidationFailed) as failed:
        records.start_course(
            engine=db,
            actor="alice",
            mrn="A001",
            agent="aspirin",
            intent="treatment",
            start_date="2025-03-05",
            end_date="2025-03-01",
            today=TODAY,
        )
    problems = fields(failed)
    assert problems["end_date"] == "2025-03-01 is before start_date 2025-03-05"
    assert problems["agent"].startswith("'aspirin' is not one of indomethacin, other_nsaid")

    with pytest.raises(ValidationFailed) as failed:
        records.add_lab(
            engine=db,
            actor="alice",
            mrn="A001",
            date="2025-07-01",
            analyte="alp",
            value="x",
            unit="U/L",
            today=TODAY,
        )
    assert fields(failed) == {
        "date": "2025-07-01 is in the future",
        "value": "'x' is not a number",
    }
    assert sum(count(db, t) for t in ("imaging_study", "bone_scan_measurement", "lab_result")) == 0
    assert audit_rows(db) == []


def test_same_site_twice_in_one_study_names_the_earlier_finding(db: Engine) -> None:
    with pytest.raises(ValidationFailed) as failed:
        study(
            db,
            findings=[
                {"site": "hip", "side": "right", "ho": "present"},
                {"site": "hip", "side": "right", "ho": "absent"},
            ],
        )
    assert fields(failed)["findings[1].side"].startswith("repeats findings[0] (same")


def test_a_record_already_stored_is_refused_as_a_duplicate(db: Engine) -> None:
    add = dict(engine=db, actor="alice", mrn="A001", kind="burn", date="2025-01-10", today=TODAY)
    first = records.add_injury(**add)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed) as failed:
        records.add_injury(**add)  # type: ignore[arg-type]
    assert f"already recorded as injury {first.id}" in fields(failed)["date"]


def test_unknown_patient_is_not_found(db: Engine) -> None:
    with pytest.raises(NotFound, match="No patient with mrn 'Z9'"):
        records.add_injury(
            engine=db, actor="alice", mrn="Z9", kind="burn", date="2025-01-10", today=TODAY
        )


def test_correction_bumps_the_version_and_audits_before_and_after(db: Engine) -> None:
    lab = records.add_lab(
        engine=db,
        actor="alice",
        mrn="A001",
        date="2025-03-02",
        analyte="alp",
        value="130",
        unit="U/L",
        today=TODAY,
    )
    saved = records.correct_lab(
        engine=db,
        actor="bob",
        record_id=lab.id,
        expected_version=1,
        changes={"value": "95", "ref_high": "120"},
        today=TODAY,
    )
    assert saved.version == 2
    row = audit_rows(db, "lab_result")[-1]
    assert (row["action"], row["username"]) == ("correct", "bob")
    assert (row["before"]["value"], row["before"]["ref_high"], row["before"]["version"]) == (
        130.0,
        None,
        1,
    )
    assert (row["after"]["value"], row["after"]["ref_high"], row["after"]["version"]) == (
        95.0,
        120.0,
        2,
    )


@pytest.mark.parametrize(
    ("adder", "corrector", "values", "change", "stored"),
    [
        (
            "add_injury",
            "correct_injury",
            {"kind": "burn", "date": "2025-01-10"},
            {"kind": "amputation"},
            ("kind", "amputation"),
        ),
        (
            "add_procedure",
            "correct_procedure",
            {"kind": "resection", "date": "2025-05-02", "site": "hip", "side": "right"},
            {"side": "left"},
            ("side", "left"),
        ),
        (
            "start_course",
            "correct_course",
            {"agent": "etidronate", "intent": "treatment", "start_date": "2025-02-01"},
            {"dose": "20", "dose_unit": "mg/kg"},
            ("dose", 20.0),
        ),
    ],
)
def test_each_flat_record_is_corrected(  # type: ignore[no-untyped-def]
    db: Engine, adder, corrector, values, change, stored
) -> None:
    saved = getattr(records, adder)(engine=db, actor="alice", mrn="A001", today=TODAY, **values)
    again = getattr(records, corrector)(
        engine=db,
        actor="alice",
        record_id=saved.id,
        expected_version=1,
        changes=change,
        today=TODAY,
    )
    assert again.version == 2
    after = audit_rows(db, saved.entity)[-1]["after"]
    assert after[stored[0]] == stored[1]


def test_a_correction_is_checked_like_a_new_record(db: Engine) -> None:
    course = records.start_course(
        engine=db,
        actor="alice",
        mrn="A001",
        agent="etidronate",
        intent="treatment",
        start_date="2025-02-01",
        end_date="2025-03-01",
        today=TODAY,
    )
    with pytest.raises(ValidationFailed) as failed:
        records.correct_course(
            engine=db,
            actor="alice",
            record_id=course.id,
            expected_version=1,
            changes={"start_date": "2025-04-01"},
            today=TODAY,
        )
    assert fields(failed) == {"end_date": "2025-03-01 is before start_date 2025-04-01"}
    with pytest.raises(ValidationFailed) as failed:
        records.correct_course(
            engine=db,
            actor="alice",
            record_id=course.id,
            expected_version=1,
            changes={"colour": "red"},
            today=TODAY,
        )
    assert "colour" in fields(failed)


def test_stale_version_is_refused_naming_who_saved_first_and_nothing_is_written(
    db: Engine,
) -> None:
    injury = records.add_injury(
        engine=db, actor="alice", mrn="A001", kind="burn", date="2025-01-10", today=TODAY
    )
    records.correct_injury(
        engine=db,
        actor="alice",
        record_id=injury.id,
        expected_version=1,
        changes={"notes": "left arm"},
        today=TODAY,
    )
    before = audit_rows(db)
    with pytest.raises(
        Conflict,
        match=r"Injury \d+ was changed by alice at .* since you opened "
        r"it; reload and re-apply your change",
    ):
        records.correct_injury(
            engine=db,
            actor="bob",
            record_id=injury.id,
            expected_version=1,
            changes={"kind": "amputation"},
            today=TODAY,
        )
    with pytest.raises(Conflict):
        records.void_record(
            engine=db,
            actor="bob",
            entity="injury",
            record_id=injury.id,
            expected_version=1,
            reason="duplicate",
        )
    assert audit_rows(db) == before
    assert audit_rows(db)[-1]["after"]["kind"] == "burn"


def test_stopping_a_course_keeps_the_reason_and_refuses_an_end_before_the_start(
    db: Engine,
) -> None:
    course = records.start_course(
        engine=db,
        actor="alice",
        mrn="A001",
        agent="indomethacin",
        intent="treatment",
        start_date="2025-03-05",
        today=TODAY,
    )
    with pytest.raises(ValidationFailed) as failed:
        records.stop_course(
            engine=db,
            actor="alice",
            course_id=course.id,
            expected_version=1,
            end_date="2025-03-01",
            reason="rash",
            today=TODAY,
        )
    assert fields(failed) == {"end_date": "2025-03-01 is before start_date 2025-03-05"}
    with pytest.raises(ValidationFailed) as failed:
        records.stop_course(
            engine=db,
            actor="alice",
            course_id=course.id,
            expected_version=1,
            end_date="2025-04-01",
            reason=" ",
            today=TODAY,
        )
    assert "reason" in fields(failed)
    stopped = records.stop_course(
        engine=db,
        actor="alice",
        course_id=course.id,
        expected_version=1,
        end_date="2025-04-01",
        reason="gastric upset",
        today=TODAY,
    )
    assert stopped.version == 2
    after = audit_rows(db, "treatment_course")[-1]["after"]
    assert (after["end_date"], after["stop_reason"]) == ("2025-04-01", "gastric upset")


def test_imaging_correction_changes_findings_and_adds_new_ones(db: Engine) -> None:
    saved = study(db)
    corrected = records.correct_imaging_study(
        engine=db,
        actor="alice",
        record_id=saved.id,
        expected_version=1,
        today=TODAY,
        changes={
            "date": "2025-03-03",
            "findings": [
                {"site": "hip", "side": "right", "ho": "present", "brooker": "3"},
                {"site": "knee", "side": "left", "ho": "absent"},
                {"site": "elbow", "side": "left", "ho": "indeterminate"},
            ],
        },
    )
    assert corrected.version == 2
    row = audit_rows(db, "imaging_study")[-1]
    assert [f["brooker"] for f in row["before"]["findings"]] == [2, None]
    assert [(f["site"], f["brooker"]) for f in row["after"]["findings"]] == [
        ("hip", 3),
        ("knee", None),
        ("elbow", None),
    ]
    assert row["after"]["date"] == "2025-03-03"
    finding = row["after"]["findings"][0]
    again = records.correct_site_finding(
        engine=db,
        actor="alice",
        record_id=finding["id"],
        expected_version=finding["version"],
        changes={"cortex": "well_defined"},
        today=TODAY,
    )
    assert again.version == finding["version"] + 1


def test_bone_scan_correction_as_the_form_sends_it(db: Engine) -> None:
    (scan,) = records.add_bone_scan(
        engine=db,
        actor="alice",
        mrn="A001",
        date="2025-03-02",
        today=TODAY,
        measurements=[{"site": "hip", "side": "right", "phase": "delayed", "ratio": "4.1"}],
    )
    with pytest.raises(ValidationFailed) as failed:
        records.correct_bone_scan(
            engine=db,
            actor="alice",
            record_id=scan.id,
            expected_version=1,
            today=TODAY,
            changes={"measurements": [{"ratio": "0"}]},
        )
    assert fields(failed) == {"ratio": "0 must be greater than 0"}
    records.correct_bone_scan(
        engine=db,
        actor="alice",
        record_id=scan.id,
        expected_version=1,
        today=TODAY,
        changes={"date": "2025-03-04", "measurements": [{"ratio": "3.9"}]},
    )
    after = audit_rows(db, "bone_scan_measurement")[-1]["after"]
    assert (after["date"], after["ratio"]) == ("2025-03-04", 3.9)


def test_void_needs_a_reason_and_frees_the_natural_key(db: Engine) -> None:
    add = dict(engine=db, actor="alice", mrn="A001", kind="burn", date="2025-01-10", today=TODAY)
    injury = records.add_injury(**add)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed) as failed:
        records.void_record(
            engine=db,
            actor="alice",
            entity="injury",
            record_id=injury.id,
            expected_version=1,
            reason="",
        )
    assert "reason" in fields(failed)
    records.void_record(
        engine=db,
        actor="alice",
        entity="injury",
        record_id=injury.id,
        expected_version=1,
        reason="entered on the wrong patient",
    )
    again = records.add_injury(**add)  # type: ignore[arg-type]
    assert again.id != injury.id
    assert (count(db, "injury"), count(db, "injury", live=True)) == (2, 1)
    void = [r for r in audit_rows(db, "injury") if r["action"] == "void"][0]
    assert void["before"]["voided_at"] is None
    assert void["after"]["voided_reason"] == "entered on the wrong patient"
    assert void["after"]["voided_by"] == "alice"
    with pytest.raises(Conflict, match="was voided by alice"):
        records.correct_injury(
            engine=db,
            actor="alice",
            record_id=injury.id,
            expected_version=2,
            changes={"notes": "x"},
            today=TODAY,
        )


def test_voiding_a_study_voids_its_findings_and_allows_re_entry(db: Engine) -> None:
    saved = study(db)
    records.void_record(
        engine=db,
        actor="alice",
        entity="imaging_study",
        record_id=saved.id,
        expected_version=1,
        reason="wrong date",
    )
    assert count(db, "site_finding", live=True) == 0
    study(db)
    assert count(db, "imaging_study", live=True) == 1
    assert count(db, "site_finding", live=True) == 2


def test_two_people_saving_the_same_version_at_once_one_wins_the_other_is_refused(
    db: Engine,
) -> None:
    lab = records.add_lab(
        engine=db,
        actor="alice",
        mrn="A001",
        date="2025-03-02",
        analyte="crp",
        value="12",
        unit="mg/L",
        today=TODAY,
    )
    outcomes: list[str] = []

    def save(actor: str, value: str) -> None:
        try:
            records.correct_lab(
                engine=db,
                actor=actor,
                record_id=lab.id,
                expected_version=1,
                changes={"value": value},
                today=TODAY,
            )
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=save, args=("alice", "13")),
        threading.Thread(target=save, args=("bob", "14")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "saved"]
    corrections = [r for r in audit_rows(db, "lab_result") if r["action"] == "correct"]
    assert len(corrections) == 1 and corrections[0]["after"]["version"] == 2


def test_the_database_refuses_a_void_without_a_reason(db: Engine) -> None:
    injury = records.add_injury(
        engine=db, actor="alice", mrn="A001", kind="burn", date="2025-01-10", today=TODAY
    )
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        conn.execute(
            sa.text("UPDATE injury SET voided_at = CURRENT_TIMESTAMP WHERE id = :id"),
            {"id": injury.id},
        )
