"""Model v2 in the planner (model-spec section 9): reminders long past when first planned
are lapsed (kept, never delivered, not on the worklist); no resection-timing reminders
for genetic HO; the unaffected side recorded for comparison plans nothing; and a
reminder closed by a record that is voided comes back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    FakeClock,
    SmtpServer,
    add_finding,
    add_patient,
    any_engine,
    give_team_address,
    lite,
    patient_id,
    reminders,
    smtp,
)
from tracker.errors import TrackerError
from tracker.protocol import Protocol
from tracker.reminders.delivery import Deliverer
from tracker.reminders.planner import plan
from tracker.services.worklist import acknowledge, patient_reminders, worklist
from tracker.vocab import InjuryKind

PROTOCOL = Protocol()
AS_OF = date(2026, 3, 2)  # GMT: the 08:00 send hour in London is 08:00 UTC


def statuses(engine: Engine, rule: str, mrn: str | None = None) -> dict[date, str]:
    rows = reminders(engine)
    if mrn is not None:
        rows = [r for r in rows if r["patient_id"] == patient_id(engine, mrn)]
    return {r["due"]: r["status"] for r in rows if r["rule"] == rule}


def course_ended(engine: Engine, mrn: str, end: date) -> None:
    """A prophylaxis course that ended on `end`: one course_review due that day."""
    start = (end - timedelta(days=20)).isoformat()
    add_patient(engine, mrn, courses=[{"agent": "etidronate", "intent": "prophylaxis",
                                       "start": start, "end": end.isoformat()}])  # fmt: skip


def deliverer(engine: Engine, server: SmtpServer, day: date) -> Deliverer:
    clock = FakeClock(datetime(day.year, day.month, day.day, 9, tzinfo=UTC))
    return Deliverer(
        engine=engine, protocol=PROTOCOL, settings=server.settings(), clock=clock, worker="t"
    )


def set_void(engine: Engine, table: str, record_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE {table} SET voided_at = :at, voided_by = 'alice', "  # noqa: S608
                "voided_reason = 'wrong patient' WHERE id = :id"
            ),
            {"at": datetime.now(UTC), "id": record_id},
        )


def last_id(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar_one())  # noqa: S608


# --- lapsed ----------------------------------------------------------------------------------


def test_history_imported_years_late_is_lapsed_not_delivered(
    any_engine: Engine, smtp: SmtpServer
) -> None:
    add_patient(
        any_engine, "OLD",
        injuries=[{"kind": "spinal_cord_injury", "d": "2022-01-10"}],
        courses=[{"agent": "etidronate", "intent": "prophylaxis", "start": "2022-02-01",
                  "end": "2022-05-01"}],
    )  # fmt: skip
    give_team_address(any_engine)
    first = plan(engine=any_engine, as_of=AS_OF, protocol=PROTOCOL)
    # day-14 prophylaxis is satisfied by the course, so never stored; the rest is history
    stored = reminders(any_engine)
    assert {(r["rule"], r["status"]) for r in stored} == {
        ("hip_ultrasound_screen", "lapsed"), ("course_review", "lapsed"),
    }  # fmt: skip
    assert len(stored) == 9 == len(first.created) == len(first.lapsed)
    assert all(r["closed_at"] is not None and r["sent_at"] is None for r in stored)

    # not on the worklist, not delivered, not escalated, not in the digest
    assert worklist(engine=any_engine, today=AS_OF).rows == []
    mail = deliverer(any_engine, smtp, AS_OF)
    report = mail.deliver()
    report.add(mail.escalate())
    assert (report.sent, report.escalated, report.closed, report.waiting) == (0, 0, 0, 0)
    assert mail.digest() == 0
    assert smtp.mailbox.received == []
    # ...but kept in the patient's reminder history, with its status
    history = patient_reminders(engine=any_engine, mrn="OLD")
    assert len(history) == 9 and {r["status"] for r in history} == {"lapsed"}
    assert history[0]["due"] == date(2022, 1, 31)  # day 21

    again = plan(engine=any_engine, as_of=AS_OF, protocol=PROTOCOL)  # the natural key holds
    assert again.rows_written == 0 and len(reminders(any_engine)) == 9
    later = plan(engine=any_engine, as_of=AS_OF + timedelta(days=40), protocol=PROTOCOL)
    assert later.rows_written == 0
    with pytest.raises(TrackerError, match="is lapsed"):
        acknowledge(engine=any_engine, reminder_id=history[0]["id"], by="nurse")


def test_recent_overdue_reminder_is_still_delivered(lite: Engine, smtp: SmtpServer) -> None:
    for late in (29, 30, 31):
        course_ended(lite, f"L{late}", AS_OF - timedelta(days=late))
    give_team_address(lite)
    result = plan(engine=lite, as_of=AS_OF, protocol=PROTOCOL)
    by_patient = {
        mrn: statuses(lite, "course_review", mrn)[AS_OF - timedelta(days=late)]
        for mrn, late in (("L29", 29), ("L30", 30), ("L31", 31))
    }
    # lapsed only when more than 30 days past on the day it is first planned
    assert by_patient == {"L29": "due", "L30": "due", "L31": "lapsed"}
    assert list(result.lapsed["mrn"]) == ["L31"]
    report = deliverer(lite, smtp, AS_OF).deliver()
    assert (report.sent, report.late) == (2, 2)
    subjects = sorted(m.subject for m in smtp.mailbox.received)
    assert len(subjects) == 2 and all("L29" in s or "L30" in s for s in subjects)


def test_a_reminder_planned_on_time_never_lapses_however_overdue(lite: Engine) -> None:
    course_ended(lite, "C1", AS_OF)
    plan(engine=lite, as_of=AS_OF - timedelta(days=5), protocol=PROTOCOL)  # pending
    plan(engine=lite, as_of=AS_OF + timedelta(days=120), protocol=PROTOCOL)
    assert statuses(lite, "course_review") == {AS_OF: "due"}  # still on the worklist


def test_how_long_past_a_reminder_may_be_is_the_clinics_choice(lite: Engine) -> None:
    course_ended(lite, "L31", AS_OF - timedelta(days=31))
    course_ended(lite, "L90", AS_OF - timedelta(days=91))
    patient = replace(PROTOCOL.reminders, lapse_after_days=90)
    plan(engine=lite, as_of=AS_OF, protocol=replace(PROTOCOL, reminders=patient))
    assert statuses(lite, "course_review", "L31") == {AS_OF - timedelta(days=31): "due"}
    assert statuses(lite, "course_review", "L90") == {AS_OF - timedelta(days=91): "lapsed"}


def test_a_record_that_arrives_late_turns_a_lapsed_reminder_satisfied(lite: Engine) -> None:
    add_patient(lite, "S1", injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}])
    plan(engine=lite, as_of=date(2025, 6, 1), protocol=PROTOCOL)
    screens = statuses(lite, "hip_ultrasound_screen")
    assert screens[date(2025, 1, 22)] == "lapsed" and screens[date(2025, 6, 18)] == "pending"
    # the ultrasound report of day 23 is filed months late
    with lite.begin() as conn:
        add_finding(conn, patient_id(lite, "S1"), date="2025-01-24", modality="ultrasound",
                    ho="absent")  # fmt: skip
    result = plan(engine=lite, as_of=date(2025, 6, 2), protocol=PROTOCOL)
    assert list(result.satisfied["due"]) == [date(2025, 1, 22)]
    assert statuses(lite, "hip_ultrasound_screen")[date(2025, 1, 22)] == "satisfied"
    assert statuses(lite, "hip_ultrasound_screen")[date(2025, 2, 12)] == "lapsed"

    # voided again (wrong patient): the screen was missed after all, and lapsed as before
    set_void(lite, "imaging_study", last_id(lite, "imaging_study"))
    reopened = plan(engine=lite, as_of=date(2025, 6, 3), protocol=PROTOCOL)
    assert list(reopened.reopened["due"]) == [date(2025, 1, 22)]
    assert statuses(lite, "hip_ultrasound_screen")[date(2025, 1, 22)] == "lapsed"


def test_lapsed_screens_stay_in_the_history_when_ho_is_found(lite: Engine) -> None:
    add_patient(lite, "S1", injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}])
    plan(engine=lite, as_of=date(2025, 6, 1), protocol=PROTOCOL)
    with lite.begin() as conn:
        add_finding(conn, patient_id(lite, "S1"), date="2025-06-05", modality="radiograph",
                    calcification="peripheral")  # fmt: skip
    result = plan(engine=lite, as_of=date(2025, 6, 6), protocol=PROTOCOL)
    screens = statuses(lite, "hip_ultrasound_screen")
    # the open ones stop; those long past when first planned stay in the history
    opened = [date(2025, 5, 7), date(2025, 5, 28), date(2025, 6, 18)]  # days 126, 147, 168
    assert {d: screens.pop(d) for d in opened} == dict.fromkeys(opened, "cancelled")
    assert set(screens.values()) == {"lapsed"} and len(screens) == 5
    assert list(result.cancelled["due"]) == opened


def test_a_first_plan_of_a_cohort_years_old_lapses_in_bulk(any_engine: Engine) -> None:
    """Set-based: the statements a first plan runs do not grow with the cohort."""
    counted: list[str] = []

    def count(conn: object, cursor: object, statement: str, *_: object) -> None:
        counted.append(statement)

    def first_plan(patients: int, start: int) -> tuple[int, int]:
        for n in range(start, start + patients):
            injuries = [{"kind": "traumatic_brain_injury", "d": "2021-03-01"}]
            add_patient(any_engine, f"H{n:05d}", injuries=injuries)
        with any_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM reminder"))
        counted.clear()
        sa.event.listen(any_engine, "before_cursor_execute", count)
        try:
            result = plan(engine=any_engine, as_of=AS_OF, protocol=PROTOCOL)
        finally:
            sa.event.remove(any_engine, "before_cursor_execute", count)
        return len(result.lapsed), len(counted)

    few, statements = first_plan(20, 0)
    many, more_statements = first_plan(380, 20)
    assert (few, many) == (20 * 9, 400 * 9)  # prophylaxis and 8 screens each, all lapsed
    assert more_statements == statements
    assert {r["status"] for r in reminders(any_engine)} == {"lapsed"}


# --- genetic HO, the unaffected side ---------------------------------------------------------


def mineralising_hip(engine: Engine, mrn: str, kind: str) -> None:
    add_patient(
        engine, mrn, injuries=[{"kind": kind, "d": "2025-01-01"}],
        findings=[{"date": "2025-03-10", "modality": "radiograph", "calcification": "peripheral"}],
    )  # fmt: skip


def test_fop_patient_gets_no_maturity_bone_scan_and_a_late_fop_diagnosis_cancels_it(
    any_engine: Engine,
) -> None:
    mineralising_hip(any_engine, "F1", InjuryKind.fop)
    mineralising_hip(any_engine, "T1", InjuryKind.musculoskeletal_trauma)
    plan(engine=any_engine, as_of=date(2025, 5, 1), protocol=PROTOCOL)
    assert statuses(any_engine, "maturity_bone_scan", "F1") == {}
    assert statuses(any_engine, "maturity_bone_scan", "T1") == {date(2025, 6, 8): "pending"}
    assert statuses(any_engine, "monitoring_radiograph", "F1") == {date(2025, 4, 21): "due"}

    # genetic HO diagnosed later in the trauma patient: no resection timing any more
    with any_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO injury (patient_id, kind, date) VALUES (:p, 'fop', '2025-04-20')"),
            {"p": patient_id(any_engine, "T1")},
        )
    result = plan(engine=any_engine, as_of=date(2025, 5, 2), protocol=PROTOCOL)
    assert list(result.cancelled["rule"]) == ["maturity_bone_scan"]
    [row] = [r for r in reminders(any_engine) if r["rule"] == "maturity_bone_scan"]
    assert row["status"] == "cancelled"
    assert row["cancel_reason"] == (
        "genetic HO (FOP) is never resected: no resection-timing reminders"
    )


def test_contralateral_normal_ratio_makes_no_site_reminders_and_screening_goes_on(
    any_engine: Engine,
) -> None:
    add_patient(
        any_engine, "C1", injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}],
        findings=[{"date": "2025-02-10", "modality": "radiograph", "side": "left",
                   "ho": "absent"}],
        bone_scans=[{"date": "2025-02-10", "side": "left", "ratio": 1.05}],
    )  # fmt: skip
    plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    plan(engine=any_engine, as_of=date(2025, 2, 15), protocol=PROTOCOL)
    rows = reminders(any_engine)
    assert [r for r in rows if r["site"] is not None] == []
    assert statuses(any_engine, "hip_ultrasound_screen") == {
        date(2025, 1, 22): "due", date(2025, 2, 12): "due", date(2025, 3, 5): "pending",
        date(2025, 3, 26): "pending", date(2025, 4, 16): "pending",
    }  # fmt: skip

    # a ratio above normal uptake at the other hip is HO: screening stops, the hip is watched
    with any_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO bone_scan_measurement (patient_id, date, site, side, phase, ratio) "
                "VALUES (:p, '2025-02-20', 'hip', 'right', 'delayed', 1.6)"
            ),
            {"p": patient_id(any_engine, "C1")},
        )
    plan(engine=any_engine, as_of=date(2025, 2, 21), protocol=PROTOCOL)
    screens = statuses(any_engine, "hip_ultrasound_screen")
    assert {d: s for d, s in screens.items() if d > date(2025, 2, 21)} == {
        date(2025, 3, 5): "cancelled", date(2025, 3, 26): "cancelled",
        date(2025, 4, 16): "cancelled",
    }  # fmt: skip
    monitored = {(r["side"], r["due"]) for r in reminders(any_engine) if r["site"]}
    assert monitored == {("right", date(2025, 4, 3))}


# --- a voided record reopens what it closed ------------------------------------------------


def early_hip(engine: Engine) -> None:
    """An early right hip found on ultrasound: a monitoring radiograph due 2025-04-12."""
    add_patient(
        engine, "E1", injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}],
        findings=[{"date": "2025-03-01", "modality": "ultrasound", "ho": "present"}],
    )  # fmt: skip


def test_voiding_the_radiograph_reopens_the_reminder_it_closed(any_engine: Engine) -> None:
    early_hip(any_engine)
    plan(engine=any_engine, as_of=date(2025, 4, 14), protocol=PROTOCOL)
    assert statuses(any_engine, "monitoring_radiograph") == {date(2025, 4, 12): "due"}
    with any_engine.begin() as conn:
        add_finding(conn, patient_id(any_engine, "E1"), date="2025-04-15", modality="radiograph")
    plan(engine=any_engine, as_of=date(2025, 4, 15), protocol=PROTOCOL)
    assert statuses(any_engine, "monitoring_radiograph") == {
        date(2025, 4, 12): "satisfied", date(2025, 5, 27): "pending",
    }  # fmt: skip

    set_void(any_engine, "imaging_study", last_id(any_engine, "imaging_study"))
    result = plan(engine=any_engine, as_of=date(2025, 4, 16), protocol=PROTOCOL)
    assert list(result.reopened["due"]) == [date(2025, 4, 12)]
    assert statuses(any_engine, "monitoring_radiograph") == {
        date(2025, 4, 12): "due", date(2025, 5, 27): "cancelled",
    }  # fmt: skip
    [row] = [r for r in reminders(any_engine) if r["due"] == date(2025, 4, 12)]
    assert row["closed_at"] is None and row["cancel_reason"] is None
    assert plan(engine=any_engine, as_of=date(2025, 4, 16), protocol=PROTOCOL).rows_written == 0


def test_voiding_the_ho_finding_that_stopped_screening_brings_the_screens_back(
    any_engine: Engine,
) -> None:
    add_patient(any_engine, "S1", injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}])
    plan(engine=any_engine, as_of=date(2025, 2, 1), protocol=PROTOCOL)
    with any_engine.begin() as conn:
        add_finding(conn, patient_id(any_engine, "S1"), date="2025-02-05", modality="ultrasound",
                    site="knee", ho="present")  # fmt: skip
    plan(engine=any_engine, as_of=date(2025, 2, 6), protocol=PROTOCOL)
    assert set(statuses(any_engine, "hip_ultrasound_screen").values()) == {"cancelled"}
    set_void(any_engine, "site_finding", last_id(any_engine, "site_finding"))
    plan(engine=any_engine, as_of=date(2025, 2, 7), protocol=PROTOCOL)
    assert statuses(any_engine, "hip_ultrasound_screen") == {
        date(2025, 1, 22): "due", date(2025, 2, 12): "pending",
        date(2025, 3, 5): "pending", date(2025, 3, 26): "pending",
    }  # fmt: skip
