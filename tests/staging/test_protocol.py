"""The clinic protocol file: defaults, overrides and refusals that name the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tracker.errors import ProtocolError
from tracker.protocol import (
    Level,
    Protocol,
    UnitLimits,
    load_protocol,
    parse_protocol,
    settings_of,
    toml_text,
)

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "data" / "protocols" / "default.toml"


def write(tmp_path: Path, text: str, name: str = "clinic.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_protocol_file_holds_exactly_the_spec_defaults() -> None:
    assert load_protocol(DEFAULT_FILE) == Protocol()


def test_spec_defaults_are_the_published_thresholds() -> None:
    protocol = Protocol()
    assert protocol.activity.tolerance == 0.10
    assert protocol.readiness.scan_recency_days == 180
    assert protocol.readiness.alp_window_days == 90
    readiness = protocol.readiness
    assert (readiness.kim_high_initial, readiness.kim_high_final) == (5.0, 3.0)
    assert (readiness.kim_low_initial, readiness.kim_low_final) == (3.0, 2.0)
    assert protocol.waiting_months.of("spinal_cord_injury") == 12
    assert protocol.waiting_months.of("traumatic_brain_injury") == 18
    assert protocol.waiting_months.of("acquired_brain_injury") == 18
    for kind in ("burn", "amputation", "hip_arthroplasty", "other_surgery", "other"):
        assert protocol.waiting_months.of(kind) == 6
    assert protocol.waiting_months.of("fop") is None
    levels = protocol.readiness.levels
    assert [
        levels.of(name)
        for name in (
            "radiographic_maturity",
            "scan_stabilised",
            "alp_normal",
            "time_since_injury",
            "not_genetic_ho",
        )
    ] == ["required", "required", "required_if_known", "advisory", "required"]
    assert protocol.flags.progression_window_days == 180
    assert protocol.flags.new_site_gap_days == 30
    assert protocol.forecast.plateau_proximity == 0.05
    assert protocol.forecast.horizon_years == 5
    assert protocol.forecast.interval == 0.80


def test_clinic_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [activity]
        tolerance = 0.15
        [readiness]
        alp_window_days = 60
        kim_low_final = 2
        [readiness.levels]
        time_since_injury = "required"
        [waiting_months]
        traumatic_brain_injury = 12
        fop = 24
        """,
    )
    protocol = load_protocol(path)
    assert protocol.activity.tolerance == 0.15
    assert protocol.readiness.alp_window_days == 60
    assert protocol.readiness.kim_low_final == 2.0
    assert isinstance(protocol.readiness.kim_low_final, float)
    assert protocol.readiness.levels.time_since_injury is Level.required
    assert protocol.readiness.levels.alp_normal is Level.required_if_known
    assert protocol.waiting_months.traumatic_brain_injury == 12
    assert protocol.waiting_months.fop == 24
    assert protocol.readiness.scan_recency_days == 180
    assert protocol.flags == Protocol().flags


def test_empty_protocol_file_means_spec_defaults(tmp_path: Path) -> None:
    assert load_protocol(write(tmp_path, "")) == Protocol()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[readiness]\nalp_window_days = -3",
            "protocol file clinic.toml: readiness.alp_window_days must be a positive whole "
            "number of days, got -3",
        ),
        ("[readiness]\nscan_recency_days = 0", "readiness.scan_recency_days must be a positive"),
        ("[readiness]\nscan_recency_days = 180.5", "readiness.scan_recency_days"),
        ("[readiness]\nscan_recency_days = true", "readiness.scan_recency_days"),
        ("[readiness]\nscan_recency_days = '180'", "got '180'"),
        ("[flags]\nprogression_window_days = -1", "flags.progression_window_days"),
        (
            "[flags]\nprogression_window_days = 99999999",
            "flags.progression_window_days must be at most 36500 days, got 99999999",
        ),
        ("[waiting_months]\nburn = 5000", "waiting_months.burn must be at most 1200 months"),
        ("[forecast]\nbootstrap_samples = 1000000", "forecast.bootstrap_samples must be at most"),
        ("[readiness]\nkim_high_initial = inf", "readiness.kim_high_initial must be a positive"),
        ("[activity]\ntolerance = nan", "activity.tolerance must be a number between 0 and 1"),
        ("[flags]\nnew_site_gap_days = -30", "flags.new_site_gap_days"),
        ("[activity]\ntolerance = 1.0", "activity.tolerance must be a number between 0 and 1"),
        ("[activity]\ntolerance = 0", "activity.tolerance"),
        ("[activity]\ntolerance = -0.1", "activity.tolerance"),
        ("[forecast]\ninterval = 80", "forecast.interval"),
        ("[forecast]\nplateau_proximity = 1.5", "forecast.plateau_proximity"),
        ("[forecast]\nhorizon_years = 0", "forecast.horizon_years"),
        ("[forecast]\nbootstrap_samples = 5", "forecast.bootstrap_samples"),
        ("[readiness]\nkim_high_final = 0", "readiness.kim_high_final must be a positive number"),
        (
            "[readiness.levels]\nalp_normal = 'sometimes'",
            "readiness.levels.alp_normal must be one of required, required_if_known, "
            "advisory, got 'sometimes'",
        ),
        ("[waiting_months]\nburn = -6", "waiting_months.burn must be a whole number of months"),
        ("[waiting_months]\nsunburn = 6", "waiting_months.sunburn is not an injury kind"),
        ("[readiness]\nalp_windw_days = 60", "unknown key readiness.alp_windw_days"),
        (
            "[readiness.levels]\nbone_density = 'advisory'",
            "unknown key readiness.levels.bone_density",
        ),
        ("[reminders]\nescalate_after_days = 14", "unknown key reminders.escalate_after_days"),
        ("tolerance = 0.1", "unknown section [tolerance]"),
        ("activity = 0.1", "activity must be a table [activity], got 0.1"),
        ("[readiness]\nlevels = 'required'", "readiness.levels must be a table"),
    ],
)
def test_protocol_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        load_protocol(write(tmp_path, text))
    assert message in str(refused.value)
    assert str(refused.value).startswith("protocol file clinic.toml: ")


@pytest.mark.parametrize(
    "settings",
    [
        "kim_low_initial = 5.0",  # bands collapse
        "kim_low_initial = 6.0",  # bands swapped
        "kim_high_final = 1.5",  # high band stricter than low band
        "kim_low_final = 3.5",  # final above its band
        "kim_high_final = 5.5",  # final above its band
    ],
)
def test_kim_thresholds_out_of_order_are_refused(tmp_path: Path, settings: str) -> None:
    with pytest.raises(ProtocolError, match=r"readiness\.kim_\* thresholds must be ordered"):
        load_protocol(write(tmp_path, f"[readiness]\n{settings}"))


def test_protocol_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="protocol file clinic.toml: not valid TOML"):
        load_protocol(write(tmp_path, "[activity\ntolerance = 0.1"))


def test_missing_protocol_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="protocol file nowhere.toml: no such file"):
        load_protocol(tmp_path / "nowhere.toml")


# --- v2: the stage and alp defaults, and the protocol's fingerprint ---


def test_v2_defaults_are_the_published_thresholds() -> None:
    protocol = Protocol()
    assert protocol.stage.normal_uptake_ratio == 1.2
    limits = protocol.readiness.default_upper_limits
    assert (limits.of("alp", "U/L"), limits.of("alp", "ukat/L")) == (130.0, 2.17)
    assert limits.of("bone_alp", "ug/L") is None and limits.of("bone_alp", "U/L") is None
    assert limits.of("alp", "IU/L") is None and limits.of("alp", None) is None


def leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf field of the protocol's dataclass tree, found without settings_of."""
    found: list[tuple[str, ...]] = []
    for spec in fields(value):
        child = getattr(value, spec.name)
        if is_dataclass(child) and not isinstance(child, UnitLimits):
            found += leaves(child, (*path, spec.name))
        else:
            found.append((*path, spec.name))
    return found


def changed(value: Any) -> Any:
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, Level):
        return Level.advisory if value != Level.advisory else Level.required
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.01
    if value is None:
        return 6
    if isinstance(value, str):
        return "Europe/Paris" if value != "Europe/Paris" else "UTC"
    if isinstance(value, UnitLimits):
        raised = tuple((unit, limit + 0.5) for unit, limit in value.limits)
        return UnitLimits(raised or (("U/L", 1.0),))
    if isinstance(value, tuple):
        return value[:-1] if len(value) > 1 else (*value, value[0] * 2)
    raise AssertionError(f"no change for {value!r}")


def with_value(protocol: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(protocol, **{path[0]: value})
    inner = with_value(getattr(protocol, path[0]), path[1:], value)
    return replace(protocol, **{path[0]: inner})


def test_the_fingerprint_changes_when_and_only_when_a_value_changes() -> None:
    default = Protocol()
    paths = leaves(default)
    assert len(paths) == len(settings_of(default)) > 50  # every value takes part
    seen = {default.fingerprint: ("defaults",)}
    for path in paths:
        value = default
        for name in path:
            value = getattr(value, name)
        other = with_value(default, path, changed(value))
        assert other != default, path
        assert other.fingerprint not in seen, (path, seen.get(other.fingerprint))
        seen[other.fingerprint] = path
        assert with_value(other, path, value).fingerprint == default.fingerprint, path
    limits = default.readiness.default_upper_limits
    more = replace(limits, bone_alp=UnitLimits((("ug/L", 20.0),)))
    added = with_value(default, ("readiness", "default_upper_limits"), more)
    assert added.fingerprint not in seen


def test_the_fingerprint_ignores_key_order_spelling_and_comments(tmp_path: Path) -> None:
    default = Protocol()
    assert load_protocol(DEFAULT_FILE).fingerprint == default.fingerprint
    sections: dict[str, list[str]] = {}
    for setting in reversed(settings_of(default)):
        if setting.value is None:  # left unset (waiting_months.fop): leave it out
            continue
        value = toml_text(setting.value)
        if isinstance(setting.value, int) and not isinstance(setting.value, bool):
            value = f"{value}   "
        sections.setdefault(setting.section, []).append(f"  {setting.key}={value}")
    text = "\n\n".join(
        f"[ {section} ]\n" + "\n".join(lines) for section, lines in reversed(sections.items())
    )
    text = text.replace("kim_low_final=2.0", "kim_low_final = 2")  # 2 and 2.0: one value
    assert "kim_low_final = 2\n" in text or text.endswith("kim_low_final = 2")
    rewritten = load_protocol(write(tmp_path, text))
    assert rewritten == default and rewritten.fingerprint == default.fingerprint
    assert parse_protocol("# comment only\n\n").fingerprint == default.fingerprint


def test_the_fingerprint_is_the_same_on_every_machine() -> None:
    # Hash randomisation (and so set and dict order in a fresh interpreter) must not
    # matter: the fingerprint is a SHA-256 over one canonical text.
    program = (
        "from tracker.protocol import load_protocol; "
        f"print(load_protocol({str(DEFAULT_FILE)!r}).fingerprint)"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert printed == {Protocol().fingerprint}
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", Protocol().fingerprint)
