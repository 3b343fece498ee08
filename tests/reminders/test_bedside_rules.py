"""The bedside reminder rules of model-spec v2, section 9: suspected_ho_imaging (signs
or a loss of range at a joint) and dvt_query_hip_ultrasound (HO mimics deep-vein
thrombosis and raises D-dimer; pictorial review, key points).

The rules' names are not yet in the reminder rule vocabulary (`ReminderRule`, which is
the reminder table's CHECK constraint: adding them is a migration), so these tests ask
the rules through `rules.bedside_for_patient` and `rules.bedside_satisfied`, which give
what `for_patient` and `satisfied` give once the rules are active."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    add_patient,
    any_engine,
    patient_id,
)
from tests.staging.builders import Timeline, day
from tracker.protocol import Protocol, ReminderRules, SuspectedHoImaging
from tracker.reminders import planner, rules
from tracker.reminders.rules import WantedReminder
from tracker.staging import (
    Exam,
    Finding,
    Injury,
    Lab,
    PatientRecords,
    Procedure,
    RangeOfMotion,
    assess_patient,
)
from tracker.store.loaders import TABLES, read_table

DEFAULTS = Protocol()
SUSPECTED, DVT = "suspected_ho_imaging", "dvt_query_hip_ultrasound"


def exam(on: str, site: str = "hip", side: str = "right", **signs: str) -> Exam:
    return Exam(day(on), site, side, **signs)  # type: ignore[arg-type]


def arc(on: str, degrees: float, movement: str = "flexion", site: str = "hip") -> RangeOfMotion:
    return RangeOfMotion(day(on), site, "right", movement, degrees)


def records(
    timeline: Timeline, exams: tuple[Exam, ...] = (), motion: tuple[RangeOfMotion, ...] = ()
) -> PatientRecords:
    return replace(timeline.records(), exams=exams, range_of_motion=motion)


def wanted(
    story: PatientRecords, as_of: str, rule: str, protocol: Protocol = DEFAULTS
) -> list[WantedReminder]:
    return [w for w in rules.bedside_for_patient(story, day(as_of), protocol) if w.rule == rule]


def satisfied(story: PatientRecords, as_of: str, reminder: WantedReminder) -> bool:
    return rules.bedside_satisfied(story, day(as_of), DEFAULTS, reminder)


def sci(on: str = "2025-01-01") -> Timeline:
    return Timeline().injury("spinal_cord_injury", on)


# --- suspected_ho_imaging -----------------------------------------------------------------


def test_swelling_and_warmth_in_sci_patient_asks_for_imaging_within_two_days() -> None:
    story = records(sci(), (exam("2025-02-10", swelling="yes", warmth="yes", erythema="no"),))
    [reminder] = wanted(story, "2025-02-10", SUSPECTED)
    assert (reminder.site, reminder.side, reminder.due) == ("hip", "right", date(2025, 2, 12))
    assert reminder.detail == "swelling, warmth at the bedside on 10 Feb 2025: image the right hip"


def test_erythema_alone_is_a_sign() -> None:
    story = records(sci(), (exam("2025-02-10", "knee", "left", erythema="yes"),))
    [reminder] = wanted(story, "2025-02-10", SUSPECTED)
    assert (reminder.site, reminder.side) == ("knee", "left")


def test_an_examination_with_no_sign_asks_for_nothing() -> None:
    story = records(sci(), (exam("2025-02-10", swelling="no", warmth="no"), exam("2025-02-11")))
    assert wanted(story, "2025-02-11", SUSPECTED) == []


def test_fop_patient_gets_no_suspected_ho_imaging() -> None:
    timeline = Timeline().injury("fop", "2025-01-01")
    story = records(timeline, (exam("2025-02-10", swelling="yes"),), (
        arc("2025-02-01", 100), arc("2025-02-10", 60),
    ))  # fmt: skip
    assert wanted(story, "2025-02-10", SUSPECTED) == []


def test_an_injury_more_than_a_year_before_the_examination_asks_for_nothing() -> None:
    story = records(sci("2024-01-01"), (exam("2025-01-01", swelling="yes"),))
    assert wanted(story, "2025-01-01", SUSPECTED) == []
    on_the_last_day = records(sci("2024-01-02"), (exam("2025-01-01", swelling="yes"),))
    assert len(wanted(on_the_last_day, "2025-01-01", SUSPECTED)) == 1  # 365 days
    injured_later = records(sci("2025-01-05"), (exam("2025-01-01", swelling="yes"),))
    assert wanted(injured_later, "2025-01-10", SUSPECTED) == []


def test_site_already_mineralising_gets_no_suspected_ho_imaging() -> None:
    timeline = sci().radiograph("2025-02-01", calcification="peripheral")
    story = records(timeline, (exam("2025-02-10", swelling="yes"),))
    assert wanted(story, "2025-02-10", SUSPECTED) == []
    # an early site (a soft-tissue finding on ultrasound) still asks for imaging
    early = records(sci().ultrasound("2025-02-01"), (exam("2025-02-10", swelling="yes"),))
    assert len(wanted(early, "2025-02-10", SUSPECTED)) == 1


def test_after_a_resection_the_old_mature_lesion_does_not_stop_the_rule() -> None:
    timeline = sci().radiograph("2025-01-20", cortex="well_defined").resection("2025-02-01")
    story = records(timeline, (exam("2025-03-01", swelling="yes"),))
    [reminder] = wanted(story, "2025-03-01", SUSPECTED)
    assert reminder.due == date(2025, 3, 3)


def test_imaging_of_the_site_after_the_exam_satisfies_it() -> None:
    story = records(sci(), (exam("2025-02-10", swelling="yes"),))
    [reminder] = wanted(story, "2025-02-10", SUSPECTED)
    assert not satisfied(story, "2025-02-20", reminder)
    for imaged in (
        sci().ultrasound("2025-02-11", ho="absent"),
        sci().radiograph("2025-02-10", ho="absent"),  # the day of the examination counts
        sci().delayed_scan("2025-02-14", 1.1),
    ):
        assert satisfied(records(imaged, story.exams), "2025-02-20", reminder), imaged.findings
    elsewhere = sci().ultrasound("2025-02-11", "hip", "left").radiograph("2025-02-09")
    assert not satisfied(records(elsewhere, story.exams), "2025-02-20", reminder)


def test_a_loss_of_range_asks_for_imaging_two_days_after_the_measurement() -> None:
    story = records(sci(), motion=(arc("2025-02-01", 100), arc("2025-03-01", 70)))
    [reminder] = wanted(story, "2025-03-01", SUSPECTED)
    assert (reminder.site, reminder.side, reminder.due) == ("hip", "right", date(2025, 3, 3))
    assert reminder.detail == (
        "flexion 100\u00b0 \u2192 70\u00b0 (\u221230%) on 1 Mar 2025: image the right hip"
    )


def test_twelve_percent_loss_of_range_asks_for_nothing() -> None:
    story = records(sci(), motion=(arc("2025-02-01", 100), arc("2025-03-01", 88)))
    assert wanted(story, "2025-03-01", SUSPECTED) == []
    at_twenty = records(sci(), motion=(arc("2025-02-01", 110), arc("2025-03-01", 88)))
    assert len(wanted(at_twenty, "2025-03-01", SUSPECTED)) == 1


def test_a_loss_before_a_resection_asks_for_nothing_after_it() -> None:
    timeline = sci().resection("2025-02-15")
    story = records(timeline, motion=(arc("2025-02-01", 120), arc("2025-03-01", 80)))
    assert wanted(story, "2025-03-01", SUSPECTED) == []
    # but the same fall before the resection did ask, and still shows in the plan
    before = records(timeline, motion=(arc("2025-02-01", 120), arc("2025-02-10", 80)))
    assert [w.due for w in wanted(before, "2025-03-01", SUSPECTED)] == [date(2025, 2, 12)]


def test_a_loss_of_range_needs_no_site_of_its_own() -> None:
    # a knee that loses range without ever being imaged is exactly what to image
    story = records(
        sci(), motion=(arc("2025-02-01", 130, site="knee"), arc("2025-02-08", 90, site="knee"))
    )
    [reminder] = wanted(story, "2025-02-08", SUSPECTED)
    assert (reminder.site, reminder.due) == ("knee", date(2025, 2, 10))


def test_the_clinic_sets_the_window_and_the_delay() -> None:
    protocol = replace(
        DEFAULTS,
        reminders=replace(
            ReminderRules(),
            suspected_ho_imaging=SuspectedHoImaging(injury_window_days=30, after_days=0),
        ),
    )
    story = records(sci(), (exam("2025-01-20", swelling="yes"), exam("2025-03-01", warmth="yes")))
    assert [w.due for w in wanted(story, "2025-03-01", SUSPECTED, protocol)] == [date(2025, 1, 20)]
    off = replace(
        protocol,
        reminders=replace(ReminderRules(), suspected_ho_imaging=SuspectedHoImaging(enabled=False)),
    )
    assert wanted(story, "2025-03-01", SUSPECTED, off) == []


# --- dvt_query_hip_ultrasound -------------------------------------------------------------


def test_doppler_for_dvt_query_asks_for_hip_ultrasound() -> None:
    timeline = sci().ultrasound("2025-02-10", "thigh", "left", ho="absent", indication="dvt_query")
    [reminder] = wanted(records(timeline), "2025-02-10", DVT)
    assert (reminder.site, reminder.side, reminder.due) == (None, None, date(2025, 2, 10))
    assert reminder.detail == (
        "ultrasound for a DVT query on 10 Feb 2025: image both hips with ultrasound (HO mimics DVT)"
    )


def test_raised_d_dimer_in_tbi_patient_asks_for_hip_ultrasound() -> None:
    timeline = (
        Timeline()
        .injury("traumatic_brain_injury", "2025-01-01")
        .alp("2025-02-03", 1.8, ref_high=0.5, analyte="d_dimer", unit="mg/L FEU")
    )
    [reminder] = wanted(records(timeline), "2025-02-03", DVT)
    assert reminder.due == date(2025, 2, 3)
    assert reminder.detail.startswith("D-dimer 1.8 mg/L FEU above 0.5 on 3 Feb 2025")


def test_d_dimer_within_range_or_without_one_asks_for_nothing() -> None:
    timeline = (
        sci()
        .alp("2025-02-03", 0.4, ref_high=0.5, analyte="d_dimer", unit="mg/L FEU")
        .alp("2025-02-04", 9.0, ref_high=None, analyte="d_dimer", unit="mg/L FEU")
    )
    assert wanted(records(timeline), "2025-02-04", DVT) == []


def test_other_dopplers_and_other_injuries_ask_for_nothing() -> None:
    follow_up = sci().ultrasound("2025-02-10", "thigh", "left", ho="absent", indication="follow_up")
    assert wanted(records(follow_up), "2025-02-10", DVT) == []
    burn = Timeline().injury("burn", "2025-01-01")
    burn = burn.ultrasound("2025-02-10", "thigh", "left", ho="absent", indication="dvt_query")
    assert wanted(records(burn), "2025-02-10", DVT) == []


def test_a_patient_with_hip_ho_already_needs_no_dvt_query_ultrasound() -> None:
    timeline = (
        sci()
        .ultrasound("2025-02-01", "hip", "left")
        .ultrasound("2025-02-10", "thigh", "right", ho="absent", indication="dvt_query")
    )
    assert wanted(records(timeline), "2025-02-10", DVT) == []


def test_same_study_counts_for_dvt_query() -> None:
    # the Doppler imaged the hip as well: the query is answered by the study itself
    timeline = (
        sci()
        .ultrasound("2025-02-10", "thigh", "left", ho="absent", indication="dvt_query")
        .ultrasound("2025-02-10", "hip", "left", ho="absent", indication="dvt_query")
        .ultrasound("2025-02-10", "hip", "right", ho="absent", indication="dvt_query")
    )
    story = records(timeline)
    [reminder] = wanted(story, "2025-02-10", DVT)
    assert satisfied(story, "2025-02-10", reminder)


def test_a_hip_ultrasound_up_to_seven_days_after_satisfies_the_dvt_query() -> None:
    def doppler() -> Timeline:  # a Timeline grows in place: a fresh one each time
        return sci().ultrasound("2025-02-10", "thigh", "left", ho="absent", indication="dvt_query")

    [reminder] = wanted(records(doppler()), "2025-02-10", DVT)
    assert not satisfied(records(doppler()), "2025-03-01", reminder)
    week = doppler().ultrasound("2025-02-17", "hip", "right", ho="absent")
    assert satisfied(records(week), "2025-03-01", reminder)
    late = doppler().ultrasound("2025-02-18", "hip", "right", ho="absent")
    assert not satisfied(records(late), "2025-03-01", reminder)
    before = doppler().ultrasound("2025-02-09", "hip", "right", ho="absent")
    assert not satisfied(records(before), "2025-03-01", reminder)
    radiograph = doppler().radiograph("2025-02-12", "hip", "right", ho="absent")
    assert not satisfied(records(radiograph), "2025-03-01", reminder)


# --- the cohort and the patient agree; nothing changes until the rules are active --------


def test_the_cohort_cut_asks_the_same_as_each_patient() -> None:
    stories = [
        records(sci(), (exam("2025-02-10", swelling="yes"),)),
        records(Timeline("A002").injury("fop", "2025-01-01"), (exam("2025-02-10", warmth="yes"),)),
        records(
            Timeline("A003").injury("acquired_brain_injury", "2025-01-05")
            .alp("2025-02-03", 1.8, ref_high=0.5, analyte="d_dimer", unit="mg/L FEU"),
            motion=(
                arc("2025-02-01", 100), arc("2025-02-20", 50, "abduction"), arc("2025-02-21", 70)
            ),
        ),
        records(Timeline("A004").injury("spinal_cord_injury", "2025-01-05")
                .ultrasound("2025-02-01", "thigh", "left", ho="absent", indication="dvt_query")),
    ]  # fmt: skip
    as_of = day("2025-02-21")
    frames: dict[str, list[pd.DataFrame]] = {}
    for story in stories:
        for name, frame in rules.records_frames(story).items():
            frames.setdefault(name, []).append(frame)
    inputs = rules.RuleInputs(**{n: pd.concat(f, ignore_index=True) for n, f in frames.items()})
    cut = rules.cut_at(inputs, as_of, DEFAULTS)
    together = {
        (cut.mrns[int(r["pid"])], SUSPECTED, int(r["place"]) % 64, r["due"], r["why"])
        for r in rules.suspected_ho_wanted(cut, DEFAULTS.reminders).to_dict("records")
    } | {
        (cut.mrns[int(r["pid"])], DVT, -1, r["due"], r["why"])
        for r in rules.dvt_query_wanted(cut, DEFAULTS.reminders).to_dict("records")
    }
    alone = set()
    for story in stories:
        for w in rules.bedside_for_patient(story, as_of, DEFAULTS):
            code = -1
            if w.site is not None and w.side is not None:
                code = rules.SITES.index(w.site) * len(rules.SIDES) + rules.SIDES.index(w.side)
            why = w.detail.removesuffix(rules.DVT_WORDS).split(": image the ")[0]
            alone.add((story.mrn, w.rule, code, float(rules.day_number(w.due)), why))
    assert together == alone
    assert {mrn for mrn, *_ in together} == {"A001", "A003", "A004"}


def test_for_patient_plans_the_bedside_rules_once_active() -> None:
    story = records(sci(), (exam("2025-02-10", swelling="yes"),))
    as_of = day("2025-02-10")
    planned = [
        w for w in rules.for_patient(story, as_of, DEFAULTS) if w.rule in rules.BEDSIDE_RULES
    ]
    assert planned == rules.bedside_for_patient(story, as_of, DEFAULTS)


def test_the_default_protocol_holds_the_bedside_numbers() -> None:
    suspected = DEFAULTS.reminders.suspected_ho_imaging
    dvt = DEFAULTS.reminders.dvt_query_hip_ultrasound
    assert (suspected.enabled, suspected.injury_window_days, suspected.after_days) == (True, 365, 2)
    assert DEFAULTS.flags.rom_loss_fraction == 0.20  # the loss, shared with rom_loss
    assert (dvt.enabled, dvt.window_days) == (True, 7)
    assert dvt.injuries == ("spinal_cord_injury", "traumatic_brain_injury", "acquired_brain_injury")
    assert timedelta(days=suspected.after_days) == timedelta(days=2)


# --- read from the store, on both backends ------------------------------------------------


def test_the_store_reads_give_the_rules_what_the_records_give(any_engine: Engine) -> None:
    add_patient(
        any_engine,
        "S001",
        injuries=[{"kind": "spinal_cord_injury", "d": "2025-01-01"}],
        findings=[{"date": "2025-02-05", "modality": "ultrasound", "site": "thigh",
                   "side": "left", "ho": "absent"}],
    )  # fmt: skip
    pid = patient_id(any_engine, "S001")
    with any_engine.begin() as conn:
        conn.execute(sa.text("UPDATE imaging_study SET indication = 'dvt_query'"))
        conn.execute(
            sa.text(
                "INSERT INTO clinical_exam (patient_id, date, site, side, swelling, warmth) "
                "VALUES (:p, '2025-02-10', 'hip', 'right', 'yes', 'no')"
            ),
            {"p": pid},
        )
        for on, degrees in (("2025-02-01", 100), ("2025-02-08", 75)):
            conn.execute(
                sa.text(
                    "INSERT INTO range_of_motion (patient_id, date, site, side, movement, "
                    "degrees) VALUES (:p, :d, 'knee', 'left', 'flexion', :deg)"
                ),
                {"p": pid, "d": on, "deg": degrees},
            )
        conn.execute(
            sa.text(
                "INSERT INTO lab_result (patient_id, date, analyte, value, unit, ref_high) "
                "VALUES (:p, '2025-02-12', 'd_dimer', 2.5, 'mg/L FEU', 0.5)"
            ),
            {"p": pid},
        )
    as_of = day("2025-02-12")
    with any_engine.connect() as conn:
        frames = {name: read_table(conn, name) for name in TABLES if name != "labs"}
        inputs = planner.record_inputs(frames)  # the frames the cohort plan reads
        inputs = replace(inputs, **planner.bedside_tables(conn))
        assert all(len(t) for t in planner.bedside_tables(conn, "S001").values())
        assert not any(len(t) for t in planner.bedside_tables(conn, "NOBODY").values())
    cut = rules.cut_at(inputs, as_of, DEFAULTS)
    stored = sorted(
        [(SUSPECTED, rules.from_day_number(r["due"]),
          rules.suspected_words(np.array([r["why"]]), np.array([r["place"]]))[0])
         for r in rules.suspected_ho_wanted(cut, DEFAULTS.reminders).to_dict("records")]
        + [(DVT, rules.from_day_number(r["due"]), r["why"] + rules.DVT_WORDS)
           for r in rules.dvt_query_wanted(cut, DEFAULTS.reminders).to_dict("records")]
    )  # fmt: skip
    story = PatientRecords(
        "S001",
        injuries=(Injury("spinal_cord_injury", day("2025-01-01")),),
        findings=(
            Finding(day("2025-02-05"), "ultrasound", "thigh", "left", "absent",
                    indication="dvt_query"),
        ),
        labs=(Lab(day("2025-02-12"), "d_dimer", 2.5, 0.5, "mg/L FEU"),),
        exams=(exam("2025-02-10", swelling="yes", warmth="no"),),
        range_of_motion=(
            RangeOfMotion(day("2025-02-01"), "knee", "left", "flexion", 100),
            RangeOfMotion(day("2025-02-08"), "knee", "left", "flexion", 75),
        ),
    )  # fmt: skip
    alone = sorted(
        (w.rule, w.due, w.detail) for w in rules.bedside_for_patient(story, as_of, DEFAULTS)
    )
    assert stored == alone
    assert [(rule, due.isoformat()) for rule, due, _ in alone] == [
        (DVT, "2025-02-05"),
        (DVT, "2025-02-12"),
        (SUSPECTED, "2025-02-10"),
        (SUSPECTED, "2025-02-12"),
    ]


# --- one definition of a loss of range: the reminder and the rom_loss flag -----------------

LOSS_DAYS = [date(2025, 1, 1) + timedelta(days=d) for d in (0, 1, 20, 40, 41, 90)]


@st.composite
def losing_range(draw: st.DrawFn) -> PatientRecords:
    places = [("hip", "right"), ("hip", "left")]
    motion = tuple(
        RangeOfMotion(draw(st.sampled_from(LOSS_DAYS)), *draw(st.sampled_from(places)),
                      draw(st.sampled_from(["flexion", "abduction"])),
                      draw(st.sampled_from([0.0, 70.0, 80.0, 88.0, 100.0, 110.0, 100.5])))
        for _ in range(draw(st.integers(0, 8)))
    )  # fmt: skip
    findings = tuple(
        Finding(date(2024, 12, 1), "ultrasound", site, side, "present") for site, side in places
    )
    procedures = tuple(
        Procedure("resection", draw(st.sampled_from(LOSS_DAYS)), *draw(st.sampled_from(places)))
        for _ in range(draw(st.integers(0, 2)))
    )
    return PatientRecords(
        "A001",
        injuries=(Injury("spinal_cord_injury", date(2024, 11, 1)),),
        findings=findings,
        procedures=procedures,
        range_of_motion=motion,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(losing_range(), st.sampled_from(LOSS_DAYS))
def test_a_site_flagged_rom_loss_has_a_loss_event_on_its_latest_measurement(
    story: PatientRecords, as_of: date
) -> None:
    flagged = {
        (s.site, s.side) for s in assess_patient(story, as_of).sites if "rom_loss" in s.flags
    }
    cut = rules.cut_at(rules.RuleInputs(**rules.records_frames(story)), as_of, DEFAULTS)
    losses = rules._losses(cut)
    latest = {}
    resected = {}
    for p in story.procedures:
        if p.date <= as_of:
            resected[(p.site, p.side)] = max(p.date, resected.get((p.site, p.side), p.date))
    for m in story.range_of_motion:
        key = (m.site, m.side)
        if m.date <= as_of and (key not in resected or m.date > resected[key]):
            latest[(*key, m.movement)] = max(m.date, latest.get((*key, m.movement), m.date))
    shown = set()
    for row in losses.to_dict("records"):
        site, side = rules._site_side(int(row["place"]))
        if latest.get((site, side, row["movement"])) == rules.from_day_number(row["day"]):
            shown.add((site, side))
    assert flagged == shown
