"""The reminder rules of model-spec section 9: records in, wanted reminders out.

Pure: nothing here reads a database or a clock. The rules work column-wise on the
cohort frames of `tracker.store.loaders.read_cohort` (one patient or a hundred
thousand, the same code), plus one row per site with its stage, readiness and the
day it became ready (from `tracker.staging`). `for_patient` wraps them for one
patient's `PatientRecords` and assessment, so the planner, the pre-send re-check
and the tests can never disagree.

Two questions per rule:
- `wanted`: which reminders the records call for on `as_of`, due up to the horizon
  (the rule's "when it applies" and "due" columns);
- `satisfied`: whether the record that closes a given reminder is logged (its
  "satisfied by" column). Acknowledgement-only rules are never satisfied by a record.

Records dated after `as_of` never count (model-spec section 3). Dates are handled
as whole day numbers (days since 1970-01-01) so no datetime resolution can differ.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from tracker import labels
from tracker.protocol import Protocol, ReminderRules
from tracker.staging.activity import RATIO_SLACK, classify_activity, delayed_series
from tracker.staging.assess import assess_patient
from tracker.staging.flags import ROM_SLACK
from tracker.staging.readiness import Readiness, readiness_verdict, site_criteria
from tracker.staging.records import PatientRecords, in_canonical_order, site_evidence
from tracker.staging.stage import site_stage
from tracker.vocab import (
    CORTEX_MODALITIES,
    Calcification,
    Cortex,
    InjuryKind,
    ReminderRule,
    Side,
    Site,
)

EPOCH = date(1970, 1, 1)
KEY = ["mrn", "rule", "site", "side", "due"]
WANTED_COLUMNS = [*KEY, "detail"]
RADIOGRAPHIC = ("radiograph", "ct")
R = ReminderRule


def day_number(value: date) -> int:
    return (value - EPOCH).days


def from_day_number(value: float) -> date:
    return EPOCH + timedelta(days=int(value))


def days(series: pd.Series) -> np.ndarray:
    """Whole days since 1970-01-01 as floats, NaN where the date is missing."""
    values = pd.to_datetime(series).to_numpy(dtype="datetime64[D]")
    out = values.astype("int64").astype("float64")
    out[np.isnat(values)] = np.nan
    return out


@dataclass(frozen=True)
class RuleInputs:
    """What the rules read: the cohort frames (see `CohortFrames`) and the sites.

    `sites`: mrn, site, side, stage, readiness, ready_since (a date, or None when
    the site is not ready) for every site with evidence on as_of. None while the sites
    are not staged yet: the rules that read records alone (`BY_RECORDS`) can already
    answer, and the cut takes the sites later (`Cut.with_sites`).
    """

    injuries: pd.DataFrame
    findings: pd.DataFrame
    bone_scans: pd.DataFrame
    courses: pd.DataFrame
    procedures: pd.DataFrame
    sites: pd.DataFrame | None = None
    # v2, the bedside rules (model-spec section 9): None when not read
    exams: pd.DataFrame | None = None  # mrn, date, site, side, swelling, warmth, erythema
    range_of_motion: pd.DataFrame | None = None  # mrn, date, site, side, movement, degrees
    dvt_studies: pd.DataFrame | None = None  # mrn, date: ultrasound studies for a DVT query
    d_dimers: pd.DataFrame | None = None  # mrn, date, value, ref_high, unit


SITES = [site.value for site in Site]
SIDES = [side.value for side in Side]
NO_SITE = -1
_SITE_OF = np.array([*SITES, None], dtype=object)
_SIDE_OF = np.array([*SIDES, None], dtype=object)
RULES = [rule.value for rule in ReminderRule]
_RULE_OF = np.array(RULES, dtype=object)


def vocabulary_codes(values: pd.Series | np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Each value's position in `vocabulary` (-1 when missing or unknown)."""
    codes, uniques = pd.factorize(values)
    positions = {value: i for i, value in enumerate(vocabulary)}
    lookup = np.array([positions.get(str(u), -1) for u in uniques] + [-1], dtype="int64")
    return lookup[codes]


def site_codes(site: pd.Series, side: pd.Series) -> np.ndarray:
    """(site, side) as one small integer (NO_SITE when there is none)."""
    s, d = vocabulary_codes(site, SITES), vocabulary_codes(side, SIDES)
    return np.where((s >= 0) & (d >= 0), s * len(SIDES) + d, NO_SITE)


def _place(pid: np.ndarray, site: np.ndarray) -> np.ndarray:
    """A patient's site as one integer key (NO_SITE stays negative)."""
    return np.where(site >= 0, pid * 64 + site, NO_SITE)


@dataclass(frozen=True)
class Cut:
    """The inputs cut at as_of, as integer-keyed frames: `pid` numbers a patient
    (`mrns[pid]`), `place` a patient's site (pid * 64 + site code), `day` a date.
    Worked out once per plan and shared by `wanted` and `satisfied`."""

    mrns: pd.Index
    injuries: pd.DataFrame  # pid, kind, day
    findings: pd.DataFrame  # pid, place, day, radiographic, hip_ultrasound, ho
    scans: pd.DataFrame  # pid, place, day, delayed, ho
    courses: pd.DataFrame  # pid, agent, intent, start, end, planned_end
    resections: pd.DataFrame  # pid, place, day
    sites: pd.DataFrame | None  # pid, place, stage, readiness, ready_since (None: not staged)
    as_of: int
    horizon: int
    # v2, the bedside rules: see `bedside_cut`
    exams: pd.DataFrame | None = None  # pid, place, day, signs (words, "" for none)
    motion: pd.DataFrame | None = None  # pid, place, day, movement, degrees
    dvt_queries: pd.DataFrame | None = None  # pid, day, why (words)
    loss_fraction: float = 0.20

    def pids(self, mrn: pd.Series) -> np.ndarray:
        return np.asarray(self.mrns.get_indexer(pd.Index(np.asarray(mrn, dtype=object))), "int64")

    def with_sites(self, sites: pd.DataFrame) -> Cut:
        """This cut with the staged sites (see `RuleInputs.sites`). A site exists only
        through its records, so every site's patient is already numbered."""
        pid = self.pids(sites["mrn"])
        if (pid < 0).any():
            unknown = sorted(set(np.asarray(sites["mrn"], dtype=object)[pid < 0]))[:5]
            raise ValueError(f"sites of patients without records: {', '.join(unknown)}")
        keyed = pd.DataFrame(
            {
                "pid": pid,
                "place": _place(pid, site_codes(sites["site"], sites["side"])),
                "stage": np.asarray(sites["stage"], dtype=object),
                "readiness": np.asarray(sites["readiness"], dtype=object),
                "ready_since": days(sites["ready_since"]),
            }
        )
        return replace(self, sites=keyed)

    @property
    def staged(self) -> pd.DataFrame:
        if self.sites is None:
            raise ValueError("the sites are not staged yet (Cut.with_sites)")
        return self.sites

    @cached_property
    def first_ho(self) -> pd.Series:
        """First day of HO evidence per pid: a finding at stage early or beyond, or a
        bone-scan measurement whose ratio is above normal uptake (model-spec section 3;
        v2: the unaffected side recorded for comparison is not HO evidence)."""
        findings = self.findings[self.findings["ho"].to_numpy(bool)]
        scans = self.scans[self.scans["ho"].to_numpy(bool)]
        both = pd.concat([findings[["pid", "day"]], scans[["pid", "day"]]])
        return both.groupby("pid")["day"].min()

    @cached_property
    def ho_places(self) -> np.ndarray:
        """Every site (place) with HO evidence (findings and scans alike, as `first_ho`)."""
        return np.union1d(
            self.findings.loc[self.findings["ho"].to_numpy(bool), "place"].to_numpy(),
            self.scans.loc[self.scans["ho"].to_numpy(bool), "place"].to_numpy(),
        )

    @cached_property
    def fop(self) -> np.ndarray:
        """The pids of patients with genetic HO (an injury of kind fop on or before
        as_of): never a resection-timing reminder (model-spec section 9, v2)."""
        kinds = self.injuries["kind"].to_numpy(object)
        return np.unique(self.injuries["pid"].to_numpy()[kinds == InjuryKind.fop.value])

    @cached_property
    def counted(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Findings and bone scans that count for their site: after its latest resection."""
        latest = self.resections.groupby("place")["day"].max()

        def after(frame: pd.DataFrame) -> pd.DataFrame:
            resected = latest.reindex(frame["place"].to_numpy()).to_numpy()
            return frame[np.isnan(resected) | (frame["day"].to_numpy() > resected)]

        return after(self.findings), after(self.scans)

    @cached_property
    def first_evidence(self) -> pd.Series:
        findings, scans = self.counted
        both = pd.concat([findings[["place", "day"]], scans[["place", "day"]]])
        return both.groupby("place")["day"].min()

    def first_ho_day(self, mrn: str) -> int | None:
        pid = self.mrns.get_indexer(pd.Index([mrn]))[0]
        value = self.first_ho.get(pid)
        return None if value is None or np.isnan(value) else int(value)


def cut_at(inputs: RuleInputs, as_of: date, protocol: Protocol) -> Cut:
    today = day_number(as_of)
    frames = [
        inputs.injuries,
        inputs.findings,
        inputs.bone_scans,
        inputs.courses,
        inputs.procedures,
    ]
    # one number per patient: factorising every mrn column at once is a hash pass (on
    # the columns as read: Arrow strings are encoded without making a Python string each)
    codes, uniques = pd.factorize(pd.concat([f["mrn"] for f in frames], ignore_index=True))
    mrns = pd.Index(np.asarray(uniques, dtype=object))
    starts = np.cumsum([0, *[len(f) for f in frames]])
    pids = {id(f): codes[starts[i] : starts[i + 1]].astype("int64") for i, f in enumerate(frames)}

    def keyed(frame: pd.DataFrame, column: str | None = "date", site: bool = False) -> pd.DataFrame:
        pid = pids[id(frame)]
        out = pd.DataFrame({"pid": pid})
        if column is not None:
            out["day"] = days(frame[column])
        if site:
            out["place"] = _place(pid, site_codes(frame["site"], frame["side"]))
        return out

    findings = keyed(inputs.findings, site=True)
    modality = inputs.findings["modality"]
    findings["radiographic"] = modality.isin(RADIOGRAPHIC).to_numpy(bool)
    findings["hip_ultrasound"] = (
        (modality == "ultrasound") & (inputs.findings["site"] == "hip")
    ).to_numpy(bool)
    rank = _finding_rank(inputs.findings)
    findings["ho"] = rank >= 1
    findings["mineral"] = rank >= 2
    scans = keyed(inputs.bone_scans, site=True)
    scans["delayed"] = (inputs.bone_scans["phase"] == "delayed").to_numpy(bool)
    scans["ho"] = scan_shows_ho(inputs.bone_scans, protocol)
    injuries = keyed(inputs.injuries)
    injuries["kind"] = np.asarray(inputs.injuries["kind"], dtype=object)
    courses = keyed(inputs.courses, "start_date")
    courses = courses.rename(columns={"day": "start"})
    for name in ("agent", "intent"):
        courses[name] = np.asarray(inputs.courses[name], dtype=object)
    end = days(inputs.courses["end_date"])
    weeks = pd.to_numeric(inputs.courses["planned_weeks"], errors="coerce").to_numpy("float64")
    courses["end"] = end
    courses["planned_end"] = np.where(
        np.isnan(end), courses["start"].to_numpy() + np.round(weeks * 7), end
    )
    procedures = keyed(inputs.procedures, site=True)
    procedures = procedures[(inputs.procedures["kind"] == "resection").to_numpy(bool)]

    def upto(frame: pd.DataFrame, column: str = "day") -> pd.DataFrame:
        return frame[frame[column].to_numpy() <= today].reset_index(drop=True)

    cut = Cut(
        mrns=mrns,
        injuries=upto(injuries),
        findings=upto(findings),
        scans=upto(scans),
        courses=upto(courses, "start"),
        resections=upto(procedures),
        sites=None,
        as_of=today,
        horizon=today + protocol.reminders.horizon_days,
    )
    cut = bedside_cut(cut, inputs, protocol)
    return cut if inputs.sites is None else cut.with_sites(inputs.sites)


def scan_shows_ho(scans: pd.DataFrame, protocol: Protocol) -> np.ndarray:
    """Whether each bone-scan measurement shows HO (stage early): its ratio is above
    `normal_uptake_ratio` beyond floating-point noise, as `staging.stage.scan_stage`
    decides (model-spec section 3, v2). At or below it, or without a ratio, it is
    normal bone: the unaffected side recorded for comparison makes no HO evidence."""
    ratio = pd.to_numeric(scans["ratio"], errors="coerce").to_numpy("float64", na_value=np.nan)
    shows: np.ndarray = ratio > protocol.stage.normal_uptake_ratio + RATIO_SLACK  # NaN: False
    return shows


def _finding_rank(findings: pd.DataFrame) -> np.ndarray:
    """The stage each finding shows as a rank (model-spec section 3): 0 none, 1 early,
    2 mineralising, 3 mature. Only `rank >= 1` (HO evidence) matters here."""
    cortex = findings["cortex"]
    calcification = findings["calcification"]
    brooker = pd.to_numeric(findings["brooker"], errors="coerce").to_numpy(float, na_value=np.nan)
    mature = (cortex == Cortex.well_defined) & findings["modality"].isin(list(CORTEX_MODALITIES))
    mineralising = (
        (calcification.notna() & (calcification != Calcification.none)).to_numpy(bool)
        | (brooker >= 1)
        | findings["della_valle"].isin(["b", "c"]).to_numpy(bool)
        | cortex.isin([Cortex.partial, Cortex.well_defined]).to_numpy(bool)
    )
    early = findings["ho"].isin(["present", "indeterminate"]) | (findings["uptake"] == "increased")
    return np.select(
        [mature.to_numpy(bool), mineralising, early.to_numpy(bool)], [3, 2, 1], default=0
    )


def _iso(day_values: np.ndarray | pd.Series) -> np.ndarray:
    values = np.asarray(day_values, dtype="float64")
    missing = np.isnan(values)
    text = np.datetime_as_string(np.where(missing, 0, values).astype("datetime64[D]"), unit="D")
    return np.where(missing, "", text).astype(object)


def _day_words(day_values: np.ndarray | pd.Series) -> np.ndarray:
    """Day numbers as a person writes them (`labels.day`: "10 Feb 2025"), each distinct
    day once; "" where missing."""
    codes, uniques = pd.factorize(np.asarray(day_values, dtype="float64"))
    dates = pd.to_datetime(pd.Series(uniques, dtype="float64"), unit="D").dt.date
    words = np.array([labels.day(d) for d in dates] + [""], dtype=object)
    return words[codes]


def _words(values: pd.Series | np.ndarray) -> np.ndarray:
    """Vocabulary values as words (spinal_cord_injury -> spinal cord injury)."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    words = np.array([str(u).replace("_", " ") for u in uniques] + [""], dtype=object)
    return words[codes]


Detail = Callable[[np.ndarray], np.ndarray]
"""The detail texts of some of a rule's rows, given their positions: written only for
the rows that need words (the new ones), not for every key compared."""


def _frame(
    pid: np.ndarray,
    rule: str,
    due: np.ndarray,
    detail: Detail,
    place: np.ndarray | None = None,
) -> pd.DataFrame:
    n = len(pid)
    frame = pd.DataFrame(
        {
            "pid": np.asarray(pid, dtype="int64"),
            "place": np.full(n, NO_SITE, dtype="int64")
            if place is None
            else np.asarray(place, dtype="int64"),
            "rule": np.full(n, RULES.index(rule), dtype="int64"),
            "due": np.asarray(due, dtype="float64"),
            "src": np.arange(n, dtype="int64"),
        }
    )
    frame.attrs["detail"] = detail
    return frame


# --- wanted ---------------------------------------------------------------------------


def wanted(
    inputs: RuleInputs, as_of: date, protocol: Protocol, cut: Cut | None = None
) -> pd.DataFrame:
    """Every reminder the records call for on `as_of`, due up to as_of + horizon_days.

    Columns pid (the patient's number in the cut), mrn, rule, site, side (None for
    patient-level rules), due (day number), detail (why, in words). One row per
    natural key.
    """
    keys, details = wanted_keys(inputs, as_of, protocol, cut)
    return with_details(keys, details)


def with_details(keys: pd.DataFrame, details: list[Detail]) -> pd.DataFrame:
    """Rows of `wanted_keys` with their detail texts (and without part, src)."""
    text = np.empty(len(keys), dtype=object)
    part, src = keys["part"].to_numpy(), keys["src"].to_numpy()
    for number, detail in enumerate(details):
        here = part == number
        if here.any():
            text[here] = np.asarray(detail(src[here]), dtype=object)
    return keys.drop(columns=["part", "src"]).assign(
        detail=pd.Series(text, index=keys.index, dtype=object)
    )


def wanted_keys(
    inputs: RuleInputs,
    as_of: date,
    protocol: Protocol,
    cut: Cut | None = None,
    *,
    only: Collection[ReminderRule] | None = None,
) -> tuple[pd.DataFrame, list[Detail]]:
    """`wanted` without the words: the natural keys, plus (part, src) telling
    `with_details` how to write the detail of any of the rows.

    `only`: these rules alone (default: every rule), so a caller can ask the rules
    that read records alone (`BY_RECORDS`) before the sites are staged."""
    rules = protocol.reminders
    cut = cut or cut_at(inputs, as_of, protocol)
    parts = [build(cut, rules) for rule, build in _BUILDERS.items() if only is None or rule in only]
    parts = [p for p in parts if len(p)]
    details: list[Detail] = [p.attrs["detail"] for p in parts]
    if not parts:
        empty = {c: pd.Series(dtype=object) for c in [*KEY, "pid", "part", "src"]}
        return pd.DataFrame(empty).astype({"due": "float64", "part": "int64", "src": "int64"}), []
    for number, part in enumerate(parts):
        part["part"] = number
    out = pd.concat(parts, ignore_index=True)
    out = out[out["due"].to_numpy() <= cut.horizon]
    # keep one row per natural key (two injuries can ask for the same day)
    out = out.sort_values(
        ["pid", "rule", "place", "due"], kind="stable"
    )  # stable: first rule row wins
    out = out[~out.duplicated(["pid", "rule", "place", "due"])]
    pid, place = out["pid"].to_numpy(), out["place"].to_numpy()
    code = np.where(place >= 0, place % 64, len(SITES) * len(SIDES))
    site_index = np.where(place >= 0, code // len(SIDES), len(SITES))
    side_index = np.where(place >= 0, code % len(SIDES), len(SIDES))
    return pd.DataFrame(
        {
            "pid": pid,
            # object columns: no site stays None (pandas would make it NaN), and no
            # text is copied into Arrow strings and back on the way to the database
            "mrn": pd.Series(cut.mrns.to_numpy(dtype=object)[pid], dtype=object),
            "rule": pd.Series(_RULE_OF[out["rule"].to_numpy()], dtype=object),
            "site": pd.Series(_SITE_OF[site_index], dtype=object),
            "side": pd.Series(_SIDE_OF[side_index], dtype=object),
            "due": out["due"].to_numpy(),
            "part": out["part"].to_numpy(),
            "src": out["src"].to_numpy(),
        }
    ), details


BY_STAGE = frozenset({R.monitoring_radiograph, R.maturity_bone_scan})
"""The rules that read a site's stage and readiness (`Cut.staged`) but not the day it
became ready; `readiness_review` reads that day too. The others read the records
alone (`BY_RECORDS`). No rule's `satisfied` check reads the sites."""
BY_RECORDS = frozenset(ReminderRule) - BY_STAGE - {R.readiness_review}


def _screens(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.hip_ultrasound_screen
    if not rule.enabled:
        return pd.DataFrame()
    injuries = cut.injuries[cut.injuries["kind"].isin(rule.injuries).to_numpy(bool)]
    injuries = injuries[~np.isin(injuries["pid"].to_numpy(), cut.first_ho.index.to_numpy())]
    offsets = np.arange(rule.first_day, rule.last_day + 1, rule.every_days)
    if injuries.empty or not len(offsets):
        return pd.DataFrame()
    offset = np.tile(offsets, len(injuries))
    repeat = np.repeat(np.arange(len(injuries)), len(offsets))
    day = injuries["day"].to_numpy()[repeat]
    kinds = injuries["kind"].to_numpy()[repeat]

    def detail(i: np.ndarray) -> np.ndarray:
        words = _words(kinds[i]) + " on " + _iso(day[i]) + ": day "
        return words + offset[i].astype(str).astype(object) + " hip ultrasound"

    return _frame(injuries["pid"].to_numpy()[repeat], R.hip_ultrasound_screen, day + offset, detail)


def _prophylaxis(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.consider_prophylaxis
    if not rule.enabled:
        return pd.DataFrame()
    covered = cut.courses.loc[cut.courses["intent"] == "prophylaxis", "pid"].to_numpy()
    injuries = cut.injuries[
        cut.injuries["kind"].isin(rule.injuries).to_numpy(bool)
        & ~np.isin(cut.injuries["pid"].to_numpy(), covered)
    ]
    day = injuries["day"].to_numpy()
    kinds = injuries["kind"].to_numpy()

    def detail(i: np.ndarray) -> np.ndarray:
        return _words(kinds[i]) + " on " + _iso(day[i])

    return _frame(injuries["pid"].to_numpy(), R.consider_prophylaxis, day + rule.day, detail)


def _site_base(
    cut: Cut, stages: Sequence[str], reference: pd.DataFrame, readiness_not: str | None = None
) -> pd.DataFrame:
    """Sites at one of `stages` with their reference day: the latest `reference` record
    at the site, else the site's first evidence (after its latest resection)."""
    staged = cut.staged
    mask = staged["stage"].isin(list(stages)).to_numpy(bool)
    if readiness_not is not None:
        mask = mask & (staged["readiness"] != readiness_not).to_numpy(bool)
    sites = staged[mask & (staged["place"].to_numpy() >= 0)]
    place = sites["place"].to_numpy()
    latest = reference.groupby("place")["day"].max().reindex(place).to_numpy()
    first = cut.first_evidence.reindex(place).to_numpy()
    base = np.where(np.isnan(latest), first, latest)
    out = pd.DataFrame(
        {
            "pid": sites["pid"].to_numpy(),
            "place": place,
            "base": base,
            "has_latest": ~np.isnan(latest),
        }
    )
    return out[~np.isnan(base)]


def _based(cut: Cut, sites: pd.DataFrame, rule: str, after_days: int, what: str) -> pd.DataFrame:
    base = sites["base"].to_numpy()
    latest = sites["has_latest"].to_numpy()

    def detail(i: np.ndarray) -> np.ndarray:
        label = np.where(latest[i], what, "first evidence ").astype(object)
        return label + _iso(base[i])

    return _frame(
        sites["pid"].to_numpy(), rule, base + after_days, detail, sites["place"].to_numpy()
    )


def _monitoring(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.monitoring_radiograph
    if not rule.enabled:
        return pd.DataFrame()
    findings, _ = cut.counted
    sites = _site_base(
        cut, ("early", "mineralising"), findings[findings["radiographic"].to_numpy()]
    )
    return _based(cut, sites, R.monitoring_radiograph, rule.after_days, "latest radiograph or CT ")


def _maturity_scans(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.maturity_bone_scan
    if not rule.enabled:
        return pd.DataFrame()
    _, scans = cut.counted
    sites = _site_base(
        cut, ("mineralising", "mature"), scans[scans["delayed"].to_numpy()], Readiness.ready
    )
    # v2: maturity scans time a resection, and genetic HO (FOP) is never resected
    sites = sites[~np.isin(sites["pid"].to_numpy(), cut.fop)]
    return _based(cut, sites, R.maturity_bone_scan, rule.after_days, "latest delayed-phase scan ")


def _course_detail(courses: pd.DataFrame) -> Detail:
    agent, intent = courses["agent"].to_numpy(), courses["intent"].to_numpy()
    start = courses["start"].to_numpy()

    def detail(i: np.ndarray) -> np.ndarray:
        return _words(agent[i]) + " (" + _words(intent[i]) + ") from " + _iso(start[i])

    return detail


def _course_reviews(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    if not rules.course_review.enabled:
        return pd.DataFrame()
    courses = cut.courses[~np.isnan(cut.courses["planned_end"].to_numpy())]
    return _frame(
        courses["pid"].to_numpy(),
        R.course_review,
        courses["planned_end"].to_numpy(),
        _course_detail(courses),
    )


def _post_course(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.post_course_radiograph
    if not rule.enabled:
        return pd.DataFrame()
    courses = cut.courses
    ended = courses[
        ((courses["intent"] == "treatment") & (courses["end"] <= cut.as_of)).to_numpy(bool)
    ]
    end = ended["end"].to_numpy()
    course = _course_detail(ended)

    def detail(i: np.ndarray) -> np.ndarray:
        return course(i) + " ended " + _iso(end[i])

    return _frame(ended["pid"].to_numpy(), R.post_course_radiograph, end + rule.after_days, detail)


def _readiness_reviews(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    if not rules.readiness_review.enabled:
        return pd.DataFrame()
    sites = cut.staged
    since = sites["ready_since"].to_numpy()
    sites = sites[
        (sites["readiness"] == Readiness.ready).to_numpy(bool)
        & ~np.isnan(since)
        & ~np.isin(sites["pid"].to_numpy(), cut.fop)  # v2: never for genetic HO (FOP)
    ]
    since = sites["ready_since"].to_numpy()

    def detail(i: np.ndarray) -> np.ndarray:
        return "ready for resection since " + _iso(since[i])

    return _frame(
        sites["pid"].to_numpy(), R.readiness_review, since, detail, sites["place"].to_numpy()
    )


def _post_resection(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    if not rules.post_resection_prophylaxis.enabled:
        return pd.DataFrame()
    resections = cut.resections
    day = resections["day"].to_numpy()

    def detail(i: np.ndarray) -> np.ndarray:
        return "resection on " + _iso(day[i])

    return _frame(
        resections["pid"].to_numpy(),
        R.post_resection_prophylaxis,
        day,
        detail,
        resections["place"].to_numpy(),
    )


def _recurrence(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    rule = rules.recurrence_radiograph
    if not rule.enabled or cut.resections.empty:
        return pd.DataFrame()
    offsets = np.asarray(rule.days)
    resections = cut.resections
    repeat = np.repeat(np.arange(len(resections)), len(offsets))
    offset = np.tile(offsets, len(resections))
    day = resections["day"].to_numpy()[repeat]

    def detail(i: np.ndarray) -> np.ndarray:
        return "day " + offset[i].astype(str).astype(object) + " after resection on " + _iso(day[i])

    return _frame(
        resections["pid"].to_numpy()[repeat],
        R.recurrence_radiograph,
        day + offset,
        detail,
        resections["place"].to_numpy()[repeat],
    )


# --- the bedside rules (v2) -------------------------------------------------------------

BEDSIDE_RULES = ("suspected_ho_imaging", "dvt_query_hip_ultrasound")

_SIGN_WORDS = ("swelling", "warmth", "erythema")
_SPAN_DAYS = 1 << 20  # as _SPAN below: day numbers packed under a place number
_DAY_OFFSET = 1 << 19


def _packed(place: np.ndarray, day: np.ndarray) -> np.ndarray:
    return (
        np.asarray(place, "int64") * _SPAN_DAYS
        + np.asarray(day, "float64").astype("int64")
        + _DAY_OFFSET
    )


def _pids_of(mrns: pd.Index, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mrns.get_indexer(pd.Index(np.asarray(frame["mrn"], dtype=object))), "int64")


def bedside_cut(cut: Cut, inputs: RuleInputs, protocol: Protocol) -> Cut:
    """The cut with the bedside records keyed as the others are: dated on or before
    as_of, of patients with other records (no bedside rule applies to a patient
    without an injury), at a known site. Exam signs become words ("swelling,
    warmth"), "" when none was seen; a DVT query says why in words."""
    today = cut.as_of

    def keyed(frame: pd.DataFrame, site: bool) -> tuple[pd.DataFrame, np.ndarray]:
        pid = _pids_of(cut.mrns, frame)
        out = pd.DataFrame({"pid": pid, "day": days(frame["date"])})
        kept = (pid >= 0) & (out["day"].to_numpy() <= today)
        if site:
            out["place"] = _place(pid, site_codes(frame["site"], frame["side"]))
            kept &= out["place"].to_numpy() >= 0
        return out[kept].reset_index(drop=True), kept

    exams = motion = dvt = None
    if inputs.exams is not None:
        exams, kept = keyed(inputs.exams, site=True)
        words = np.full(len(exams), "", dtype=object)
        for sign in _SIGN_WORDS:
            seen = (inputs.exams[sign] == "yes").to_numpy(bool)[kept]
            words = np.where(seen, np.where(words == "", sign, words + ", " + sign), words)
        exams["signs"] = words
    if inputs.range_of_motion is not None:
        frame = inputs.range_of_motion
        motion, kept = keyed(frame, site=True)
        degrees = pd.to_numeric(frame["degrees"], errors="coerce")
        motion["movement"] = np.asarray(frame["movement"], dtype=object)[kept]
        motion["degrees"] = degrees.to_numpy("float64", na_value=np.nan)[kept]
        motion = motion[~np.isnan(motion["degrees"].to_numpy())].reset_index(drop=True)
    queries: list[pd.DataFrame] = []
    studies = inputs.dvt_studies
    if studies is None and "indication" in inputs.findings:  # findings that name it
        findings = inputs.findings
        asked = (findings["modality"] == "ultrasound") & (findings["indication"] == "dvt_query")
        studies = findings[asked.to_numpy(bool)]
    if studies is not None:
        keyed_studies, _ = keyed(studies, site=False)
        keyed_studies = keyed_studies.drop_duplicates(["pid", "day"])
        why = "ultrasound for a DVT query on " + _day_words(keyed_studies["day"].to_numpy())
        queries.append(keyed_studies.assign(why=why))
    if inputs.d_dimers is not None:
        frame = inputs.d_dimers
        value = pd.to_numeric(frame["value"], errors="coerce").to_numpy("float64", na_value=np.nan)
        limit = pd.to_numeric(frame["ref_high"], errors="coerce")
        above = value > limit.to_numpy("float64", na_value=np.nan)  # no ref_high: False
        frame = frame[above]
        raised, kept = keyed(frame, site=False)
        unit = np.asarray(frame["unit"].fillna(""), dtype=object)[kept]
        why = (
            "D-dimer "
            + _numbers_text(frame["value"])[kept]
            + np.where(unit == "", "", " " + unit)
            + " above "
            + _numbers_text(frame["ref_high"])[kept]
            + " on "
            + _day_words(raised["day"].to_numpy())
        )
        queries.append(raised.assign(why=why))
    if queries:
        dvt = pd.concat(queries, ignore_index=True)[["pid", "day", "why"]]
    return replace(
        cut,
        exams=exams,
        motion=motion,
        dvt_queries=dvt,
        loss_fraction=protocol.flags.rom_loss_fraction,
    )


def _numbers_text(values: pd.Series | np.ndarray) -> np.ndarray:
    """Numbers as short words (130.0 -> "130", 0.55 -> "0.55"), each distinct one once."""
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy("float64", na_value=np.nan)
    codes, uniques = pd.factorize(numbers)
    words = np.array([f"{u:g}" for u in uniques] + [""], dtype=object)
    return words[codes]


_EVENTS = ["pid", "place", "day", "why"]


def _losses(cut: Cut) -> pd.DataFrame:
    """pid, place, day, why, movement: each day on which a movement's lowest arc is at least the
    protocol's fraction below the largest arc of the same movement at the site on an
    earlier day, both after the site's latest resection before that day: the rom_loss
    flag (staging.flags.rom_loss_movements) as it stood on each measurement's day."""
    motion = cut.motion
    if motion is None or motion.empty:
        return pd.DataFrame({c: [] for c in [*_EVENTS, "movement"]})
    resected = np.sort(
        _packed(cut.resections["place"].to_numpy(), cut.resections["day"].to_numpy())
    )
    key = _packed(motion["place"].to_numpy(), motion["day"].to_numpy())
    # a resection starts the site afresh: the rows between two resections are one era,
    # and a measurement on the day of a resection is not after it
    era = np.searchsorted(resected, key, side="left")
    on_resection = np.zeros(len(key), dtype=bool)
    if len(resected):
        on_resection = resected[np.minimum(era, len(resected) - 1)] == key
    rows = motion.assign(era=era)[~on_resection]
    by = ["pid", "place", "movement", "era"]
    daily = (
        rows.groupby([*by, "day"], sort=True)["degrees"].agg(low="min", high="max").reset_index()
    )
    daily["best"] = daily.groupby(by, sort=False)["high"].cummax()
    prior = daily.groupby(by, sort=False)["best"].shift().to_numpy("float64", na_value=np.nan)
    low = daily["low"].to_numpy("float64")
    with np.errstate(invalid="ignore"):
        shown = (prior > 0) & (prior - low >= cut.loss_fraction * prior - ROM_SLACK)
    lost = daily[shown]
    high, low = prior[shown], low[shown]
    why = (
        _words(lost["movement"].to_numpy())
        + " "
        + _numbers_text(high)
        + "\u00b0 \u2192 "
        + _numbers_text(low)
        + "\u00b0 (\u2212"
        + _numbers_text(np.round(100 * (high - low) / high))
        + "%) on "
        + _day_words(lost["day"].to_numpy())
    )
    return pd.DataFrame(
        {
            "pid": lost["pid"].to_numpy("int64"),
            "place": lost["place"].to_numpy("int64"),
            "day": lost["day"].to_numpy("float64"),
            "why": np.asarray(why, dtype=object),
            "movement": lost["movement"].to_numpy(object),
        }
    )


def suspected_ho_wanted(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    """pid, place, day (of the examination or measurement), due, why: the
    suspected_ho_imaging reminders the records call for (model-spec v2, section 9).

    An examination with swelling, warmth or erythema "yes", or a measurement showing a
    loss of range (`_losses`), for a patient with an injury other than fop dated at
    most `injury_window_days` before it, at a site with no evidence at stage
    mineralising or beyond on that day (after the site's latest resection before it)."""
    rule = rules.suspected_ho_imaging
    parts = [_losses(cut)[_EVENTS]]
    if cut.exams is not None:
        signs = cut.exams[cut.exams["signs"].to_numpy() != ""]
        seen_on = _day_words(signs["day"].to_numpy())
        why = signs["signs"].to_numpy() + " at the bedside on " + seen_on
        parts.append(signs.assign(why=why)[_EVENTS])
    events = pd.concat(parts, ignore_index=True)
    if events.empty:
        return events.assign(due=pd.Series(dtype="float64"))
    events = events.astype({"pid": "int64", "place": "int64", "day": "float64"})
    day = events["day"].to_numpy()
    # an injury other than fop dated within the window before the examination
    injuries = cut.injuries[(cut.injuries["kind"] != InjuryKind.fop.value).to_numpy(bool)]
    pairs = (
        events[["pid", "day"]]
        .reset_index()
        .merge(injuries[["pid", "day"]].rename(columns={"day": "injured"}), on="pid")
    )
    since = pairs["day"].to_numpy() - pairs["injured"].to_numpy()
    at_risk = np.zeros(len(events), dtype=bool)
    at_risk[pairs["index"].to_numpy()[(since >= 0) & (since <= rule.injury_window_days)]] = True
    # no mineralising or mature evidence at the site by then, since its latest resection
    resected = np.sort(
        _packed(cut.resections["place"].to_numpy(), cut.resections["day"].to_numpy())
    )
    key = _packed(events["place"].to_numpy(), day)
    before = np.searchsorted(resected, key, side="right") - 1
    latest = np.full(len(events), -np.inf)
    if len(resected):
        place = events["place"].to_numpy()
        packed = resected[np.maximum(before, 0)]
        same = (before >= 0) & ((packed - _DAY_OFFSET) // _SPAN_DAYS == place)
        latest[same] = (packed - _DAY_OFFSET - place * _SPAN_DAYS)[same]
    mineral = cut.findings[cut.findings["mineral"].to_numpy(bool)][["place", "day"]]
    seen = (
        events[["place"]]
        .assign(event=day, resected=latest)
        .reset_index()
        .merge(mineral, on="place")
    )
    inside = (seen["day"] > seen["resected"]) & (seen["day"] <= seen["event"])
    matured = np.zeros(len(events), dtype=bool)
    matured[seen["index"].to_numpy()[inside.to_numpy(bool)]] = True
    kept = events[at_risk & ~matured]
    return kept.assign(due=kept["day"].to_numpy() + rule.after_days)


def dvt_query_wanted(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    """pid, day (of the study or result), due, why: the dvt_query_hip_ultrasound
    reminders the records call for (model-spec v2, section 9): an ultrasound study for
    a DVT query, or a D-dimer above its ref_high, for a patient with one of the rule's
    injuries dated on or before it and no HO evidence at either hip on or before it."""
    rule = rules.dvt_query_hip_ultrasound
    events = cut.dvt_queries
    if events is None or events.empty:
        return pd.DataFrame({c: [] for c in ["pid", "day", "why", "due"]})
    events = events.astype({"pid": "int64", "day": "float64"})
    injuries = cut.injuries[cut.injuries["kind"].isin(rule.injuries).to_numpy(bool)]
    first_injury = injuries.groupby("pid")["day"].min()
    injured = first_injury.reindex(events["pid"].to_numpy()).to_numpy()
    hip = SITES.index(Site.hip.value)

    def at_hip(frame: pd.DataFrame) -> pd.DataFrame:
        place = frame["place"].to_numpy()
        mask = frame["ho"].to_numpy(bool) & (place >= 0) & (place % 64 // len(SIDES) == hip)
        return frame.loc[mask, ["pid", "day"]]

    hip_ho = pd.concat([at_hip(cut.findings), at_hip(cut.scans)]).groupby("pid")["day"].min()
    first_hip = hip_ho.reindex(events["pid"].to_numpy()).to_numpy()
    day = events["day"].to_numpy()
    with np.errstate(invalid="ignore"):
        applies = (injured <= day) & ~(first_hip <= day)
    kept = events[applies]
    return kept.assign(due=kept["day"].to_numpy())


DVT_WORDS = ": image both hips with ultrasound (HO mimics DVT)"


def suspected_words(why: np.ndarray, place: np.ndarray) -> np.ndarray:
    """What was seen and what to do: "swelling, warmth at the bedside on 10 Feb 2025:
    image the right hip"."""
    code = np.asarray(place, "int64") % 64
    site = _words(_SITE_OF[code // len(SIDES)])
    side = _SIDE_OF[code % len(SIDES)].astype(object)
    return np.asarray(why, dtype=object) + ": image the " + side + " " + site


def _suspected(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    if not rules.suspected_ho_imaging.enabled:
        return pd.DataFrame()
    wanted = suspected_ho_wanted(cut, rules)
    why, place = wanted["why"].to_numpy(), wanted["place"].to_numpy()
    return _frame(
        wanted["pid"].to_numpy(),
        "suspected_ho_imaging",
        wanted["due"].to_numpy(),
        lambda i: suspected_words(why[i], place[i]),
        place,
    )


def _dvt_query(cut: Cut, rules: ReminderRules) -> pd.DataFrame:
    if not rules.dvt_query_hip_ultrasound.enabled:
        return pd.DataFrame()
    wanted = dvt_query_wanted(cut, rules)
    why = wanted["why"].to_numpy()
    return _frame(
        wanted["pid"].to_numpy(),
        "dvt_query_hip_ultrasound",
        wanted["due"].to_numpy(),
        lambda i: why[i] + DVT_WORDS,
    )


def suspected_site_imaged(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    """Rows of `subset` (row, place, due) whose site has a finding (any modality) or a
    bone-scan measurement dated on or after the examination (due - after_days)."""
    records = pd.concat([cut.findings[["place", "day"]], cut.scans[["place", "day"]]])
    return _latest_after(subset, "place", records, rules.suspected_ho_imaging.after_days + 1)


def hips_imaged_after(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    """Rows of `subset` (row, pid, due) with an ultrasound with a hip finding dated on
    the due day or up to `window_days` after it (the DVT-query study itself counts)."""
    scans = cut.findings[cut.findings["hip_ultrasound"].to_numpy()]
    packed = np.sort(_packed(scans["pid"].to_numpy(), scans["day"].to_numpy()))
    keys = _packed(subset["pid"].to_numpy(), subset["due"].to_numpy())
    at = np.searchsorted(packed, keys, side="left")
    found = at < len(packed)
    found[found] = packed[at[found]] <= keys[found] + rules.dvt_query_hip_ultrasound.window_days
    return subset["row"].to_numpy()[found]


_BUILDERS: dict[ReminderRule, Callable[[Cut, ReminderRules], pd.DataFrame]] = {
    R.hip_ultrasound_screen: _screens,
    R.consider_prophylaxis: _prophylaxis,
    R.monitoring_radiograph: _monitoring,
    R.maturity_bone_scan: _maturity_scans,
    R.course_review: _course_reviews,
    R.post_course_radiograph: _post_course,
    R.readiness_review: _readiness_reviews,
    R.post_resection_prophylaxis: _post_resection,
    R.recurrence_radiograph: _recurrence,
}
_BUILDERS[R.suspected_ho_imaging] = _suspected  # v2, the bedside rules
_BUILDERS[R.dvt_query_hip_ultrasound] = _dvt_query


# --- satisfied ------------------------------------------------------------------------


def satisfied(
    keys: pd.DataFrame,
    inputs: RuleInputs,
    as_of: date,
    protocol: Protocol,
    cut: Cut | None = None,
) -> np.ndarray:
    """For each reminder in `keys` (mrn, rule, site, side, due as day number), whether
    the record that closes it is logged on or before as_of (model-spec section 9)."""
    result = np.zeros(len(keys), dtype=bool)
    if keys.empty:
        return result
    rules = protocol.reminders
    cut = cut or cut_at(inputs, as_of, protocol)
    pid = keys["pid"].to_numpy() if "pid" in keys else cut.pids(keys["mrn"])
    frame = pd.DataFrame(
        {
            "row": np.arange(len(keys)),
            "pid": pid,
            "place": _place(pid, site_codes(keys["site"], keys["side"])),
            "due": np.asarray(keys["due"], dtype="float64"),
        }
    )
    rule_of = np.asarray(keys["rule"], dtype=object)
    checks = {
        R.hip_ultrasound_screen: _screen_done,
        R.consider_prophylaxis: _prophylaxis_started,
        R.monitoring_radiograph: _radiograph_since,
        R.maturity_bone_scan: _scan_since,
        R.post_course_radiograph: _ho_site_radiograph_since,
        R.post_resection_prophylaxis: _post_resection_course,
        R.recurrence_radiograph: _recurrence_radiograph,
        R.suspected_ho_imaging: suspected_site_imaged,
        R.dvt_query_hip_ultrasound: hips_imaged_after,
    }
    known = frame[pid >= 0]
    known_rules = rule_of[pid >= 0]
    for rule, check in checks.items():
        subset = known[known_rules == rule.value]
        if len(subset):
            result[check(subset, cut, rules)] = True
    return result


def _rows_where(merged: pd.DataFrame, mask: np.ndarray | pd.Series) -> np.ndarray:
    return np.unique(merged["row"].to_numpy()[np.asarray(mask, dtype=bool)])


_SPAN, _OFFSET = 1 << 20, 1 << 19  # day numbers packed under a patient (or place) number


def _within(
    subset: pd.DataFrame, owner: str, records: pd.DataFrame, day: str, window: int
) -> np.ndarray:
    """Rows of `subset` with a record of the same owner (pid or place) dated within
    `window` days of their due date: a sorted search, not a join."""
    packed = np.sort(
        records[owner].to_numpy("int64") * _SPAN
        + records[day].to_numpy("float64").astype("int64")
        + _OFFSET
    )
    keys = (
        subset[owner].to_numpy("int64") * _SPAN
        + subset["due"].to_numpy("float64").astype("int64")
        + _OFFSET
    )
    at = np.searchsorted(packed, keys - window, side="left")
    found = at < len(packed)
    found[found] = packed[at[found]] <= keys[found] + window
    return subset["row"].to_numpy()[found]


def _latest_after(
    subset: pd.DataFrame, owner: str, records: pd.DataFrame, after_days: int
) -> np.ndarray:
    """Rows of `subset` whose owner has a record dated after due - after_days."""
    latest = records.groupby(owner)["day"].max().reindex(subset[owner].to_numpy()).to_numpy()
    found = ~np.isnan(latest) & (latest > subset["due"].to_numpy() - after_days)
    return subset["row"].to_numpy()[found]


def _screen_done(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    scans = cut.findings[cut.findings["hip_ultrasound"].to_numpy()]
    return _within(subset, "pid", scans, "day", rules.hip_ultrasound_screen.window_days)


def _prophylaxis_started(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    started = cut.courses.loc[cut.courses["intent"] == "prophylaxis", "pid"].to_numpy()
    return subset["row"].to_numpy()[np.isin(subset["pid"].to_numpy(), started)]


def _radiograph_since(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    radiographs = cut.findings[cut.findings["radiographic"].to_numpy()]
    return _latest_after(subset, "place", radiographs, rules.monitoring_radiograph.after_days)


def _scan_since(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    delayed = cut.scans[cut.scans["delayed"].to_numpy()]
    return _latest_after(subset, "place", delayed, rules.maturity_bone_scan.after_days)


def _ho_site_radiograph_since(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    findings = cut.findings
    radiographs = findings[
        findings["radiographic"].to_numpy() & np.isin(findings["place"].to_numpy(), cut.ho_places)
    ]
    return _latest_after(subset, "pid", radiographs, rules.post_course_radiograph.after_days)


def _post_resection_course(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    courses = cut.courses[
        (
            (cut.courses["intent"] == "post_resection") | (cut.courses["agent"] == "radiotherapy")
        ).to_numpy(bool)
    ]
    return _within(subset, "pid", courses, "start", rules.post_resection_prophylaxis.window_days)


def _recurrence_radiograph(subset: pd.DataFrame, cut: Cut, rules: ReminderRules) -> np.ndarray:
    """Each radiograph counts for one checkpoint: the one whose window, halfway to
    the previous and to the next checkpoint, holds its date (days after resection)."""
    offsets = list(rules.recurrence_radiograph.days)
    radiographs = cut.findings[cut.findings["radiographic"].to_numpy()][["place", "day"]]
    resections = cut.resections[["place", "day"]].rename(columns={"day": "resected"})
    hits = [np.zeros(0, dtype="int64")]
    for i, offset in enumerate(offsets):
        low = (offsets[i - 1] + offset) / 2 if i else offset / 2
        high = (offset + offsets[i + 1]) / 2 if i + 1 < len(offsets) else np.inf
        candidates = subset[["row", "place", "due"]].assign(resected=subset["due"] - offset)
        candidates = candidates.merge(resections, on=["place", "resected"])
        merged = candidates.merge(radiographs, on="place")
        after = merged["day"] - merged["resected"]
        hits.append(_rows_where(merged, (after > low) & (after <= high)))
    return np.unique(np.concatenate(hits))


# --- one patient ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WantedReminder:
    rule: str
    site: str | None
    side: str | None
    due: date
    detail: str


def records_frames(records: PatientRecords) -> dict[str, pd.DataFrame]:
    """One patient's records as the cohort frames `read_cohort` gives."""
    mrn = records.mrn

    def frame(rows: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=columns)

    return {
        "injuries": frame(
            [{"mrn": mrn, "kind": i.kind, "date": i.date} for i in records.injuries],
            ["mrn", "kind", "date"],
        ),
        "findings": frame(
            [
                {
                    "mrn": mrn,
                    "date": f.date,
                    "modality": f.modality,
                    "site": f.site,
                    "side": f.side,
                    "ho": f.ho,
                    "calcification": f.calcification,
                    "cortex": f.cortex,
                    "uptake": f.uptake,
                    "brooker": f.brooker,
                    "della_valle": f.della_valle,
                    "indication": f.indication,
                }
                for f in records.findings
            ],
            [
                "mrn",
                "date",
                "modality",
                "site",
                "side",
                "ho",
                "calcification",
                "cortex",
                "uptake",
                "brooker",
                "della_valle",
                "indication",
            ],
        ),
        "bone_scans": frame(
            [
                {
                    "mrn": mrn,
                    "date": s.date,
                    "site": s.site,
                    "side": s.side,
                    "phase": s.phase,
                    "ratio": s.ratio,
                }
                for s in records.bone_scans
            ],
            ["mrn", "date", "site", "side", "phase", "ratio"],
        ),
        "courses": frame(
            [
                {
                    "mrn": mrn,
                    "agent": c.agent,
                    "intent": c.intent,
                    "start_date": c.start_date,
                    "end_date": c.end_date,
                    "planned_weeks": c.planned_weeks,
                }
                for c in records.courses
            ],
            ["mrn", "agent", "intent", "start_date", "end_date", "planned_weeks"],
        ),
        "procedures": frame(
            [
                {"mrn": mrn, "kind": p.kind, "date": p.date, "site": p.site, "side": p.side}
                for p in records.procedures
            ],
            ["mrn", "kind", "date", "site", "side"],
        ),
        **bedside_frames(records),
    }


def bedside_frames(records: PatientRecords) -> dict[str, pd.DataFrame]:
    """One patient's examinations, range of motion and D-dimer results as the bedside
    rule inputs (`RuleInputs.exams`, `.range_of_motion`, `.d_dimers`); the DVT-query
    studies come with the findings (`indication`)."""
    mrn = records.mrn
    exams = ["date", "site", "side", "swelling", "warmth", "erythema"]
    motion = ["date", "site", "side", "movement", "degrees"]
    labs = ["date", "value", "ref_high", "unit"]
    return {
        "exams": pd.DataFrame(
            [{"mrn": mrn, **{c: getattr(e, c) for c in exams}} for e in records.exams],
            columns=["mrn", *exams],
        ),
        "range_of_motion": pd.DataFrame(
            [{"mrn": mrn, **{c: getattr(m, c) for c in motion}} for m in records.range_of_motion],
            columns=["mrn", *motion],
        ),
        "d_dimers": pd.DataFrame(
            [
                {"mrn": mrn, **{c: getattr(lab, c) for c in labs}}
                for lab in records.labs
                if lab.analyte == "d_dimer"
            ],
            columns=["mrn", *labs],
        ),
    }


def readiness_on(
    records: PatientRecords, site: str, side: str, day: date, protocol: Protocol
) -> Readiness:
    """The site's readiness on `day`, exactly as `assess_patient` finds it, without the
    flags and forecasts that readiness does not read. `records` must already be in
    canonical order (`in_canonical_order`), so cutting at `day` keeps that order."""
    cut = PatientRecords(
        mrn=records.mrn,
        injuries=tuple(i for i in records.injuries if i.date <= day),
        findings=tuple(f for f in records.findings if f.date <= day),
        bone_scans=tuple(s for s in records.bone_scans if s.date <= day),
        courses=(),
        procedures=tuple(p for p in records.procedures if p.date <= day),
        labs=tuple(lab for lab in records.labs if lab.date <= day),
    )
    evidence = site_evidence(cut, (site, side))
    if not evidence.findings and not evidence.bone_scans and evidence.resected_on is None:
        return Readiness.not_ready  # no evidence yet: the site is not assessed at all
    stage = site_stage(evidence, protocol.stage)
    series = delayed_series(evidence.bone_scans)
    activity = classify_activity([p.ratio for p in series], protocol.activity.tolerance)
    criteria = site_criteria(
        evidence=evidence,
        stage=stage,
        series=series,
        activity=activity,
        injuries=cut.injuries,
        labs=cut.labs,
        as_of=day,
        protocol=protocol,
    )
    return readiness_verdict(stage, criteria)


def ready_since(
    records: PatientRecords,
    site: str,
    side: str,
    as_of: date,
    protocol: Protocol,
    *,
    ready_now: bool | None = None,
) -> date | None:
    """The day a site that is ready on as_of became ready: the first day of its
    current run of ready assessments, looking at the days on which the answer can
    change (each record's date, and the day an ALP result leaves its window).

    Derived from the records alone, so planning on any later day finds the same day
    (and so the same readiness_review reminder) while the site stays ready. Pass
    `ready_now=True` when the caller already knows the site is ready on as_of.
    """
    # A site's readiness reads its own evidence, the patient's labs and injuries:
    # the other sites can be left out.
    at_site = (site, side)
    records = PatientRecords(
        mrn=records.mrn,
        injuries=in_canonical_order(records.injuries),
        findings=in_canonical_order(f for f in records.findings if (f.site, f.side) == at_site),
        bone_scans=in_canonical_order(s for s in records.bone_scans if (s.site, s.side) == at_site),
        procedures=in_canonical_order(p for p in records.procedures if (p.site, p.side) == at_site),
        labs=in_canonical_order(lab for lab in records.labs if lab.analyte in ("alp", "bone_alp")),
    )

    def ready_on(day: date) -> bool:
        return readiness_on(records, site, side, day, protocol) == Readiness.ready

    if ready_now is None:
        ready_now = ready_on(as_of)
    if not ready_now:
        return None
    window = timedelta(days=protocol.readiness.alp_window_days + 1)
    candidates = {r.date for r in records.findings}
    candidates |= {s.date for s in records.bone_scans}
    candidates |= {p.date for p in records.procedures}
    candidates |= {lab.date for lab in records.labs}
    candidates |= {lab.date + window for lab in records.labs}
    candidates |= {i.date for i in records.injuries}
    since: date | None = None
    for day in sorted((d for d in candidates if d <= as_of), reverse=True):
        if not ready_on(day):
            break
        since = day
    if since is None:  # ready only through the passing of time: the latest change day
        since = max((d for d in candidates if d <= as_of), default=as_of)
    return since


def patient_inputs(records: PatientRecords, as_of: date, protocol: Protocol) -> RuleInputs:
    """Rule inputs for one patient: the records and their assessment on as_of."""
    assessment = assess_patient(records, as_of, protocol)
    sites = pd.DataFrame(
        [
            {
                "mrn": records.mrn,
                "site": s.site,
                "side": s.side,
                "stage": s.stage.value,
                "readiness": s.readiness.value,
                "ready_since": ready_since(records, s.site, s.side, as_of, protocol, ready_now=True)
                if s.readiness == Readiness.ready
                else None,
            }
            for s in assessment.sites
        ],
        columns=["mrn", "site", "side", "stage", "readiness", "ready_since"],
    )
    return RuleInputs(**records_frames(records), sites=sites)


def bedside_for_patient(
    records: PatientRecords, as_of: date, protocol: Protocol
) -> list[WantedReminder]:
    """The bedside reminders (suspected_ho_imaging, dvt_query_hip_ultrasound) one
    patient's records call for on as_of, due up to the horizon (the ones `for_patient`
    gives among the rest)."""
    rules = protocol.reminders
    cut = cut_at(RuleInputs(**records_frames(records)), as_of, protocol)
    wanted: list[WantedReminder] = []
    if rules.suspected_ho_imaging.enabled:
        suspected = suspected_ho_wanted(cut, rules)
        words = suspected_words(suspected["why"].to_numpy(), suspected["place"].to_numpy())
        for row, why in zip(suspected.to_dict("records"), words, strict=True):
            site, side = _site_side(int(row["place"]))
            due = from_day_number(row["due"])
            wanted.append(WantedReminder("suspected_ho_imaging", site, side, due, why))
    if rules.dvt_query_hip_ultrasound.enabled:
        for row in dvt_query_wanted(cut, rules).to_dict("records"):
            why = row["why"] + DVT_WORDS
            due = from_day_number(row["due"])
            wanted.append(WantedReminder("dvt_query_hip_ultrasound", None, None, due, why))
    seen: set[tuple[str, str | None, str | None, date]] = set()
    unique = []
    for item in sorted(wanted, key=lambda w: (w.rule, w.site or "", w.side or "", w.due)):
        if (item.rule, item.site, item.side, item.due) not in seen:
            seen.add((item.rule, item.site, item.side, item.due))
            unique.append(item)
    return [w for w in unique if day_number(w.due) <= cut.horizon]


def bedside_satisfied(
    records: PatientRecords, as_of: date, protocol: Protocol, reminder: WantedReminder
) -> bool:
    """Whether the record that closes a bedside reminder is logged on or before as_of."""
    cut = cut_at(RuleInputs(**records_frames(records)), as_of, protocol)
    pid = cut.pids(pd.Series([records.mrn]))
    site = pd.Series([reminder.site]), pd.Series([reminder.side])
    subset = pd.DataFrame(
        {
            "row": [0],
            "pid": pid,
            "place": _place(pid, site_codes(*site)),
            "due": [float(day_number(reminder.due))],
        }
    )
    check = suspected_site_imaged if reminder.rule == "suspected_ho_imaging" else hips_imaged_after
    return len(check(subset, cut, protocol.reminders)) > 0


def _site_side(place: int) -> tuple[str | None, str | None]:
    if place < 0:
        return None, None
    code = place % 64
    return SITES[code // len(SIDES)], SIDES[code % len(SIDES)]


def for_patient(records: PatientRecords, as_of: date, protocol: Protocol) -> list[WantedReminder]:
    """The reminders one patient's records call for on as_of (see `wanted`)."""
    frame = wanted(patient_inputs(records, as_of, protocol), as_of, protocol)
    return [
        WantedReminder(
            rule=row["rule"],
            site=row["site"],
            side=row["side"],
            due=from_day_number(row["due"]),
            detail=row["detail"],
        )
        for row in frame.to_dict("records")
    ]
