"""The reminder rules of model-spec section 9, one patient at a time (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pandas as pd

from tests.staging.builders import Timeline, day, mature_hip
from tracker.protocol import AfterDaysRule, Protocol, ReminderRules
from tracker.reminders import rules
from tracker.reminders.rules import WantedReminder, for_patient

DEFAULTS = Protocol()


def wanted(timeline: Timeline, as_of: str, protocol: Protocol = DEFAULTS) -> list[WantedReminder]:
    return for_patient(timeline.records(), day(as_of), protocol)


def of_rule(timeline: Timeline, as_of: str, rule: str, protocol: Protocol = DEFAULTS) -> list[str]:
    return [w.due.isoformat() for w in wanted(timeline, as_of, protocol) if w.rule == rule]


def is_satisfied(
    timeline: Timeline,
    rule: str,
    due: str,
    as_of: str,
    site: str | None = None,
    side: str | None = None,
) -> bool:
    records = timeline.records()
    inputs = rules.patient_inputs(records, day(as_of), DEFAULTS)
    key = pd.DataFrame(
        [{"mrn": records.mrn, "rule": rule, "site": site, "side": side,
          "due": float(rules.day_number(day(due)))}]
    )  # fmt: skip
    return bool(rules.satisfied(key, inputs, day(as_of), DEFAULTS)[0])


def sci(on: str = "2025-01-01") -> Timeline:
    return Timeline().injury("spinal_cord_injury", on)


# --- hip_ultrasound_screen --------------------------------------------------------------


def test_screening_runs_every_21_days_from_day_21_to_day_168_after_spinal_cord_injury() -> None:
    dues = of_rule(sci(), "2025-07-01", "hip_ultrasound_screen")
    first = date(2025, 1, 1)
    assert dues == [(first + timedelta(days=d)).isoformat() for d in range(21, 169, 21)]


def test_screening_is_planned_only_up_to_60_days_ahead() -> None:
    assert of_rule(sci(), "2025-01-01", "hip_ultrasound_screen") == ["2025-01-22", "2025-02-12"]


def test_brain_injuries_are_screened_and_burns_are_not() -> None:
    tbi = Timeline().injury("traumatic_brain_injury", "2025-01-01")
    abi = Timeline().injury("acquired_brain_injury", "2025-01-01")
    burn = Timeline().injury("burn", "2025-01-01")
    assert len(of_rule(tbi, "2025-07-01", "hip_ultrasound_screen")) == 8
    assert len(of_rule(abi, "2025-07-01", "hip_ultrasound_screen")) == 8
    assert of_rule(burn, "2025-07-01", "hip_ultrasound_screen") == []


def test_screening_stops_once_ho_evidence_exists() -> None:
    found = sci().ultrasound("2025-02-10", "hip", "left", ho="present")
    assert of_rule(found, "2025-07-01", "hip_ultrasound_screen") == []
    scanned = sci().delayed_scan("2025-02-10", 2.4)
    assert of_rule(scanned, "2025-07-01", "hip_ultrasound_screen") == []


def test_negative_ultrasound_does_not_stop_screening_nor_does_ho_after_as_of() -> None:
    negative = sci().ultrasound("2025-01-20", ho="absent")
    assert len(of_rule(negative, "2025-07-01", "hip_ultrasound_screen")) == 8
    later = sci().ultrasound("2025-09-01", ho="present")  # after as_of: does not count
    assert len(of_rule(later, "2025-07-01", "hip_ultrasound_screen")) == 8


def test_hip_ultrasound_within_seven_days_of_the_due_date_satisfies_the_screen() -> None:
    near = sci().ultrasound("2025-01-29", "hip", "left", ho="absent")
    assert is_satisfied(near, "hip_ultrasound_screen", "2025-01-22", "2025-03-01")
    far = sci().ultrasound("2025-01-30", "hip", "left", ho="absent")
    assert not is_satisfied(far, "hip_ultrasound_screen", "2025-01-22", "2025-03-01")
    knee = sci().ultrasound("2025-01-22", "knee", "left", ho="absent")
    assert not is_satisfied(knee, "hip_ultrasound_screen", "2025-01-22", "2025-03-01")
    radiograph = sci().radiograph("2025-01-22", "hip", "left", ho="absent")
    assert not is_satisfied(radiograph, "hip_ultrasound_screen", "2025-01-22", "2025-03-01")


# --- consider_prophylaxis ----------------------------------------------------------------


def test_prophylaxis_is_considered_on_day_14_after_a_neurological_injury() -> None:
    assert of_rule(sci(), "2025-01-01", "consider_prophylaxis") == ["2025-01-15"]
    burn = Timeline().injury("burn", "2025-01-01")
    assert of_rule(burn, "2025-01-01", "consider_prophylaxis") == []


def test_a_started_prophylaxis_course_removes_and_satisfies_the_prophylaxis_reminder() -> None:
    covered = sci().course("2025-01-10", agent="indomethacin", intent="prophylaxis")
    assert of_rule(covered, "2025-02-01", "consider_prophylaxis") == []
    assert is_satisfied(covered, "consider_prophylaxis", "2025-01-15", "2025-02-01")
    treatment = sci().course("2025-01-10", agent="indomethacin", intent="treatment")
    assert not is_satisfied(treatment, "consider_prophylaxis", "2025-01-15", "2025-02-01")


# --- monitoring_radiograph -------------------------------------------------------------


def test_early_site_gets_a_radiograph_42_days_after_its_first_evidence() -> None:
    early = sci().ultrasound("2025-03-01", ho="present")
    assert of_rule(early, "2025-03-05", "monitoring_radiograph") == ["2025-04-12"]


def test_mineralising_site_gets_a_radiograph_42_days_after_its_latest_radiograph() -> None:
    site = (
        sci()
        .ultrasound("2025-03-01", ho="present")
        .radiograph("2025-03-10", calcification="peripheral")
        .ct("2025-04-01", calcification="zonal")
    )
    assert of_rule(site, "2025-04-05", "monitoring_radiograph") == ["2025-05-13"]
    [reminder] = [w for w in wanted(site, "2025-04-05") if w.rule == "monitoring_radiograph"]
    assert (reminder.site, reminder.side) == ("hip", "right")


def test_mature_site_needs_no_monitoring_radiograph() -> None:
    assert of_rule(mature_hip(), "2025-06-15", "monitoring_radiograph") == []


def test_a_later_radiograph_of_the_site_satisfies_the_monitoring_reminder() -> None:
    site = sci().ultrasound("2025-03-01", ho="present").radiograph("2025-04-10", ho="present")
    args = ("monitoring_radiograph", "2025-04-12", "2025-04-20", "hip", "right")
    assert is_satisfied(site, *args)
    other_side = (
        sci()
        .ultrasound("2025-03-01", ho="present")
        .radiograph("2025-04-10", "hip", "left", ho="present")
    )
    assert not is_satisfied(other_side, *args)


# --- maturity_bone_scan ----------------------------------------------------------------


def test_mineralising_site_not_ready_gets_a_bone_scan_90_days_after_the_latest_delayed_scan() -> (
    None
):
    site = (
        sci()
        .radiograph("2025-03-10", calcification="peripheral")
        .delayed_scans(("2025-03-20", 6.0), ("2025-05-01", 5.5))
    )
    assert of_rule(site, "2025-06-01", "maturity_bone_scan") == ["2025-07-30"]
    assert is_satisfied(
        site.delayed_scan("2025-07-25", 4.0),
        "maturity_bone_scan", "2025-07-30", "2025-08-01", "hip", "right",
    )  # fmt: skip


def test_mineralising_site_without_scans_counts_from_its_first_evidence() -> None:
    site = sci().radiograph("2025-03-10", calcification="peripheral")
    assert of_rule(site, "2025-04-20", "maturity_bone_scan") == ["2025-06-08"]


def test_ready_site_needs_no_maturity_scan_and_early_site_neither() -> None:
    assert of_rule(mature_hip(), "2025-06-15", "maturity_bone_scan") == []
    early = sci().ultrasound("2025-03-01", ho="present")
    assert of_rule(early, "2025-03-05", "maturity_bone_scan") == []


# --- course_review and post_course_radiograph --------------------------------------------


def test_course_is_reviewed_on_its_end_date_or_planned_end() -> None:
    ended = sci().course("2025-02-01", "2025-03-15")
    assert of_rule(ended, "2025-02-10", "course_review") == ["2025-03-15"]
    planned = sci().course("2025-02-01", planned_weeks=6)
    assert of_rule(planned, "2025-02-10", "course_review") == ["2025-03-15"]
    open_ended = sci().course("2025-02-01")
    assert of_rule(open_ended, "2025-02-10", "course_review") == []


def test_course_review_is_closed_only_by_acknowledgement() -> None:
    ended = sci().course("2025-02-01", "2025-03-15").radiograph("2025-03-16", ho="present")
    assert not is_satisfied(ended, "course_review", "2025-03-15", "2025-04-01")


def test_ended_treatment_course_gets_a_radiograph_56_days_later() -> None:
    ended = (
        sci().radiograph("2025-01-20", calcification="present").course("2025-02-01", "2025-03-01")
    )
    assert of_rule(ended, "2025-03-10", "post_course_radiograph") == ["2025-04-26"]
    running = sci().course("2025-02-01", planned_weeks=4)
    assert of_rule(running, "2025-03-10", "post_course_radiograph") == []
    prophylaxis = sci().course("2025-02-01", "2025-03-01", intent="prophylaxis")
    assert of_rule(prophylaxis, "2025-03-10", "post_course_radiograph") == []


def test_post_course_radiograph_is_satisfied_by_a_radiograph_of_any_ho_site() -> None:
    base = (
        sci()
        .radiograph("2025-01-20", "hip", "left", calcification="present")
        .course("2025-02-01", "2025-03-01")
    )
    of_ho_site = base.radiograph("2025-04-20", "hip", "left", calcification="present")
    assert is_satisfied(of_ho_site, "post_course_radiograph", "2025-04-26", "2025-05-01")
    no_ho_site = (
        sci()
        .radiograph("2025-01-20", "hip", "left", calcification="present")
        .course("2025-02-01", "2025-03-01")
        .radiograph("2025-04-20", "knee", "left", ho="absent")
    )
    assert not is_satisfied(no_ho_site, "post_course_radiograph", "2025-04-26", "2025-05-01")


# --- readiness_review ---------------------------------------------------------------------


def test_readiness_review_is_due_the_day_the_site_became_ready_and_stays_put() -> None:
    hip = mature_hip()
    # the well-defined cortex of 2025-05-20 made the hip mature; the scans and ALP agreed
    assert of_rule(hip, "2025-06-15", "readiness_review") == ["2025-05-20"]
    assert of_rule(hip, "2025-07-15", "readiness_review") == ["2025-05-20"]
    assert of_rule(hip, "2025-05-10", "readiness_review") == []


# --- resections ---------------------------------------------------------------------------


def test_resection_asks_for_prophylaxis_on_its_day_and_radiographs_at_42_91_182_365() -> None:
    operated = sci().radiograph("2025-01-20", calcification="present").resection("2026-01-10")
    assert of_rule(operated, "2026-01-10", "post_resection_prophylaxis") == ["2026-01-10"]
    dues = of_rule(operated, "2027-01-20", "recurrence_radiograph")
    start = date(2026, 1, 10)
    assert dues == [(start + timedelta(days=d)).isoformat() for d in (42, 91, 182, 365)]


def test_radiotherapy_or_post_resection_course_within_three_days_satisfies_prophylaxis() -> None:
    def operated() -> Timeline:
        return sci().resection("2026-01-10")

    args = ("post_resection_prophylaxis", "2026-01-10", "2026-01-20", "hip", "right")
    assert is_satisfied(
        operated().course("2026-01-09", agent="radiotherapy", intent="treatment"), *args
    )
    assert is_satisfied(
        operated().course("2026-01-13", agent="indomethacin", intent="post_resection"), *args
    )
    assert not is_satisfied(
        operated().course("2026-01-14", agent="indomethacin", intent="post_resection"), *args
    )
    assert not is_satisfied(
        operated().course("2026-01-10", agent="indomethacin", intent="treatment"), *args
    )


def test_each_recurrence_radiograph_counts_for_one_checkpoint_only() -> None:
    operated = sci().resection("2026-01-10").radiograph("2026-03-11", ho="absent")  # day 60
    checks = {
        due: is_satisfied(operated, "recurrence_radiograph", due, "2026-04-01", "hip", "right")
        for due in ("2026-02-21", "2026-04-11")  # days 42 and 91
    }
    assert checks == {"2026-02-21": True, "2026-04-11": False}


# --- the protocol's numbers ---------------------------------------------------------------


def test_protocol_numbers_move_due_dates_and_a_switched_off_rule_wants_nothing() -> None:
    early = sci().ultrasound("2025-03-01", ho="present")
    sooner = replace(
        DEFAULTS,
        reminders=replace(
            ReminderRules(), monitoring_radiograph=AfterDaysRule(enabled=True, after_days=28)
        ),
    )
    assert of_rule(early, "2025-03-05", "monitoring_radiograph", sooner) == ["2025-03-29"]
    off = replace(
        DEFAULTS,
        reminders=replace(
            ReminderRules(), monitoring_radiograph=AfterDaysRule(enabled=False, after_days=42)
        ),
    )
    assert of_rule(early, "2025-03-05", "monitoring_radiograph", off) == []


def test_one_patient_and_the_cohort_frames_give_the_same_reminders() -> None:
    """`for_patient` is the cohort code on one patient: a second patient changes nothing."""
    one = wanted(sci().ultrasound("2025-03-01", ho="present"), "2025-06-01")
    assert one and all(w.detail for w in one)
