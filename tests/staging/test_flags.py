"""Flags a clinician should notice (model-spec section 6).

Timelines go through both the one-patient path and the cohort run
(`assess_both_paths`), which must agree at every boundary."""

from __future__ import annotations

from datetime import date

from builders import AS_OF, Timeline, assess_both_paths, site_of


def flags(
    timeline: Timeline, site: str = "hip", side: str = "right", as_of: date = AS_OF
) -> tuple[str, ...]:
    return site_of(assess_both_paths(timeline.records(), as_of), site, side).flags


# --- new_site ---


def test_a_site_first_seen_31_days_after_the_first_ho_is_new() -> None:
    timeline = Timeline().radiograph("2024-01-01").ultrasound("2024-02-01", "knee", "left")
    assert flags(timeline, "knee", "left") == ("new_site",)
    assert flags(timeline) == ()


def test_a_site_first_seen_exactly_30_days_later_is_not_new() -> None:
    timeline = Timeline().radiograph("2024-01-01").ultrasound("2024-01-31", "knee", "left")
    assert flags(timeline, "knee", "left") == ()


def test_a_clear_screening_scan_does_not_date_a_sites_first_ho() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01")
        .ultrasound("2024-01-05", "knee", "left", ho="absent")
        .ultrasound("2024-03-01", "knee", "left")
    )
    assert flags(timeline, "knee", "left") == ("new_site",)


def test_a_bone_scan_measurement_counts_as_first_ho_evidence() -> None:
    timeline = Timeline().delayed_scan("2024-01-01", 3.0).delayed_scan("2024-03-20", 2.0, "knee")
    assert flags(timeline, "knee") == ("new_site",)
    timeline = Timeline().delayed_scan("2024-01-01", 3.0).delayed_scan("2024-01-31", 2.0, "knee")
    assert flags(timeline, "knee") == ()


def test_a_normal_ratio_does_not_date_the_patients_first_ho() -> None:
    # the unaffected hip measured for comparison months before HO appears at the knee
    timeline = (
        Timeline()
        .delayed_scan("2024-01-01", 1.2, "hip", "left")
        .scan("2024-01-01", "blood_pool", 1.05, "hip", "left")
        .ultrasound("2024-06-01", "knee", "left")
        .delayed_scan("2024-09-01", 1.21, "elbow", "right")
    )
    assert flags(timeline, "knee", "left") == ()  # the patient's first HO
    assert flags(timeline, "elbow", "right") == ("new_site",)  # 1.21 is above normal
    assert flags(timeline, "hip", "left") == ()


def test_ho_at_a_site_resected_long_ago_still_dates_the_patients_first_ho() -> None:
    timeline = (
        Timeline()
        .radiograph("2020-01-01", cortex="well_defined")
        .resection("2021-01-01")
        .ultrasound("2023-01-01", "knee", "left")
    )
    assert flags(timeline, "knee", "left") == ("new_site",)


def test_regrowth_after_resection_is_recurrence_not_new_site() -> None:
    timeline = (
        Timeline()
        .radiograph("2020-01-01", cortex="well_defined")
        .resection("2021-01-01")
        .ultrasound("2021-03-01")
    )
    assert flags(timeline) == ("recurrence",)
    # before the regrowth is seen, and on the day of the resection, nothing recurs
    assert flags(timeline, as_of=date(2021, 2, 28)) == ()
    assert flags(timeline, as_of=date(2021, 1, 1)) == ()


def test_a_clear_film_or_normal_uptake_after_resection_is_no_recurrence() -> None:
    timeline = (
        Timeline()
        .radiograph("2020-01-01", cortex="well_defined")
        .resection("2021-01-01")
        .radiograph("2021-02-12", ho="absent", calcification="none")
        .delayed_scan("2021-04-01", 1.2)
    )
    assert flags(timeline) == ()
    assert flags(timeline.delayed_scan("2021-07-01", 1.25)) == ("recurrence",)


def test_a_resected_site_is_never_new_even_when_its_first_ho_came_late() -> None:
    timeline = (
        Timeline()
        .ultrasound("2020-01-01", "knee", "left")
        .radiograph("2020-06-01", cortex="well_defined")  # hip: new site in 2020
        .resection("2021-01-01")
    )
    assert flags(timeline, as_of=date(2020, 12, 31)) == ("new_site",)
    assert flags(timeline) == ()  # resected: no new site, and no regrowth yet
    assert flags(timeline.ultrasound("2022-01-01")) == ("recurrence",)


def test_a_resection_elsewhere_does_not_make_a_site_recur() -> None:
    timeline = (
        Timeline()
        .radiograph("2020-01-01", cortex="well_defined")
        .resection("2021-01-01")
        .ultrasound("2021-03-01", "hip", "left")
    )
    assert flags(timeline, "hip", "left") == ("new_site",)


# --- grade_increase ---


def test_brooker_rising_from_one_to_two_is_a_grade_increase() -> None:
    timeline = Timeline().radiograph("2024-01-01", brooker=1).radiograph("2024-06-01", brooker=2)
    assert flags(timeline) == ("grade_increase",)


def test_a_lower_later_brooker_is_not_a_grade_increase() -> None:
    timeline = Timeline().radiograph("2024-01-01", brooker=3).radiograph("2024-06-01", brooker=2)
    assert flags(timeline) == ()


def test_a_grade_above_any_earlier_one_counts_even_after_a_dip() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01", brooker=3)
        .radiograph("2024-03-01", brooker=1)
        .radiograph("2024-06-01", brooker=2)
    )
    assert flags(timeline) == ("grade_increase",)


def test_della_valle_a_to_b_is_a_grade_increase() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01", della_valle="a")
        .radiograph("2024-06-01", della_valle="b")
    )
    assert flags(timeline) == ("grade_increase",)


def test_two_readers_grading_differently_on_one_day_is_not_an_increase() -> None:
    timeline = Timeline().radiograph("2024-01-01", brooker=1).ct("2024-01-01", brooker=3)
    assert flags(timeline) == ()


def test_grades_before_a_resection_are_not_compared_with_grades_after() -> None:
    timeline = (
        Timeline()
        .radiograph("2022-01-01", brooker=1)
        .resection("2022-06-01")
        .radiograph("2022-09-01", brooker=2)
    )
    assert "grade_increase" not in flags(timeline)


# --- progression_after_treatment ---


def treated_hip() -> Timeline:
    """Early HO on 2024-01-01, an etidronate course for it from 2024-01-10 to 2024-03-31."""
    return Timeline().ultrasound("2024-01-01").course("2024-01-10", "2024-03-31")


def test_mineralisation_during_treatment_is_progression() -> None:
    timeline = treated_hip().radiograph("2024-02-15", calcification="zonal")
    assert flags(timeline) == ("progression_after_treatment",)


def test_grade_increase_180_days_after_the_course_ends_is_progression() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01", calcification="zonal", brooker=1)
        .course("2024-01-10", "2024-03-31")
        .radiograph("2024-09-27", brooker=2)  # 2024-03-31 + 180 days
    )
    assert flags(timeline) == ("grade_increase", "progression_after_treatment")


def test_grade_increase_181_days_after_the_course_ends_is_not_progression() -> None:
    timeline = (
        Timeline()
        .radiograph("2024-01-01", calcification="zonal", brooker=1)
        .course("2024-01-10", "2024-03-31")
        .radiograph("2024-09-28", brooker=2)
    )
    assert flags(timeline) == ("grade_increase",)


def test_change_on_the_day_a_course_starts_is_not_progression_after_it() -> None:
    timeline = treated_hip().radiograph("2024-01-10", calcification="zonal")
    assert flags(timeline) == ()


def test_first_appearance_of_ho_is_not_a_stage_advance() -> None:
    timeline = (
        Timeline()
        .ultrasound("2023-12-01", ho="absent")
        .course("2023-12-05", "2024-01-30")
        .ultrasound("2023-12-20")
    )
    assert flags(timeline) == ()


def test_a_new_site_during_an_ongoing_course_is_progression_up_to_as_of() -> None:
    timeline = (
        Timeline()
        .ultrasound("2024-01-01")
        .course("2024-01-10")  # no end date: ongoing
        .radiograph("2025-06-01", "knee", "left")
    )
    assert flags(timeline, "knee", "left") == ("new_site", "progression_after_treatment")
    assert flags(timeline) == ()


def test_prophylaxis_courses_do_not_count_for_progression() -> None:
    timeline = (
        Timeline()
        .ultrasound("2024-01-01")
        .course("2024-01-10", "2024-03-31", agent="indomethacin", intent="prophylaxis")
        .radiograph("2024-02-15", calcification="zonal")
    )
    assert flags(timeline) == ()


def test_a_course_starting_after_as_of_does_not_count() -> None:
    timeline = treated_hip().radiograph("2024-02-15", calcification="zonal")
    assert flags(timeline, as_of=date(2024, 1, 5)) == ()


# --- rising_activity and genetic_ho ---


def test_rising_uptake_is_flagged() -> None:
    timeline = Timeline().delayed_scans(("2024-01-01", 2.0), ("2024-03-01", 2.6))
    assert flags(timeline) == ("rising_activity",)


def test_fop_flags_every_site() -> None:
    timeline = (
        Timeline()
        .injury("fop", "2015-01-01")
        .radiograph("2024-01-01")
        .radiograph("2024-01-01", "jaw", "midline")
    )
    assert flags(timeline) == ("genetic_ho",)
    assert flags(timeline, "jaw", "midline") == ("genetic_ho",)


def test_flags_are_sorted_with_recurrence_in_its_place() -> None:
    timeline = (
        Timeline()
        .injury("fop", "2015-01-01")
        .radiograph("2020-01-01", cortex="well_defined")
        .resection("2021-01-01")
        .course("2021-01-10")
        .radiograph("2021-03-01", brooker=1)
        .radiograph("2021-05-01", brooker=2)
        .delayed_scans(("2021-04-01", 2.0), ("2021-06-01", 3.0))
    )
    assert flags(timeline) == (
        "genetic_ho",
        "grade_increase",
        "progression_after_treatment",
        "recurrence",
        "rising_activity",
    )


def test_flags_are_sorted() -> None:
    timeline = (
        Timeline()
        .injury("fop", "2015-01-01")
        .radiograph("2024-01-01", "elbow", "left")
        .radiograph("2024-03-01", brooker=1)
        .course("2024-03-05")
        .radiograph("2024-05-01", brooker=2)
        .delayed_scans(("2024-04-01", 2.0), ("2024-06-01", 3.0))
    )
    assert flags(timeline) == (
        "genetic_ho",
        "grade_increase",
        "new_site",
        "progression_after_treatment",
        "rising_activity",
    )
