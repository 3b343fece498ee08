"""The [reminders] section of the clinic protocol: spec defaults, and bad values
refused with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.errors import ProtocolError
from tracker.protocol import Protocol, load_protocol

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "data" / "protocols" / "default.toml"


def load(tmp_path: Path, text: str) -> Protocol:
    path = tmp_path / "clinic.toml"
    path.write_text(text, encoding="utf-8")
    return load_protocol(path)


def test_default_file_holds_the_spec_section_9_numbers() -> None:
    rules = load_protocol(DEFAULT_FILE).reminders
    assert rules == Protocol().reminders
    screen = rules.hip_ultrasound_screen
    assert (screen.first_day, screen.every_days, screen.last_day, screen.window_days) == (
        21,
        21,
        168,
        7,
    )
    assert rules.consider_prophylaxis.day == 14
    assert rules.monitoring_radiograph.after_days == 42
    assert rules.maturity_bone_scan.after_days == 90
    assert rules.post_course_radiograph.after_days == 56
    assert rules.post_resection_prophylaxis.window_days == 3
    assert rules.recurrence_radiograph.days == (42, 91, 182, 365)
    assert rules.escalation_grace_days == 14
    assert rules.horizon_days == 60
    assert rules.lapse_after_days == 30  # v2: longer past than this when first planned
    assert (rules.time_zone, rules.send_hour) == ("Europe/London", 8)


def test_clinic_sets_how_long_past_a_reminder_may_be_before_it_lapses(tmp_path: Path) -> None:
    assert load(tmp_path, "[reminders]\nlapse_after_days = 90\n").reminders.lapse_after_days == 90
    assert load(tmp_path, "[reminders]\nlapse_after_days = 0\n").reminders.lapse_after_days == 0


def test_clinic_changes_its_time_zone_send_hour_and_one_interval(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        '[reminders]\ntime_zone = "America/New_York"\nsend_hour = 7\n'
        "[reminders.monitoring_radiograph]\nafter_days = 28\n"
        "[reminders.recurrence_radiograph]\ndays = [30, 90]\n",
    ).reminders
    assert (rules.time_zone, rules.send_hour) == ("America/New_York", 7)
    assert rules.monitoring_radiograph.after_days == 28
    assert rules.maturity_bone_scan.after_days == 90  # untouched keys keep the defaults
    assert rules.recurrence_radiograph.days == (30, 90)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[reminders.hip_ultrasound_screen]\nevery_days = -21",
            "reminders.hip_ultrasound_screen.every_days must be a positive whole number of days",
        ),
        (
            "[reminders.monitoring_radiograph]\nafter_days = -1",
            "reminders.monitoring_radiograph.after_days must be a positive whole number",
        ),
        ("[reminders]\nescalation_grace_days = -14", "reminders.escalation_grace_days must be"),
        (
            "[reminders]\nlapse_after_days = -30",
            "reminders.lapse_after_days must be a whole number of days, zero or more",
        ),
        ('[reminders]\nlapse_after_days = "30"', "reminders.lapse_after_days must be"),
        ("[reminders]\nlapse_after_days = 99999", "reminders.lapse_after_days must be at most"),
        ("[reminders.dexa_scan]\nafter_days = 30", "[reminders.dexa_scan] is not a reminder rule"),
        (
            '[reminders]\ntime_zone = "Mars/Olympus_Mons"',
            "reminders.time_zone must be an IANA time zone",
        ),
        ("[reminders]\nsend_hour = 24", "reminders.send_hour must be a whole hour of the day"),
        ('[reminders]\ncolour = "red"', "unknown key reminders.colour"),
        (
            "[reminders.course_review]\nafter_days = 3",
            "unknown key reminders.course_review.after_days",
        ),
        (
            "[reminders.recurrence_radiograph]\ndays = [91, 42]",
            "reminders.recurrence_radiograph.days must be",
        ),
        (
            '[reminders.consider_prophylaxis]\ninjuries = ["sci"]',
            "reminders.consider_prophylaxis.injuries",
        ),
        (
            '[reminders.readiness_review]\nenabled = "yes"',
            "reminders.readiness_review.enabled must be true or false",
        ),
        (
            "[reminders.hip_ultrasound_screen]\nfirst_day = 200",
            "first_day (200) must not be after reminders.hip_ultrasound_screen.last_day (168)",
        ),
    ],
)
def test_bad_reminder_settings_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        load(tmp_path, text)
    assert message in str(refused.value)
