"""The reminder rules of model-spec section 9, one patient at a time (pure)."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date, timedelta

import pandas as pd

from tests.staging.builders import Timeline, day, mature_hip
from tracker.protocol import AfterDaysRule, Level, Protocol, ReminderRules
from tracker.reminders import planner, rules
from tracker.reminders.rules import WantedReminder, for_patient
from tracker.staging.cohort_records import cohort_frames

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


def cohort_wanted(
    patients: list[Timeline], as_of: str, protocol: Protocol = DEFAULTS
) -> dict[str, list[WantedReminder]]:
    """The reminders the cohort path wants (the planner's: the cohort frames, the cohort
    staging with the day each site became ready), by patient."""
    frames = cohort_frames([p.records() for p in patients])
    by_name = {f.name: getattr(frames, f.name) for f in fields(frames)}
    staged = planner.cohort_sites(frames, day(as_of), protocol)
    inputs = replace(planner.record_inputs(by_name), sites=staged)
    frame = rules.wanted(inputs, day(as_of), protocol)
    out: dict[str, list[WantedReminder]] = {}
    for row in frame.to_dict("records"):  # in natural-key order, as for_patient gives them
        out.setdefault(row["mrn"], []).append(
            WantedReminder(
                row["rule"], row["site"], row["side"], rules.from_day_number(row["due"]),
                row["detail"],
            )
        )  # fmt: skip
    return out


def busy_patient() -> Timeline:
    """A patient who calls for most rules at once: a ready right hip, a mineralising
    left knee, an early left elbow, a resected left hip, a course that ended."""
    return (
        mature_hip("A002")
        .radiograph("2025-02-01", "knee", "left", calcification="peripheral")
        .ultrasound("2025-05-01", "elbow", "left", ho="present")
        .radiograph("2025-01-05", "hip", "left", cortex="well_defined", brooker=3)
        .resection("2025-04-01", "hip", "left")
        .course("2025-04-01", "2025-05-01", agent="indomethacin", intent="treatment")
    )


def test_one_patient_and_the_cohort_frames_give_the_same_reminders() -> None:
    """`for_patient` (one patient's assessment) and the planner's cohort path want the
    same reminders, words included, and other patients in the run change nothing."""
    patient = busy_patient()
    one = wanted(patient, "2025-06-15")
    assert {w.rule for w in one} >= {
        "readiness_review", "monitoring_radiograph", "maturity_bone_scan",
        "recurrence_radiograph", "post_course_radiograph", "course_review",
    }  # fmt: skip
    assert all(w.detail for w in one)
    # an early hip found on ultrasound stops screening: the HO evidence both paths read
    screened = Timeline("A003").injury("spinal_cord_injury", "2025-03-01")
    found = screened.ultrasound("2025-04-10", ho="present")
    run = [patient, found, mature_hip("A004")]
    by_patient = cohort_wanted(run, "2025-06-15")
    for timeline in run:
        alone = wanted(timeline, "2025-06-15")
        assert alone and by_patient[timeline.mrn] == alone, timeline.mrn
    assert of_rule(found, "2025-06-15", "hip_ultrasound_screen") == []
    assert cohort_wanted([patient], "2025-06-15")["A002"] == one


# --- model v2: genetic HO and the unaffected side ---------------------------------------


def fop_hip(on: str = "2020-06-01") -> Timeline:
    """A mineralising right hip, not ready: the site a maturity scan would time."""
    return (
        Timeline()
        .injury("fop", on)
        .radiograph("2025-03-10", calcification="peripheral")
        .delayed_scans(("2025-03-20", 6.0), ("2025-05-01", 5.5))
    )


def test_fop_patient_gets_no_maturity_bone_scan() -> None:
    assert of_rule(fop_hip(), "2025-06-01", "maturity_bone_scan") == []
    assert of_rule(fop_hip(), "2025-06-01", "monitoring_radiograph") == ["2025-04-21"]
    # the same hip after another injury is timed for resection
    other = Timeline().injury("burn", "2020-06-01")
    other.findings, other.bone_scans = fop_hip().findings, fop_hip().bone_scans
    assert of_rule(other, "2025-06-01", "maturity_bone_scan") == ["2025-07-30"]
    # fop recorded after as_of does not count yet (model-spec section 3)
    later = fop_hip(on="2025-07-01")
    later.injuries.insert(0, other.injuries[0])
    assert of_rule(later, "2025-06-01", "maturity_bone_scan") == ["2025-07-30"]
    assert cohort_wanted([fop_hip(), other], "2025-06-01").get("A001") == wanted(
        fop_hip(), "2025-06-01"
    )


def advisory_genetic_ho() -> Protocol:
    """A protocol in which fop does not make a site not ready (not_genetic_ho advisory),
    so only the v2 reminder rule keeps a readiness review from an fop patient."""
    levels = replace(DEFAULTS.readiness.levels, not_genetic_ho=Level.advisory)
    return replace(DEFAULTS, readiness=replace(DEFAULTS.readiness, levels=levels))


def test_fop_patient_gets_no_readiness_review() -> None:
    protocol = advisory_genetic_ho()
    fop = mature_hip().injury("fop", "2023-01-10")
    assert of_rule(mature_hip(), "2025-06-15", "readiness_review", protocol) == ["2025-05-20"]
    [site] = rules.patient_inputs(fop.records(), day("2025-06-15"), protocol).sites.to_dict(
        "records"
    )
    assert site["readiness"] == "ready"  # ready by this protocol's levels, and yet
    assert of_rule(fop, "2025-06-15", "readiness_review", protocol) == []
    assert of_rule(fop, "2025-06-15", "maturity_bone_scan", protocol) == []
    cohort = cohort_wanted([fop, mature_hip("A002")], "2025-06-15", protocol)
    assert "readiness_review" not in {w.rule for w in cohort.get("A001", [])}
    assert "readiness_review" in {w.rule for w in cohort["A002"]}


def contralateral(ratio: float) -> Timeline:
    """Right hip HO-free so far, the left (unaffected) hip scanned for comparison:
    delayed ratio `ratio`, with a radiograph showing no HO on the same day."""
    return (
        sci("2025-01-01")
        .delayed_scan("2025-02-10", ratio, "hip", "left")
        .radiograph("2025-02-10", "hip", "left", ho="absent")
    )


def test_unaffected_hip_recorded_for_comparison_gets_no_reminders() -> None:
    for ratio in (1.05, 1.2):  # normal uptake, and exactly at normal_uptake_ratio
        timeline = contralateral(ratio)
        found = wanted(timeline, "2025-03-01")
        assert [w for w in found if w.site is not None] == []
        # screening goes on: a normal ratio is no HO evidence
        assert of_rule(timeline, "2025-03-01", "hip_ultrasound_screen") == [
            "2025-01-22", "2025-02-12", "2025-03-05", "2025-03-26", "2025-04-16",
        ]  # fmt: skip
        assert cohort_wanted([timeline], "2025-03-01")["A001"] == found
    uptake = contralateral(1.21)  # above normal uptake: early HO at the left hip
    assert of_rule(uptake, "2025-03-01", "hip_ultrasound_screen") == []
    assert of_rule(uptake, "2025-03-01", "monitoring_radiograph") == ["2025-03-24"]


def test_normal_uptake_ratio_comes_from_the_protocol() -> None:
    stricter = replace(DEFAULTS, stage=replace(DEFAULTS.stage, normal_uptake_ratio=1.5))
    timeline = contralateral(1.4)
    assert of_rule(timeline, "2025-03-01", "monitoring_radiograph") == ["2025-03-24"]
    assert of_rule(timeline, "2025-03-01", "monitoring_radiograph", stricter) == []
    assert len(of_rule(timeline, "2025-03-01", "hip_ultrasound_screen", stricter)) == 5


def test_a_normal_ratio_does_not_make_an_ho_site_for_the_post_course_radiograph() -> None:
    course = (
        sci()
        .course("2025-01-10", "2025-03-01", intent="treatment")
        .delayed_scan("2025-02-01", 1.1, "knee", "left")
        .radiograph("2025-04-20", "knee", "left", ho="absent")
    )
    assert not is_satisfied(course, "post_course_radiograph", "2025-04-26", "2025-05-01")
    hot = (
        sci()
        .course("2025-01-10", "2025-03-01", intent="treatment")
        .delayed_scan("2025-02-01", 2.5, "knee", "left")
        .radiograph("2025-04-20", "knee", "left", ho="absent")
    )
    assert is_satisfied(hot, "post_course_radiograph", "2025-04-26", "2025-05-01")
