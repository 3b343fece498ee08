"""The rom_loss flag (model-spec v2, section 6): a joint losing range of motion.

For some movement, the site's latest range-of-motion measurement is at least 20%
(protocol) below the largest earlier measurement of the same movement at the same
site, both on or before as_of and after the site's latest resection. Examinations
never make a site (section 10). Every example goes through both paths
(`assess_both_paths`): the one-patient `assess` and the cohort run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from builders import AS_OF, Timeline, assess_both_paths, day, site_of

from tracker.errors import ProtocolError
from tracker.protocol import FlagRules, Protocol, load_protocol
from tracker.staging import PatientRecords, RangeOfMotion


def hip(
    *arcs: tuple[str, float], movement: str = "flexion", side: str = "right"
) -> list[RangeOfMotion]:
    return [RangeOfMotion(day(on), "hip", side, movement, degrees) for on, degrees in arcs]


def with_rom(timeline: Timeline, *rows: RangeOfMotion) -> PatientRecords:
    return replace(timeline.records(), range_of_motion=tuple(rows))


DEFAULTS = Protocol()


def imaged_hip() -> Timeline:
    return (
        Timeline()
        .injury("spinal_cord_injury", "2025-01-10")
        .ultrasound("2025-02-01", soft_tissue="swelling")
    )


def flags(records: PatientRecords, protocol: Protocol = DEFAULTS, **where: str) -> tuple[str, ...]:
    return site_of(assess_both_paths(records, AS_OF, protocol), **where).flags


def test_twelve_percent_loss_is_not_rom_loss() -> None:
    records = with_rom(imaged_hip(), *hip(("2025-02-01", 100), ("2025-03-01", 88)))
    assert "rom_loss" not in flags(records)


def test_twenty_percent_loss_is_rom_loss() -> None:
    records = with_rom(imaged_hip(), *hip(("2025-02-01", 100), ("2025-03-01", 80)))
    assert "rom_loss" in flags(records)


def test_loss_against_the_largest_earlier_arc_not_the_last_one() -> None:
    # 110 -> 95 -> 85: each step is under 20%, but 85 is 23% below the best arc
    arcs = hip(("2025-02-01", 110), ("2025-02-15", 95), ("2025-03-01", 85))
    assert "rom_loss" in flags(with_rom(imaged_hip(), *arcs))


def test_range_that_came_back_is_no_longer_a_loss() -> None:
    # the latest measurement decides: a hip that lost range and regained it has no flag
    arcs = hip(("2025-02-01", 100), ("2025-03-01", 70), ("2025-04-01", 95))
    assert "rom_loss" not in flags(with_rom(imaged_hip(), *arcs))


def test_a_loss_in_one_movement_is_enough() -> None:
    rows = [
        *hip(("2025-02-01", 100), ("2025-03-01", 98)),
        *hip(("2025-02-01", 40), ("2025-03-01", 30), movement="abduction"),
    ]
    assert "rom_loss" in flags(with_rom(imaged_hip(), *rows))


def test_different_movements_are_never_compared() -> None:
    rows = [*hip(("2025-02-01", 120)), *hip(("2025-03-01", 30), movement="abduction")]
    assert "rom_loss" not in flags(with_rom(imaged_hip(), *rows))


def test_the_other_side_is_another_site() -> None:
    timeline = imaged_hip().ultrasound("2025-02-01", "hip", "left", ho="absent")
    rows = [*hip(("2025-02-01", 100)), *hip(("2025-03-01", 60), side="left")]
    records = with_rom(timeline, *rows)
    assert "rom_loss" not in flags(records)
    assert "rom_loss" not in flags(records, side="left")


def test_loss_measured_before_resection_does_not_count_after_it() -> None:
    timeline = imaged_hip().resection("2025-03-15")
    # 120 -> 80 before the resection; afterwards only 80 -> 78
    arcs = hip(("2025-02-01", 120), ("2025-03-01", 80), ("2025-04-01", 80), ("2025-05-01", 78))
    assert "rom_loss" not in flags(with_rom(timeline, *arcs))
    # a loss after the resection is one
    later = hip(("2025-04-01", 110), ("2025-05-01", 80))
    assert "rom_loss" in flags(with_rom(imaged_hip().resection("2025-03-15"), *later))


def test_measurements_after_as_of_never_count() -> None:
    arcs = hip(("2025-02-01", 100), ("2025-06-16", 50))
    assert "rom_loss" not in flags(with_rom(imaged_hip(), *arcs))


def test_range_of_motion_alone_makes_no_site() -> None:
    timeline = Timeline().injury("spinal_cord_injury", "2025-01-10")
    arcs = hip(("2025-02-01", 100), ("2025-03-01", 50))
    assert assess_both_paths(with_rom(timeline, *arcs), AS_OF).sites == ()
    # nor a site at another joint of a patient who has one
    knee = [
        RangeOfMotion(day(d), "knee", "right", "flexion", v)
        for d, v in (("2025-02-01", 130), ("2025-03-01", 60))
    ]
    sites = assess_both_paths(with_rom(imaged_hip(), *knee), AS_OF).sites
    assert [(s.site, s.side) for s in sites] == [("hip", "right")]


def test_a_single_measurement_is_no_loss() -> None:
    assert "rom_loss" not in flags(with_rom(imaged_hip(), *hip(("2025-03-01", 10))))


def test_the_clinic_sets_the_loss_fraction(tmp_path: Path) -> None:
    records = with_rom(imaged_hip(), *hip(("2025-02-01", 100), ("2025-03-01", 88)))
    strict = Protocol(flags=FlagRules(rom_loss_fraction=0.10))
    assert "rom_loss" in flags(records, strict)
    path = tmp_path / "clinic.toml"
    path.write_text("[flags]\nrom_loss_fraction = 0.1\n", encoding="utf-8")
    assert load_protocol(path).flags.rom_loss_fraction == 0.1
    assert load_protocol(path).fingerprint != Protocol().fingerprint


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", '"20%"'])
def test_a_loss_fraction_outside_zero_to_one_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "clinic.toml"
    path.write_text(f"[flags]\nrom_loss_fraction = {value}\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="flags.rom_loss_fraction must be a number between 0"):
        load_protocol(path)


def test_the_default_loss_fraction_is_twenty_percent() -> None:
    assert Protocol().flags.rom_loss_fraction == 0.20
