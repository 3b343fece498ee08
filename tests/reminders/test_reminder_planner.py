"""Planning: wanted against stored, keyed, idempotent; cancels screening once HO is
found (keeping the row and the reason); closed loop; dry run; teams from CSV."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import write_csv
from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    add_finding,
    add_patient,
    add_procedure,
    any_engine,
    lite,
    patient_id,
    reminders,
)
from tracker.errors import NotFound
from tracker.interchange.csv_import import import_folder
from tracker.protocol import AcknowledgedRule, Protocol, ReminderRules
from tracker.reminders.planner import plan, plan_patient
from tracker.reminders.rules import for_patient
from tracker.services.teams import add_team, list_teams, set_patient_team
from tracker.store.loaders import patient_records

PROTOCOL = Protocol()
INJURED = date(2025, 1, 1)
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def sci_patient(engine: Engine, mrn: str = "A001") -> None:
    add_patient(engine, mrn, injuries=[{"kind": "spinal_cord_injury", "d": INJURED.isoformat()}])


def statuses(engine: Engine, rule: str) -> dict[date, str]:
    return {r["due"]: r["status"] for r in reminders(engine) if r["rule"] == rule}


def test_planning_twice_creates_nothing_the_second_time(any_engine: Engine) -> None:
    sci_patient(any_engine)
    first = plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    assert len(first.created) == 5  # prophylaxis day 14 and screens on days 21, 42, 63, 84
    again = plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    assert (len(again.created), len(again.cancelled), len(again.satisfied), again.now_due) == (
        0,
        0,
        0,
        0,
    )
    assert again.rows_written == 0
    assert len(reminders(any_engine)) == 5
    assert statuses(any_engine, "hip_ultrasound_screen") == {
        date(2025, 1, 22): "due", date(2025, 2, 12): "pending",
        date(2025, 3, 5): "pending", date(2025, 3, 26): "pending",
    }  # fmt: skip


def test_database_refuses_a_second_copy_of_a_natural_key(any_engine: Engine) -> None:
    sci_patient(any_engine)
    plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    row = next(r for r in reminders(any_engine) if r["rule"] == "hip_ultrasound_screen")
    insert = sa.text(
        "INSERT INTO reminder (patient_id, rule, site, side, due, status, attempts, late, version) "
        "VALUES (:p, :r, :site, :side, :d, 'due', 0, false, 1)"
    )
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        conn.execute(insert, {"p": row["patient_id"], "r": row["rule"], "site": None,
                              "side": None, "d": row["due"]})  # fmt: skip
    values = {"p": row["patient_id"], "r": "recurrence_radiograph", "site": "hip", "side": "left",
              "d": date(2025, 5, 1)}  # fmt: skip
    with any_engine.begin() as conn:
        conn.execute(insert, values)
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        conn.execute(insert, values)


def test_both_hips_resected_the_same_day_each_get_their_follow_up(any_engine: Engine) -> None:
    """Two sites share a rule and a due date: the natural key must keep the site, or
    the hip recorded second looks planned already and never gets its reminders."""
    add_patient(any_engine, "A001", procedures=[{"date": "2025-01-10", "side": "right"}])
    plan(engine=any_engine, as_of=date(2025, 1, 12), protocol=PROTOCOL)
    with any_engine.begin() as conn:  # the left hip, operated on the same day, recorded later
        add_procedure(conn, patient_id(any_engine, "A001"), date="2025-01-10", side="left")
    second = plan(engine=any_engine, as_of=date(2025, 1, 13), protocol=PROTOCOL)
    assert sorted(zip(second.created["rule"], second.created["side"], strict=True)) == [
        ("post_resection_prophylaxis", "left"), ("recurrence_radiograph", "left"),
    ]  # fmt: skip
    planned = {(r["rule"], r["site"], r["side"], r["due"]) for r in reminders(any_engine)}
    assert planned == {
        (rule, "hip", side, due)
        for side in ("left", "right")
        for rule, due in (
            ("post_resection_prophylaxis", date(2025, 1, 10)),
            ("recurrence_radiograph", date(2025, 2, 21)),  # day 42; day 91 is past the horizon
        )
    }
    assert plan(engine=any_engine, as_of=date(2025, 1, 13), protocol=PROTOCOL).rows_written == 0


def test_two_planners_at_once_still_store_each_reminder_once(any_engine: Engine) -> None:
    for n in range(20):
        sci_patient(any_engine, f"P{n:02d}")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(reminders(any_engine)) == 20 * 5


def test_screens_are_cancelled_not_deleted_once_ho_is_found(any_engine: Engine) -> None:
    sci_patient(any_engine)
    plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    with any_engine.begin() as conn:
        pid = conn.execute(sa.text("SELECT id FROM patient")).scalar_one()
        add_finding(conn, pid, date="2025-02-20", modality="radiograph", site="knee", ho="present")
    result = plan(engine=any_engine, as_of=date(2025, 2, 25), protocol=PROTOCOL)
    screens = [r for r in reminders(any_engine) if r["rule"] == "hip_ultrasound_screen"]
    assert len(screens) == 4
    cancelled = {r["due"]: r["cancel_reason"] for r in screens if r["status"] == "cancelled"}
    assert set(cancelled) == {
        date(2025, 1, 22),
        date(2025, 2, 12),
        date(2025, 3, 5),
        date(2025, 3, 26),
    }
    assert set(cancelled.values()) == {"HO found on 2025-02-20: screening stops"}
    assert len(result.cancelled) == 4 and not len(
        result.created.query("rule == 'hip_ultrasound_screen'")
    )


def test_logging_the_matching_record_marks_the_reminder_satisfied(any_engine: Engine) -> None:
    sci_patient(any_engine)
    plan(engine=any_engine, as_of=date(2025, 1, 20), protocol=PROTOCOL)
    with any_engine.begin() as conn:
        pid = conn.execute(sa.text("SELECT id FROM patient")).scalar_one()
        add_finding(conn, pid, date="2025-01-24", modality="ultrasound", side="left", ho="absent")
    result = plan(engine=any_engine, as_of=date(2025, 1, 25), protocol=PROTOCOL)
    assert list(result.satisfied["due"]) == [date(2025, 1, 22)]
    assert statuses(any_engine, "hip_ultrasound_screen")[date(2025, 1, 22)] == "satisfied"
    assert statuses(any_engine, "hip_ultrasound_screen")[date(2025, 2, 12)] == "pending"


def test_pending_reminder_becomes_due_on_its_date(lite: Engine) -> None:
    sci_patient(lite)
    plan(engine=lite, as_of=date(2025, 1, 10), protocol=PROTOCOL)
    assert statuses(lite, "consider_prophylaxis") == {date(2025, 1, 15): "pending"}
    result = plan(engine=lite, as_of=date(2025, 1, 15), protocol=PROTOCOL)
    assert result.now_due == 1
    assert statuses(lite, "consider_prophylaxis") == {date(2025, 1, 15): "due"}


def test_dry_run_shows_what_a_protocol_change_would_create_and_cancel(lite: Engine) -> None:
    sci_patient(lite)
    add_patient(lite, "C001", courses=[{"agent": "etidronate", "intent": "prophylaxis",
                                        "start": "2025-01-05", "end": "2025-02-20"}])  # fmt: skip
    plan(engine=lite, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    before = reminders(lite)
    changed = replace(
        PROTOCOL,
        reminders=replace(
            ReminderRules(),
            course_review=AcknowledgedRule(enabled=False),
            horizon_days=90,
        ),
    )
    preview = plan(engine=lite, as_of=date(2025, 2, 1), protocol=changed, dry_run=True)
    assert reminders(lite) == before and preview.rows_written == 0
    assert list(preview.cancelled["rule"]) == ["course_review"]
    assert list(preview.cancelled["reason"]) == ["the protocol switched course_review off"]
    assert list(preview.created["due"]) == [
        date(2025, 4, 16)
    ]  # day 105 screen, in the longer horizon
    applied = plan(engine=lite, as_of=date(2025, 2, 1), protocol=changed)
    assert len(applied.created) == len(preview.created) and len(applied.cancelled) == 1


def test_cohort_planning_agrees_with_planning_each_patient_alone(lite: Engine) -> None:
    import_folder(lite, DEMO)
    as_of = date(2026, 11, 1)
    plan(engine=lite, as_of=as_of, protocol=PROTOCOL)
    with lite.connect() as conn:
        mrns = list(conn.execute(sa.text("SELECT mrn FROM patient ORDER BY mrn")).scalars())
    one_by_one = set()
    with Session(lite) as session:
        for mrn in mrns:
            for w in for_patient(patient_records(session, mrn), as_of, PROTOCOL):
                one_by_one.add((mrn, w.rule, w.site, w.side, w.due))
    with lite.connect() as conn:
        stored = {
            (m, r, s, d, date.fromisoformat(due) if isinstance(due, str) else due)
            for m, r, s, d, due in conn.execute(
                sa.text(
                    "SELECT p.mrn, r.rule, r.site, r.side, r.due FROM reminder r "
                    "JOIN patient p ON p.id = r.patient_id"
                )
            )  # fmt: skip
        }
    assert stored <= one_by_one  # the cohort stores what each patient wants...
    # ...except what is already satisfied when first planned, which is never stored
    assert len(stored) > 40
    assert {rule for _, rule, *_ in stored} >= {
        "hip_ultrasound_screen", "monitoring_radiograph", "maturity_bone_scan", "course_review",
        "readiness_review", "recurrence_radiograph",
    }  # fmt: skip


def test_planning_each_patient_alone_stores_what_the_cohort_plan_stores(lite: Engine) -> None:
    """`plan_patient` is the cohort plan restricted to one patient: the same rows with
    the same statuses (lapsed ones included), and a second pass changes nothing."""
    import_folder(lite, DEMO)
    as_of = date(2026, 11, 1)
    plan(engine=lite, as_of=as_of, protocol=PROTOCOL)

    def snapshot() -> set[tuple[object, ...]]:
        with lite.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT p.mrn, r.rule, r.site, r.side, r.due, r.status, r.detail "
                    "FROM reminder r JOIN patient p ON p.id = r.patient_id"
                )
            ).all()
        return {tuple(row) for row in rows}

    cohort = snapshot()
    assert {row[5] for row in cohort} >= {"lapsed", "due", "pending"}
    with lite.begin() as conn:
        conn.execute(sa.text("DELETE FROM reminder"))
        mrns = list(conn.execute(sa.text("SELECT mrn FROM patient ORDER BY mrn")).scalars())
    for mrn in mrns:
        plan_patient(engine=lite, mrn=mrn, as_of=as_of, protocol=PROTOCOL)
    assert snapshot() == cohort
    again = [plan_patient(engine=lite, mrn=m, as_of=as_of, protocol=PROTOCOL) for m in mrns]
    assert sum(result.rows_written for result in again) == 0
    with pytest.raises(NotFound, match="No patient with mrn 'NOBODY'"):
        plan_patient(engine=lite, mrn="NOBODY", as_of=as_of, protocol=PROTOCOL)


def test_planning_one_patient_leaves_the_other_patients_rows_alone(lite: Engine) -> None:
    sci_patient(lite, "A001")
    sci_patient(lite, "B001")
    plan_patient(engine=lite, mrn="A001", as_of=date(2025, 2, 1), protocol=PROTOCOL)
    with lite.connect() as conn:
        owners = set(
            conn.execute(
                sa.text("SELECT p.mrn FROM reminder r JOIN patient p ON p.id = r.patient_id")
            ).scalars()
        )
    assert owners == {"A001"}
    assert (
        plan(engine=lite, as_of=date(2025, 2, 1), protocol=PROTOCOL, mrn="B001")
        .created["mrn"]
        .tolist()
        == ["B001"] * 5
    )


def test_csv_import_adds_teams_without_an_address_and_the_cli_services_set_them(
    lite: Engine, tmp_path: Path
) -> None:
    write_csv(
        tmp_path / "csv",
        "patients.csv",
        [{"mrn": "T1", "team": "ward7"}, {"mrn": "T2", "team": "ward7"}, {"mrn": "T3", "team": ""}],
    )
    import_folder(lite, tmp_path / "csv")
    teams = {t.name: t for t in list_teams(engine=lite)}
    assert set(teams) == {"ward7"} and teams["ward7"].email is None and teams["ward7"].patients == 2
    assert add_team(engine=lite, name="ward7", email="ward7@clinic.example.org") is False
    assert add_team(engine=lite, name="ward9", email="ward9@clinic.example.org") is True
    assert set_patient_team(engine=lite, mrn="T3", team_name="ward9") is None
    with pytest.raises(NotFound, match="ho-tracker teams add ward10 --email ADDRESS"):
        set_patient_team(engine=lite, mrn="T3", team_name="ward10")
    with pytest.raises(NotFound, match="No patient with mrn 'T9'"):
        set_patient_team(engine=lite, mrn="T9", team_name="ward9")
    teams = {t.name: t for t in list_teams(engine=lite)}
    assert (teams["ward7"].email, teams["ward9"].patients) == ("ward7@clinic.example.org", 1)
    # importing the same rows again adds nothing, teams included
    write_csv(tmp_path / "csv", "patients.csv", [{"mrn": "T1", "team": "ward7"}])
    import_folder(lite, tmp_path / "csv")
    assert len(list_teams(engine=lite)) == 2


def test_a_team_cannot_be_removed_while_patients_are_in_it(any_engine: Engine) -> None:
    add_patient(any_engine, "A001", team="ward7")
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM team WHERE name = 'ward7'"))
    with pytest.raises(sa.exc.IntegrityError), any_engine.begin() as conn:
        conn.execute(sa.text("UPDATE patient SET team = 'nowhere'"))


def test_the_delivery_recheck_keeps_every_reminder_the_plan_just_made(lite: Engine) -> None:
    """Before sending, delivery asks the rules again (`recheck_many`) over the patients'
    records: each open reminder the plan has just made still applies, the bedside ones
    (an examination's signs, a DVT query) among them, rather than being cancelled."""
    from tracker.reminders.delivery import recheck_many

    import_folder(lite, DEMO)
    as_of = date(2026, 11, 1)
    plan(engine=lite, as_of=as_of, protocol=PROTOCOL)
    with lite.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.mrn, r.rule, r.site, r.side, r.due FROM reminder r "
                "JOIN patient p ON p.id = r.patient_id WHERE r.status IN ('pending', 'due')"
            )
        ).all()
    keys = [
        (m, r, s, d, date.fromisoformat(due) if isinstance(due, str) else due)
        for m, r, s, d, due in rows
    ]
    assert {"suspected_ho_imaging", "dvt_query_hip_ultrasound"} <= {k[1] for k in keys}
    with Session(lite) as session:
        records = [patient_records(session, mrn) for mrn in sorted({k[0] for k in keys})]
    answers = recheck_many(records, keys, as_of=as_of, protocol=PROTOCOL)
    dropped = [(k, a) for k, a in zip(keys, answers, strict=True) if a.status.value != "due"]
    assert dropped == []
