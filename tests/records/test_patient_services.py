"""Adding and editing a patient through the services, on SQLite and PostgreSQL: the
CSV import's rules for every value, a version check on every edit, an audit row with
the patient before and after, and the corrections a patient page shows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.records.record_support import TODAY, audit_rows, count
from tracker.errors import Conflict, NotFound, StaleRecord, ValidationFailed
from tracker.interchange.csv_import import import_folder
from tracker.services import records
from tracker.services.patients import (
    add_patient,
    course_stop_reasons,
    record_changes,
    update_patient,
)
from tracker.services.teams import add_team


@pytest.fixture
def db(engine: Engine) -> Engine:
    add_team(engine=engine, name="spinal_unit", email="spinal@hospital.example")
    add_team(engine=engine, name="burns_unit", email="burns@hospital.example")
    return engine


def fields(failed: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, str]:
    return {p.field: p.reason for p in failed.value.problems}


def add_okafor(db: Engine, **overrides: object) -> records.Saved:
    values: dict[str, object] = {
        "mrn": "P-100",
        "family_name": "Okafor",
        "given_name": "Ada",
        "birth_date": "1970-03-04",
        "sex": "female",
        "team": "spinal_unit",
    }
    values.update(overrides)
    return add_patient(engine=db, actor="alice", today=TODAY, **values)  # type: ignore[arg-type]


def stored(db: Engine, mrn: str = "P-100") -> dict[str, object]:
    from sqlmodel import Session

    from tracker.store.story import load_story

    with Session(db) as session:
        p = load_story(session, mrn).patient
        return {
            "mrn": p.mrn,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "birth_date": p.birth_date,
            "sex": p.sex,
            "team": p.team,
            "version": p.version,
        }


def test_a_patient_added_with_typical_values_is_stored_and_audited_as_created(db: Engine) -> None:
    saved = add_okafor(db, mrn="  P-100 ", family_name=" Okafor ")

    assert (saved.mrn, saved.version) == ("P-100", 1)
    assert stored(db) == {
        "mrn": "P-100",
        "family_name": "Okafor",
        "given_name": "Ada",
        "birth_date": dt.date(1970, 3, 4),
        "sex": "female",
        "team": "spinal_unit",
        "version": 1,
    }
    (row,) = audit_rows(db, "patient")
    assert (row["username"], row["action"], row["mrn"], row["before"]) == (
        "alice",
        "create",
        "P-100",
        None,
    )
    assert row["after"]["family_name"] == "Okafor" and row["after"]["birth_date"] == "1970-03-04"


def test_only_the_mrn_is_required_and_blank_values_are_stored_as_absent(db: Engine) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_patient(engine=db, actor="alice", mrn="", birth_date="", sex="", team="", today=TODAY)
    assert fields(failed) == {"mrn": "is required"}

    add_patient(engine=db, actor="alice", mrn="P-200", birth_date="", sex="", today=TODAY)
    assert stored(db, "P-200")["birth_date"] is None and stored(db, "P-200")["sex"] is None


def test_a_taken_mrn_is_refused_naming_the_patient_who_has_it(db: Engine) -> None:
    add_okafor(db)
    with pytest.raises(ValidationFailed) as failed:
        add_okafor(db, family_name="Someone", given_name="Else")
    assert fields(failed) == {
        "mrn": "P-100 is already taken by OKAFOR, Ada; open that patient instead"
    }
    assert count(db, "patient") == 1


def test_a_team_the_clinic_does_not_have_is_refused(db: Engine) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_okafor(db, team="ward_99")
    assert "not one of the clinic's teams" in fields(failed)["team"]
    assert count(db, "patient") == 0


def test_bad_values_get_the_same_refusal_as_in_a_csv_import(db: Engine, tmp_path: Path) -> None:
    bad = {
        "mrn": "M" * 65,
        "birth_date": "1990-02-30",
        "sex": "f",
        "family_name": "x" * 201,
        "given_name": "Ada",
        "team": "",
    }
    with pytest.raises(ValidationFailed) as from_form:
        add_patient(engine=db, actor="alice", today=TODAY, **bad)
    write_csv(tmp_path, "patients.csv", [bad])
    with pytest.raises(ValidationFailed) as from_import:
        import_folder(db, tmp_path, today=TODAY)

    assert fields(from_form) == fields(from_import)
    assert set(fields(from_form)) == {"mrn", "birth_date", "sex", "family_name"}


def test_a_birth_date_in_the_future_is_refused(db: Engine) -> None:
    with pytest.raises(ValidationFailed) as failed:
        add_okafor(db, birth_date=(TODAY + dt.timedelta(days=1)).isoformat())
    assert fields(failed) == {"birth_date": "2025-06-16 is in the future"}


def test_an_edit_moves_the_version_on_and_audits_the_patient_before_and_after(
    db: Engine,
) -> None:
    add_okafor(db)
    saved = update_patient(
        engine=db, actor="bob", mrn="P-100", expected_version=1,
        changes={"team": "burns_unit", "given_name": "Adaeze"}, today=TODAY,
    )  # fmt: skip

    assert saved.version == 2
    assert stored(db)["team"] == "burns_unit" and stored(db)["given_name"] == "Adaeze"
    edit = audit_rows(db, "patient")[-1]
    assert (edit["username"], edit["action"]) == ("bob", "correct")
    assert (edit["before"]["team"], edit["after"]["team"]) == ("spinal_unit", "burns_unit")
    assert (edit["before"]["given_name"], edit["after"]["given_name"]) == ("Ada", "Adaeze")
    assert (edit["before"]["version"], edit["after"]["version"]) == (1, 2)


def test_an_edit_from_a_stale_version_is_refused_and_changes_nothing(db: Engine) -> None:
    add_okafor(db)
    update_patient(
        engine=db, actor="bob", mrn="P-100", expected_version=1,
        changes={"sex": "unknown"}, today=TODAY,
    )  # fmt: skip
    with pytest.raises(StaleRecord) as clash:
        update_patient(
            engine=db, actor="carol", mrn="P-100", expected_version=1,
            changes={"family_name": "Okafor-Smith"}, today=TODAY,
        )  # fmt: skip

    assert "Patient P-100 was changed by bob" in str(clash.value)
    assert isinstance(clash.value, Conflict)
    assert stored(db)["family_name"] == "Okafor" and stored(db)["version"] == 2
    assert [r["action"] for r in audit_rows(db, "patient")] == ["create", "correct"]


def test_the_mrn_cannot_be_changed_by_an_edit(db: Engine) -> None:
    add_okafor(db)
    with pytest.raises(ValidationFailed) as failed:
        update_patient(
            engine=db, actor="bob", mrn="P-100", expected_version=1,
            changes={"mrn": "P-101"}, today=TODAY,
        )  # fmt: skip
    assert fields(failed)["mrn"].startswith("cannot be changed once the patient is stored")
    assert stored(db)["mrn"] == "P-100"


def test_an_edit_that_changes_nothing_keeps_the_version_and_writes_no_audit_row(
    db: Engine,
) -> None:
    add_okafor(db)
    saved = update_patient(
        engine=db, actor="bob", mrn="P-100", expected_version=1,
        changes={"family_name": "Okafor", "birth_date": "1970-03-04"}, today=TODAY,
    )  # fmt: skip
    assert saved.version == 1
    assert [r["action"] for r in audit_rows(db, "patient")] == ["create"]


def test_a_birth_date_after_one_of_the_patients_records_is_refused(db: Engine) -> None:
    add_okafor(db)
    records.add_injury(
        engine=db, actor="alice", mrn="P-100", kind="spinal_cord_injury", date="2001-05-06",
        today=TODAY,
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as failed:
        update_patient(
            engine=db, actor="bob", mrn="P-100", expected_version=1,
            changes={"birth_date": "2002-01-01"}, today=TODAY,
        )  # fmt: skip
    assert fields(failed) == {
        "birth_date": "2002-01-01 is after the patient's injury of 2001-05-06; "
        "a record cannot be dated before birth"
    }


def test_editing_a_patient_nobody_stored_is_not_found(db: Engine) -> None:
    with pytest.raises(NotFound):
        update_patient(
            engine=db, actor="bob", mrn="NOBODY", expected_version=1, changes={}, today=TODAY
        )


def test_a_stopped_course_keeps_its_reason_and_corrections_and_voids_are_listed(
    db: Engine,
) -> None:
    add_okafor(db)
    course = records.start_course(
        engine=db, actor="alice", mrn="P-100", agent="indomethacin", intent="prophylaxis",
        start_date="2025-03-01", planned_weeks="6", today=TODAY,
    )  # fmt: skip
    records.stop_course(
        engine=db, actor="alice", course_id=course.id, expected_version=1,
        end_date="2025-03-20", reason="upper GI bleed on indomethacin", today=TODAY,
    )  # fmt: skip
    injury = records.add_injury(
        engine=db, actor="alice", mrn="P-100", kind="burn", date="2025-01-02", today=TODAY
    )
    records.void_record(
        engine=db, actor="bob", entity="injury", record_id=injury.id, expected_version=1,
        reason="entered on the wrong patient",
    )  # fmt: skip

    assert course_stop_reasons(engine=db, mrn="P-100") == {
        course.id: "upper GI bleed on indomethacin"
    }
    changes, more = record_changes(engine=db, mrn="P-100")
    assert not more
    void, stop = changes  # newest first
    assert (void.action, void.entity, void.what, void.reason) == (
        "void",
        "injury",
        ("burn", "2025-01-02"),
        "entered on the wrong patient",
    )
    assert (stop.action, stop.entity, stop.reason) == (
        "correct",
        "treatment_course",
        "upper GI bleed on indomethacin",
    )
    assert stop.what == ("indomethacin", "prophylaxis", "2025-03-01")
    assert ("end_date", "", "2025-03-20") in stop.changed


def test_the_patient_page_lists_only_the_latest_changes_and_says_there_are_more(
    db: Engine,
) -> None:
    add_okafor(db)
    for version, sex in enumerate(("male", "female", "unknown"), start=1):
        update_patient(
            engine=db, actor="bob", mrn="P-100", expected_version=version,
            changes={"sex": sex}, today=TODAY,
        )  # fmt: skip
    changes, more = record_changes(engine=db, mrn="P-100", limit=2)
    assert more
    assert [c.changed for c in changes] == [
        (("sex", "female", "unknown"),),
        (("sex", "male", "female"),),
    ]
