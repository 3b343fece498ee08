"""The clinic protocol: every number and rule model-spec.md marks *(protocol)*.

`Protocol()` holds the spec's defaults; a clinic may override any of them in a TOML
file read by `load_protocol`. The file mirrors the dataclasses below, one section
each: [stage], [activity], [readiness], [readiness.levels],
[readiness.default_upper_limits] (a table of unit = limit per analyte),
[waiting_months], [flags], [forecast], [reminders] (with one [reminders.<rule>]
table per reminder rule). Keys left out keep their default. Anything the tracker
does not know (a section, a key, an injury kind, a level, a reminder rule, a unit)
is refused with a `ProtocolError` that names the key, so a typo can never silently
fall back to a default. `Protocol.fingerprint` names the values in effect
(model-spec section 8).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tracker.errors import ProtocolError
from tracker.vocab import LAB_UNITS, Analyte, InjuryKind, ReminderRule


class Level(StrEnum):
    """How a readiness criterion weighs (model-spec section 5)."""

    required = "required"  # unmet -> not_ready; unknown -> insufficient_data
    required_if_known = "required_if_known"  # unmet -> not_ready; unknown ignored
    advisory = "advisory"  # reported only


class CriterionName(StrEnum):
    """The five readiness criteria, in the order of the spec's table (section 5)."""

    radiographic_maturity = "radiographic_maturity"
    scan_stabilised = "scan_stabilised"
    alp_normal = "alp_normal"
    time_since_injury = "time_since_injury"
    not_genetic_ho = "not_genetic_ho"


# --- checks: each returns whether a value is acceptable and says what is expected ---


@dataclass(frozen=True)
class _Check:
    expected: str
    accepts: Callable[[Any], bool]
    # a ceiling that keeps date arithmetic and memory sane; beyond it, say so plainly
    at_most: int | None = None
    unit: str = ""
    # turns the TOML value into the dataclass value (a list into a tuple, say)
    convert: Callable[[Any], Any] | None = None
    # reads a table value itself, given (where, dotted key, value, default), so that
    # its errors can name the key inside the table (readiness.default_upper_limits)
    read: Callable[[str, str, Any, Any], Any] | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


POSITIVE_DAYS = _Check(
    "a positive whole number of days", lambda v: _is_int(v) and v >= 1, 36_500, "days"
)
DAYS = _Check(
    "a whole number of days, zero or more", lambda v: _is_int(v) and v >= 0, 36_500, "days"
)
MONTHS = _Check(
    "a whole number of months, zero or more", lambda v: _is_int(v) and v >= 0, 1_200, "months"
)
POSITIVE_YEARS = _Check(
    "a positive whole number of years", lambda v: _is_int(v) and v >= 1, 100, "years"
)
FRACTION = _Check("a number between 0 and 1 (exclusive)", lambda v: _is_number(v) and 0 < v < 1)
RATIO = _Check("a positive number (an uptake ratio)", lambda v: _is_number(v) and v > 0)
# an uptake ratio of normal bone: 1 means as much uptake as the reference region
NORMAL_RATIO = _Check(
    "a number of at least 1.0 (an uptake ratio; 1 is as much uptake as normal bone)",
    lambda v: _is_number(v) and v >= 1,
)
SAMPLES = _Check(
    "a whole number of at least 10", lambda v: _is_int(v) and v >= 10, 10_000, "samples"
)


def _is_time_zone(value: Any) -> bool:
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_day_list(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(_is_int(v) and 1 <= v <= 36_500 for v in value)
        and list(value) == sorted(set(value))
    )


def _is_injury_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(v, str) and v in InjuryKind.__members__ for v in value
    )


SWITCH = _Check("true or false", lambda v: isinstance(v, bool))
TIME_ZONE = _Check('an IANA time zone name such as "Europe/London"', _is_time_zone)
HOUR = _Check("a whole hour of the day, 0 to 23", lambda v: _is_int(v) and 0 <= v <= 23)
MINUTES = _Check(
    "a whole number of minutes, zero or more", lambda v: _is_int(v) and v >= 0, 10_080, "minutes"
)
DAY_LIST = _Check(
    "a list of distinct positive whole numbers of days in ascending order, such as [42, 91]",
    _is_day_list,
    convert=tuple,
)
INJURY_KINDS = _Check(
    "a list of injury kinds from " + ", ".join(k.value for k in InjuryKind),
    _is_injury_list,
    convert=tuple,
)
LEVEL = _Check(
    "one of " + ", ".join(level.value for level in Level),
    lambda v: isinstance(v, str) and v in Level.__members__,
)


def _checked(default: Any, check: _Check) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class UnitLimits:
    """Default upper limits of one analyte, per unit: ((unit, limit), ...) sorted by
    unit. Written in the file as a table, `"U/L" = 130`."""

    limits: tuple[tuple[str, float], ...] = ()

    def of(self, unit: str | None) -> float | None:
        """The default upper limit for `unit`, or None when the protocol has none."""
        return dict(self.limits).get(str(unit)) if unit else None

    def as_dict(self) -> dict[str, float]:
        return dict(self.limits)


def _unit_limits_check(analyte: Analyte) -> _Check:
    units = LAB_UNITS[analyte]
    expected = (
        f"a table of {analyte.value} units ({', '.join(units)}), each with a positive upper "
        f'limit, such as {{"{units[0]}" = 130}}'
    )

    def read(where: str, dotted: str, value: Any, default: Any) -> UnitLimits:
        if not isinstance(value, Mapping):
            raise ProtocolError(f"{where}: {dotted} must be {expected}, got {value!r}")
        merged = default.as_dict() if isinstance(default, UnitLimits) else {}
        for unit, limit in value.items():
            key = f"{dotted}.{json.dumps(unit)}"
            if unit not in units:
                raise ProtocolError(
                    f"{where}: {key} is not a unit of {analyte.value}; allowed: {', '.join(units)}"
                )
            if not (_is_number(limit) and limit > 0):
                raise ProtocolError(
                    f"{where}: {key} must be a positive number (the upper limit in {unit}), "
                    f"got {limit!r}"
                )
            merged[unit] = float(limit)
        return UnitLimits(tuple(sorted(merged.items())))

    return _Check(expected, lambda v: isinstance(v, UnitLimits), read=read)


# --- the protocol, one dataclass per file section ---


@dataclass(frozen=True, slots=True)
class StageRules:
    """[stage]: model-spec section 3."""

    # a bone-scan measurement above this ratio shows early HO; at or below it, normal
    # bone (the unaffected side recorded for comparison)
    normal_uptake_ratio: float = _checked(1.2, NORMAL_RATIO)


@dataclass(frozen=True, slots=True)
class ActivityRules:
    """[activity]: model-spec section 4."""

    tolerance: float = _checked(0.10, FRACTION)  # relative change t between two scans


@dataclass(frozen=True, slots=True)
class CriterionLevels:
    """[readiness.levels]: the weight of each criterion (model-spec section 5)."""

    radiographic_maturity: Level = _checked(Level.required, LEVEL)
    scan_stabilised: Level = _checked(Level.required, LEVEL)
    alp_normal: Level = _checked(Level.required_if_known, LEVEL)
    time_since_injury: Level = _checked(Level.advisory, LEVEL)
    not_genetic_ho: Level = _checked(Level.required, LEVEL)

    def of(self, criterion: str) -> Level:
        return Level(getattr(self, CriterionName(criterion).value))


@dataclass(frozen=True, slots=True)
class DefaultUpperLimits:
    """[readiness.default_upper_limits]: model-spec section 5, alp_normal. A result
    without its own ref_high is judged against the limit for its analyte and unit
    here; with none, it is unknown. A clinic's table adds to (or changes) these units.
    """

    alp: UnitLimits = _checked(
        UnitLimits((("U/L", 130.0), ("ukat/L", 2.17))), _unit_limits_check(Analyte.alp)
    )
    bone_alp: UnitLimits = _checked(UnitLimits(), _unit_limits_check(Analyte.bone_alp))

    def of(self, analyte: str, unit: str | None) -> float | None:
        """The default upper limit for `analyte` in `unit`, or None when there is none."""
        if str(analyte) not in {spec.name for spec in fields(self)}:
            return None
        limits: UnitLimits = getattr(self, str(analyte))
        return limits.of(unit)

    def items(self) -> list[tuple[str, str, float]]:
        """Every (analyte, unit, limit), analytes in field order."""
        return [
            (spec.name, unit, limit)
            for spec in fields(self)
            for unit, limit in getattr(self, spec.name).limits
        ]


@dataclass(frozen=True, slots=True)
class ReadinessRules:
    """[readiness]: model-spec section 5.

    Kim thresholds (Kim, Wu & Kim 1992): an initial delayed-phase ratio above
    `kim_high_initial` has stabilised at or below `kim_high_final`; an initial ratio
    above `kim_low_initial` and up to `kim_high_initial` at or below `kim_low_final`.
    """

    scan_recency_days: int = _checked(180, POSITIVE_DAYS)
    kim_high_initial: float = _checked(5.0, RATIO)
    kim_high_final: float = _checked(3.0, RATIO)
    kim_low_initial: float = _checked(3.0, RATIO)
    kim_low_final: float = _checked(2.0, RATIO)
    alp_window_days: int = _checked(90, POSITIVE_DAYS)
    levels: CriterionLevels = field(default_factory=CriterionLevels)
    default_upper_limits: DefaultUpperLimits = field(default_factory=DefaultUpperLimits)


@dataclass(frozen=True, slots=True)
class WaitingMonths:
    """[waiting_months]: classic wait from injury to resection, per injury kind.

    Garland 1991 as quoted in clinical-reference.md; model-spec section 5. Genetic
    HO (fop) has no waiting time: resection is never advised (not_genetic_ho), so an
    fop injury is left out of time_since_injury unless a clinic sets one.
    """

    spinal_cord_injury: int = _checked(12, MONTHS)
    traumatic_brain_injury: int = _checked(18, MONTHS)
    acquired_brain_injury: int = _checked(18, MONTHS)
    burn: int = _checked(6, MONTHS)
    musculoskeletal_trauma: int = _checked(6, MONTHS)
    amputation: int = _checked(6, MONTHS)
    hip_arthroplasty: int = _checked(6, MONTHS)
    knee_arthroplasty: int = _checked(6, MONTHS)
    other_surgery: int = _checked(6, MONTHS)
    fop: int | None = _checked(None, MONTHS)
    other: int = _checked(6, MONTHS)

    def of(self, kind: str) -> int | None:
        months: int | None = getattr(self, InjuryKind(kind).value)
        return months


@dataclass(frozen=True, slots=True)
class FlagRules:
    """[flags]: model-spec section 6."""

    # a new site, grade increase or stage advance this long after a treatment course
    # ended still counts as progression after treatment
    progression_window_days: int = _checked(180, DAYS)
    # a site's first HO evidence more than this after the patient's first is new
    new_site_gap_days: int = _checked(30, DAYS)
    # v2: a movement's latest arc this fraction or more below its largest earlier arc
    # at the site is a loss of range of motion (rom_loss); reminders reuse it
    rom_loss_fraction: float = _checked(0.20, FRACTION)


@dataclass(frozen=True, slots=True)
class ForecastRules:
    """[forecast]: model-spec section 7."""

    plateau_proximity: float = _checked(0.05, FRACTION)  # "within 5% of a"
    horizon_years: int = _checked(5, POSITIVE_YEARS)  # later forecasts are null
    bootstrap_samples: int = _checked(200, SAMPLES)
    interval: float = _checked(0.80, FRACTION)  # central coverage of low..high


NEURO_INJURIES = ("spinal_cord_injury", "traumatic_brain_injury", "acquired_brain_injury")


@dataclass(frozen=True, slots=True)
class HipUltrasoundScreen:
    """[reminders.hip_ultrasound_screen]: hip ultrasound every `every_days` from
    `first_day` to `last_day` after a neurological injury, until HO is found; an
    ultrasound with a hip finding within `window_days` of the due date satisfies it."""

    enabled: bool = _checked(True, SWITCH)
    injuries: tuple[str, ...] = _checked(NEURO_INJURIES, INJURY_KINDS)
    first_day: int = _checked(21, POSITIVE_DAYS)
    every_days: int = _checked(21, POSITIVE_DAYS)
    last_day: int = _checked(168, POSITIVE_DAYS)
    window_days: int = _checked(7, DAYS)


@dataclass(frozen=True, slots=True)
class ConsiderProphylaxis:
    """[reminders.consider_prophylaxis]: `day` days after the injury, while no
    prophylaxis course has started."""

    enabled: bool = _checked(True, SWITCH)
    injuries: tuple[str, ...] = _checked(NEURO_INJURIES, INJURY_KINDS)
    day: int = _checked(14, DAYS)


@dataclass(frozen=True, slots=True)
class AfterDaysRule:
    """A reminder `after_days` after its reference date (see model-spec section 9)."""

    enabled: bool = _checked(True, SWITCH)
    after_days: int = _checked(42, POSITIVE_DAYS)


@dataclass(frozen=True, slots=True)
class AcknowledgedRule:
    """A reminder only an acknowledgement satisfies; it can only be switched off."""

    enabled: bool = _checked(True, SWITCH)


@dataclass(frozen=True, slots=True)
class PostResectionProphylaxis:
    """[reminders.post_resection_prophylaxis]: a course with intent post_resection, or
    radiotherapy, starting within `window_days` of the resection satisfies it."""

    enabled: bool = _checked(True, SWITCH)
    window_days: int = _checked(3, DAYS)


@dataclass(frozen=True, slots=True)
class RecurrenceRadiograph:
    """[reminders.recurrence_radiograph]: radiographs `days` after a resection."""

    enabled: bool = _checked(True, SWITCH)
    days: tuple[int, ...] = _checked((42, 91, 182, 365), DAY_LIST)


@dataclass(frozen=True, slots=True)
class SuspectedHoImaging:
    """[reminders.suspected_ho_imaging] (v2): swelling, warmth or erythema at a joint,
    or a loss of its range of motion (flags.rom_loss_fraction, as the rom_loss flag),
    in a patient with an injury other than fop dated at most `injury_window_days`
    before the examination, at a site with no mineralising evidence: image the site
    `after_days` after the examination; any finding or bone-scan measurement of the
    site dated on or after the examination satisfies it."""

    enabled: bool = _checked(True, SWITCH)
    injury_window_days: int = _checked(365, POSITIVE_DAYS)
    after_days: int = _checked(2, DAYS)


@dataclass(frozen=True, slots=True)
class DvtQueryHipUltrasound:
    """[reminders.dvt_query_hip_ultrasound] (v2): an ultrasound study for a DVT query,
    or a D-dimer above its ref_high, in a patient with one of these injuries and no
    HO evidence at the hips: image both hips with ultrasound on that day (HO mimics
    DVT and raises D-dimer); a hip ultrasound dated up to `window_days` after it (the
    same study counts) satisfies it."""

    enabled: bool = _checked(True, SWITCH)
    injuries: tuple[str, ...] = _checked(NEURO_INJURIES, INJURY_KINDS)
    window_days: int = _checked(7, DAYS)


@dataclass(frozen=True, slots=True)
class ReminderRules:
    """[reminders]: model-spec section 9, one nested table per rule.

    Reminders go out at `send_hour` on their due date in the clinic's `time_zone`;
    one delivered more than `late_after_minutes` after that is marked late. A sent
    reminder neither satisfied nor acknowledged `escalation_grace_days` after its
    due date is escalated once. Planning looks `horizon_days` ahead. A reminder due
    more than `lapse_after_days` before the day of the plan that first creates it is
    stored lapsed (v2): kept for the adherence record, never delivered.
    """

    time_zone: str = _checked("Europe/London", TIME_ZONE)
    send_hour: int = _checked(8, HOUR)
    late_after_minutes: int = _checked(60, MINUTES)
    escalation_grace_days: int = _checked(14, DAYS)
    horizon_days: int = _checked(60, DAYS)
    lapse_after_days: int = _checked(30, DAYS)
    hip_ultrasound_screen: HipUltrasoundScreen = field(default_factory=HipUltrasoundScreen)
    consider_prophylaxis: ConsiderProphylaxis = field(default_factory=ConsiderProphylaxis)
    monitoring_radiograph: AfterDaysRule = field(default_factory=lambda: AfterDaysRule())
    maturity_bone_scan: AfterDaysRule = field(default_factory=lambda: AfterDaysRule(after_days=90))
    course_review: AcknowledgedRule = field(default_factory=AcknowledgedRule)
    post_course_radiograph: AfterDaysRule = field(
        default_factory=lambda: AfterDaysRule(after_days=56)
    )
    readiness_review: AcknowledgedRule = field(default_factory=AcknowledgedRule)
    post_resection_prophylaxis: PostResectionProphylaxis = field(
        default_factory=PostResectionProphylaxis
    )
    recurrence_radiograph: RecurrenceRadiograph = field(default_factory=RecurrenceRadiograph)
    suspected_ho_imaging: SuspectedHoImaging = field(default_factory=SuspectedHoImaging)
    dvt_query_hip_ultrasound: DvtQueryHipUltrasound = field(default_factory=DvtQueryHipUltrasound)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


REMINDER_RULES = tuple(rule.value for rule in ReminderRule)


@dataclass(frozen=True, slots=True)
class Protocol:
    """Every *(protocol)* threshold of model-spec sections 3-7 and 9, with its defaults."""

    stage: StageRules = field(default_factory=StageRules)
    activity: ActivityRules = field(default_factory=ActivityRules)
    readiness: ReadinessRules = field(default_factory=ReadinessRules)
    waiting_months: WaitingMonths = field(default_factory=WaitingMonths)
    flags: FlagRules = field(default_factory=FlagRules)
    forecast: ForecastRules = field(default_factory=ForecastRules)
    reminders: ReminderRules = field(default_factory=ReminderRules)

    @property
    def fingerprint(self) -> str:
        """Which protocol this is (model-spec section 8): "sha256:" and 16 hex digits of
        a SHA-256 over every value, so the same values give the same fingerprint on
        every machine and any changed value gives another (see `fingerprint_of`)."""
        return fingerprint_of(self)


# --- loading ---

# Top-level sections a protocol file may hold.
_SECTIONS: dict[str, type] = {
    "stage": StageRules,
    "activity": ActivityRules,
    "readiness": ReadinessRules,
    "waiting_months": WaitingMonths,
    "flags": FlagRules,
    "forecast": ForecastRules,
    "reminders": ReminderRules,
}


def load_protocol(path: str | Path) -> Protocol:
    """Read a clinic protocol file; keys it leaves out keep the spec's defaults.

    Raises ProtocolError naming the file and the key for anything unreadable,
    unknown, of the wrong type or out of range.
    """
    path = Path(path)
    where = f"protocol file {path.name}"
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ProtocolError(f"{where}: no such file ({path})") from None
    except OSError as error:
        raise ProtocolError(f"{where}: cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ProtocolError(f"{where}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"{where}: not valid UTF-8 text") from None
    return _protocol_of(where, document)


def parse_protocol(text: str, *, where: str = "protocol text") -> Protocol:
    """A protocol from TOML text (say, pasted to be checked), refused as `load_protocol`
    refuses a file: a ProtocolError starting with `where` and naming the key."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProtocolError(f"{where}: not valid TOML ({error})") from None
    return _protocol_of(where, document)


def _protocol_of(where: str, document: dict[str, Any]) -> Protocol:
    _refuse_unknown(where, document, _SECTIONS, prefix="", kind="section")
    sections = {
        name: _read_section(where, name, document[name], _SECTIONS[name]())
        for name in _SECTIONS
        if name in document
    }
    protocol = replace(Protocol(), **sections)
    _check_kim_order(where, protocol.readiness)
    _check_normal_uptake(where, protocol)
    _check_screening_days(where, protocol.reminders.hip_ultrasound_screen)
    return protocol


def _read_section(where: str, key: str, table: Any, defaults: Any) -> Any:
    if not isinstance(table, Mapping):
        raise ProtocolError(f"{where}: {key} must be a table [{key}], got {table!r}")
    known = {f.name: f for f in fields(defaults)}
    _refuse_unknown(where, table, known, prefix=f"{key}.", kind="key")
    changes: dict[str, Any] = {}
    for name, value in table.items():
        spec = known[name]
        dotted = f"{key}.{name}"
        check: _Check | None = spec.metadata.get("check")
        if check is None:  # a nested section such as [readiness.levels]
            changes[name] = _read_section(where, dotted, value, getattr(defaults, name))
            continue
        if check.read is not None:  # a table value that checks its own keys
            changes[name] = check.read(where, dotted, value, getattr(defaults, name))
            continue
        if not check.accepts(value):
            raise ProtocolError(f"{where}: {dotted} must be {check.expected}, got {value!r}")
        if check.at_most is not None and _is_number(value) and value > check.at_most:
            raise ProtocolError(
                f"{where}: {dotted} must be at most {check.at_most} {check.unit}, got {value!r}"
            )
        if check is LEVEL:
            value = Level(value)
        elif check in (FRACTION, RATIO):
            value = float(value)
        elif check.convert is not None:
            value = check.convert(value)
        changes[name] = value
    return replace(defaults, **changes)


def _refuse_unknown(
    where: str, table: Mapping[str, Any], known: Mapping[str, Any], prefix: str, kind: str
) -> None:
    for name in table:
        if name not in known:
            if prefix == "waiting_months.":
                allowed = "injury kinds " + ", ".join(k.value for k in InjuryKind)
                raise ProtocolError(
                    f"{where}: {prefix}{name} is not an injury kind; allowed: {allowed}"
                )
            if prefix == "reminders." and isinstance(table[name], Mapping):
                allowed = ", ".join(REMINDER_RULES)
                raise ProtocolError(
                    f"{where}: [reminders.{name}] is not a reminder rule; allowed: {allowed}"
                )
            label = f"[{name}]" if kind == "section" else f"{prefix}{name}"
            allowed = ", ".join(known)
            raise ProtocolError(f"{where}: unknown {kind} {label}; allowed: {allowed}")


def _check_kim_order(where: str, rules: ReadinessRules) -> None:
    # The bands must not overlap and each final threshold must lie below the band it
    # closes, as in Kim's paper (3.0 < initial <= 5.0 -> 2.0; initial > 5.0 -> 3.0).
    ordered = (
        rules.kim_low_final < rules.kim_low_initial < rules.kim_high_initial
        and rules.kim_low_final <= rules.kim_high_final < rules.kim_high_initial
    )
    if not ordered:
        raise ProtocolError(
            f"{where}: readiness.kim_* thresholds must be ordered "
            "kim_low_final < kim_low_initial < kim_high_initial and "
            "kim_low_final <= kim_high_final < kim_high_initial, got "
            f"kim_low_final={rules.kim_low_final}, kim_low_initial={rules.kim_low_initial}, "
            f"kim_high_final={rules.kim_high_final}, kim_high_initial={rules.kim_high_initial}"
        )


def _check_normal_uptake(where: str, protocol: Protocol) -> None:
    # A ratio the Kim rule calls stabilised is still HO uptake, never normal bone.
    normal, final = protocol.stage.normal_uptake_ratio, protocol.readiness.kim_low_final
    if not normal < final:
        raise ProtocolError(
            f"{where}: stage.normal_uptake_ratio must be below readiness.kim_low_final "
            f"({final}), got {normal}"
        )


def _check_screening_days(where: str, rule: HipUltrasoundScreen) -> None:
    if rule.first_day > rule.last_day:
        raise ProtocolError(
            f"{where}: reminders.hip_ultrasound_screen.first_day ({rule.first_day}) must not "
            f"be after reminders.hip_ultrasound_screen.last_day ({rule.last_day})"
        )


# --- showing a protocol ---


@dataclass(frozen=True)
class Setting:
    """One protocol value for display: `section.key`, its value, what it must be."""

    section: str  # as in the file: "readiness.levels", "reminders.course_review"
    key: str
    value: Any
    expected: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"


def settings_of(protocol: Protocol) -> list[Setting]:
    """Every value of `protocol`, section by section in file order (nested tables such
    as [readiness.levels] follow their parent's own keys)."""
    out: list[Setting] = []
    for name in _SECTIONS:
        out += _settings(name, getattr(protocol, name))
    return out


def _settings(section: str, values: Any) -> list[Setting]:
    own: list[Setting] = []
    nested: list[Setting] = []
    for spec in fields(values):
        value = getattr(values, spec.name)
        check: _Check | None = spec.metadata.get("check")
        if check is None:
            nested += _settings(f"{section}.{spec.name}", value)
        else:
            own.append(Setting(section, spec.name, value, check.expected))
    return own + nested


def toml_text(value: Any) -> str:
    """A protocol value as it would be written in the file (None: left unset)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # Level is a str too
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, UnitLimits):
        pairs = (f"{json.dumps(unit)} = {toml_text(limit)}" for unit, limit in value.limits)
        return "{" + ", ".join(pairs) + "}"
    return str(value)


def _canonical(value: Any) -> Any:
    """A protocol value in a form JSON writes the same way everywhere: numbers as
    floats (2 and 2.0 are one value), tuples as lists, limits as a unit table."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # Level is a str too
        return str(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, UnitLimits):
        return {unit: float(limit) for unit, limit in value.limits}
    raise TypeError(f"no canonical form for protocol value {value!r}")


_FINGERPRINTS: dict[Protocol, str] = {}


def fingerprint_of(protocol: Protocol) -> str:
    """`Protocol.fingerprint`: a SHA-256 over the canonical JSON of every value keyed
    by its dotted name (sorted keys, no spaces, ASCII), so neither the order, the
    spelling (2 or 2.0) nor the comments of a file can change it."""
    known = _FINGERPRINTS.get(protocol)
    if known is not None:
        return known
    values = {s.dotted: _canonical(s.value) for s in settings_of(protocol)}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    digest = "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
    if len(_FINGERPRINTS) < 64:
        _FINGERPRINTS[protocol] = digest
    return digest


def differences(current: Protocol, proposed: Protocol) -> list[tuple[str, Any, Any]]:
    """(section.key, current value, proposed value) for every value that differs."""
    now = {s.dotted: s.value for s in settings_of(current)}
    return [
        (s.dotted, now[s.dotted], s.value)
        for s in settings_of(proposed)
        if now[s.dotted] != s.value
    ]
