"""Every site's stage, activity, criteria, readiness, flags and forecast, column by
column (model-spec sections 3-7).

Each method restates one rule of the one-patient modules (stage.py, activity.py,
readiness.py, flags.py, forecast.py) over all sites at once, breaking ties and
writing evidence exactly as they do; the docstrings name the function mirrored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tracker.protocol import CriterionName, Level, Protocol, ReadinessRules
from tracker.staging import cohort_columns as col
from tracker.staging.activity import RATIO_SLACK
from tracker.staging.assess import MODEL_VERSION
from tracker.staging.cohort_columns import Bools, Floats, Ints, Texts, filled, iso, render, text
from tracker.staging.cohort_records import CohortRecords
from tracker.staging.flags import ROM_SLACK
from tracker.staging.forecast import MIN_POINTS, forecast_offsets
from tracker.staging.readiness import number
from tracker.vocab import InjuryKind, Intent

STAGES = np.array(["none", "early", "mineralising", "mature"], dtype=object)
CRITERIA = [name.value for name in CriterionName]
FLAGS = (  # sorted, as a site's flags are listed
    "genetic_ho",
    "grade_increase",
    "new_site",
    "progression_after_treatment",
    "recurrence",
    "rising_activity",
    "rom_loss",
)
COLUMNS = [
    "mrn",
    "as_of",
    "model_version",
    "protocol_fingerprint",
    "site",
    "side",
    "stage",
    "brooker",
    "della_valle",
    "activity",
    "latest_ratio",
    "readiness",
    *(f"{name}_{part}" for name in CRITERIA for part in ("status", "level", "evidence")),
    "flags",
    "forecast_date",
    "forecast_low",
    "forecast_high",
    "forecast_passed",
]


class CohortSites:
    """Per-site columns, filled rule by rule in the order of the spec."""

    def __init__(self, records: CohortRecords, protocol: Protocol) -> None:
        self.c, self.protocol = records, protocol
        self.size, self.today = records.size, records.today
        resected = records.resected > col.NO_DAY
        self.since = filled(self.size, "")  # where a site's story restarts, in words
        self.since[resected] = text(" since resection ", iso(records.resected[resected]))
        self.resected: Bools = resected
        # stage.scan_stage: a measurement above normal uptake shows early HO (v2)
        normal = protocol.stage.normal_uptake_ratio
        self.scan_ho: Bools = _above(records.scans.ratio, normal)
        self.all_scan_ho: Bools = _above(records.all_scans.ratio, normal)
        self.status: dict[str, Texts] = {}
        self.evidence: dict[str, Texts] = {}
        self.stage_and_grades()
        self.series_and_activity()
        self.radiographic_maturity()
        self.scan_stabilised()
        self.alp_normal()
        self.time_since_injury()
        self.not_genetic_ho()
        self.verdict()
        self.flags()
        self.forecast()

    # --- model-spec section 3 ---

    def stage_and_grades(self) -> None:
        """stage.site_stage and stage.latest_grades (two grades on the latest day
        resolve to the higher)."""
        f, s = self.c.findings, self.c.scans
        site = np.concatenate([f.site, s.site])
        day = np.concatenate([f.day, s.day])
        stage = np.concatenate([f.stage, self.scan_ho.astype(np.int64)])
        self.rank: Ints = col.reduce_at(np.maximum, self.size, site, stage, 0)
        self.stage: Texts = STAGES[self.rank]
        self.first_day: Ints = col.reduce_at(np.minimum, self.size, site, day, col.NEVER)
        ho = stage > 0
        self.first_ho: Ints = col.reduce_at(np.minimum, self.size, site[ho], day[ho], col.NEVER)
        self.brooker: Floats = np.full(self.size, np.nan)
        graded = ~np.isnan(f.brooker)
        sites, _, grade = col.latest_per_site(
            f.site[graded], f.day[graded], f.brooker[graded].astype(np.int64)
        )
        self.brooker[sites] = grade
        self.della_valle = filled(self.size, None)
        graded = f.della_valle.codes >= 0  # codes rank a < b < c as the grades do
        sites, _, grade = col.latest_per_site(
            f.site[graded], f.day[graded], f.della_valle.codes[graded]
        )
        self.della_valle[sites] = f.della_valle.values[grade]

    # --- model-spec section 4 ---

    def series_and_activity(self) -> None:
        """activity.delayed_series (same-day values summed in ascending order, then
        averaged) and activity.classify_activity."""
        s = self.c.scans
        use = s.delayed & ~np.isnan(s.ratio)
        site, day, ratio = s.site[use], s.day[use], s.ratio[use]
        order = np.lexsort((ratio, day, site))
        site, day, ratio = site[order], day[order], ratio[order]
        new_day = np.ones(len(site), dtype=bool)
        new_day[1:] = (site[1:] != site[:-1]) | (day[1:] != day[:-1])
        day_starts = np.flatnonzero(new_day)
        which = np.cumsum(new_day) - 1
        place = np.arange(len(site)) - day_starts[which]
        totals = np.zeros(len(day_starts))
        for position in range(int(place.max()) + 1 if len(place) else 0):
            here = place == position  # the day's 1st, 2nd, ... value: Python's sum order
            totals[which[here]] += ratio[here]
        self.d_site: Ints = site[day_starts]
        self.d_day: Ints = day[day_starts]
        self.d_ratio: Floats = totals / np.bincount(which, minlength=len(day_starts))

        sites, starts = col.first_per_group(self.d_site)
        _, ends = col.last_per_group(self.d_site)
        self.n: Ints = np.zeros(self.size, dtype=np.int64)
        self.first: Ints = np.zeros(self.size, dtype=np.int64)
        self.last: Ints = np.zeros(self.size, dtype=np.int64)
        self.n[sites], self.first[sites], self.last[sites] = ends - starts + 1, starts, ends
        r = self.d_ratio
        same = np.zeros(len(r), dtype=bool)
        same[1:] = self.d_site[1:] == self.d_site[:-1]
        change = np.full(len(r), np.nan)  # d_i = (r_i - r_(i-1)) / r_(i-1)
        change[1:] = np.where(same[1:], (r[1:] - r[:-1]) / np.where(same[1:], r[:-1], 1.0), np.nan)
        peak_ratio = np.full(self.size, np.nan)
        if len(r):
            peak_ratio[sites] = np.maximum.reduceat(r, starts)
        at_peak = np.flatnonzero(r == peak_ratio[self.d_site])
        peak_site, peak_last = col.last_per_group(self.d_site[at_peak])
        self.peak: Ints = np.zeros(self.size, dtype=np.int64)
        self.peak[peak_site] = at_peak[peak_last]  # the latest of equal peaks

        n, tolerance = self.n, self.protocol.activity.tolerance
        self.r1, self.rn = col.at(r, self.first, n > 0), col.at(r, self.last, n > 0)
        self.last_change = last = col.at(change, self.last, n >= 2)
        previous = col.at(change, self.last - 1, n >= 3)
        multi = n >= 2
        rising = multi & _above(last, tolerance)
        plateau = multi & ~rising & (n >= 3)
        plateau &= ~_above(np.abs(last), tolerance) & ~_above(np.abs(previous), tolerance)
        declining = multi & ~rising & ~plateau & (_above(-last, tolerance) | (self.rn < peak_ratio))
        self.activity: Texts = np.select(
            [n == 0, n == 1, rising, plateau, declining],
            ["none", "single_scan", "rising", "plateau", "declining"],
            "indeterminate",
        ).astype(object)
        self.latest_ratio = _round6(self.rn)

    # --- model-spec section 5 ---

    def radiographic_maturity(self) -> None:
        """readiness.radiographic_maturity: the latest radiograph, ct or mri finding
        in canonical record order (date, modality, ho, soft tissue, calcification,
        cortex; missing first), or the latest that shows a mature cortex."""
        f = self.c.findings
        seen = f.sees_cortex
        order_columns = [f.modality, f.ho, f.soft_tissue, f.calcification, f.cortex]
        radices = [len(c.values) + 1 for c in order_columns]
        within_day = np.zeros(int(seen.sum()), dtype=np.int64)
        for column, radix in zip(order_columns, radices, strict=True):
            within_day = within_day * radix + column.codes[seen] + 1
        sites, latest_day, latest = col.latest_per_site(f.site[seen], f.day[seen], within_day)
        cortex_code = latest % radices[-1] - 1
        modality_code = latest // int(np.prod(radices[1:])) - 1

        mature = f.stage == 3  # only radiograph, ct or mri can show it
        m_sites, m_day, m_modality = col.latest_per_site(
            f.site[mature], f.day[mature], f.modality.codes[mature]
        )
        status = filled(self.size, "unknown")
        evidence = text("no radiograph, ct or mri of this site", self.since)
        met_rows = self.rank[m_sites] == 3
        status[m_sites[met_rows]] = "met"
        evidence[m_sites[met_rows]] = text(
            _study(f.modality.texts(m_modality[met_rows]), m_day[met_rows]),
            ": well-defined cortex",
        )
        unmet_rows = self.rank[sites] != 3
        unmet = sites[unmet_rows]
        status[unmet] = "unmet"
        cortex = f.cortex.texts(cortex_code[unmet_rows])
        words = np.select(
            [cortex == "partial", cortex == "none"],
            ["partial cortex", "no cortex"],
            "cortex not recorded",
        ).astype(object)
        evidence[unmet] = text(
            _study(f.modality.texts(modality_code[unmet_rows]), latest_day[unmet_rows]),
            ": ",
            words,
            "; stage ",
            self.stage[unmet],
            ", not mature",
        )
        self._criterion(CriterionName.radiographic_maturity, status, evidence)

    def scan_stabilised(self) -> None:
        """readiness.scan_stabilised."""
        rules = self.protocol.readiness
        n = self.n
        status = filled(self.size, "unknown")
        evidence = text("no delayed-phase bone scan of this site", self.since)
        one = np.flatnonzero(n == 1)
        evidence[one] = text(
            "one delayed-phase ratio ", self._ratio(self.first[one]), "; two or more needed"
        )
        age = self.today - col.at(self.d_day, self.last, n > 0, self.today)
        stale = np.flatnonzero((n >= 2) & (age > rules.scan_recency_days))
        evidence[stale] = text(
            "latest delayed-phase ratio ",
            self._ratio(self.last[stale]),
            " is ",
            render(age[stale], str),
            f" days old; limit {rules.scan_recency_days}",
        )
        judged = (n >= 2) & (age <= rules.scan_recency_days)
        trend = filled(self.size, "")
        j = np.flatnonzero(judged)
        trend[j] = text(
            "delayed-phase ratio ", self._ratio(self.first[j]), " -> ", self._ratio(self.last[j])
        )
        self.threshold = threshold = kim_thresholds(self.r1, rules)
        banded = ~np.isnan(threshold)
        rising = judged & (self.activity == "rising")
        below = judged & ~rising & banded & ~_above(self.rn, np.where(banded, threshold, 0.0))
        plateau = judged & ~rising & ~below & (self.activity == "plateau")
        rest = judged & ~rising & ~below & ~plateau
        status[rising | rest], status[below | plateau] = "unmet", "met"
        i = np.flatnonzero(rising)
        evidence[i] = text(
            trend[i],
            "; rising ",
            render(self.last_change[i], lambda v: f"{v:+.0%}"),
            " since ",
            iso(self.d_day[self.last[i] - 1]),
        )
        i = np.flatnonzero(below)
        evidence[i] = text(trend[i], "; at or below Kim threshold ", render(threshold[i], _repr))
        evidence[plateau] = text(trend[plateau], "; plateau")
        i = np.flatnonzero(rest)
        kim = filled(
            len(i), f"initial ratio {_repr(rules.kim_low_initial)} or less, no Kim threshold"
        )
        band = banded[i]
        kim[band] = text("above Kim threshold ", render(threshold[i][band], _repr))
        evidence[i] = text(trend[i], "; ", kim, "; ", self.activity[i], ", not plateau")
        self._criterion(CriterionName.scan_stabilised, status, evidence)

    def _ratio(self, rows: Ints) -> Texts:
        """readiness._ratio: a daily ratio and its date."""
        ratio = render(self.d_ratio[rows], lambda v: f"{v:.2f}")
        return text(ratio, " (", iso(self.d_day[rows]), ")")

    def alp_normal(self) -> None:
        """readiness.alp_normal: the patient's latest alp or bone_alp result in the
        window, judged against its ref_high, else the protocol's default upper limit
        for its analyte and unit (readiness.upper_limit); on a day with several, the
        first elevated one, else the first judged one, else the first (unknown), in
        canonical record order (analyte, value as text, ref_high as text, unit;
        missing first)."""
        c, rules = self.c, self.protocol.readiness
        window = rules.alp_window_days
        labs, patient = c.labs, c.lab_patient
        day = col.days(labs["date"])
        analyte = col.Coded.of(labs["analyte"])
        recent = analyte.isin("alp", "bone_alp") & (self.today - day <= window)
        latest = col.reduce_at(np.maximum, c.patients, patient[recent], day[recent], col.NO_DAY)
        rows = np.flatnonzero(recent & (day == latest[patient]))
        value = col.numbers(labs["value"])[rows]
        ref_high = col.numbers(labs["ref_high"])[rows]
        unit = col.Coded.of(labs["unit"]).take(rows)
        analyte = analyte.take(rows)
        own = ~np.isnan(ref_high)
        limit = ref_high.copy()
        for name, unit_name, fallback in rules.default_upper_limits.items():
            limit[~own & analyte.isin(name) & unit.isin(unit_name)] = fallback
        judged = ~np.isnan(limit)
        elevated = judged & (value > np.where(judged, limit, np.inf))
        preference = np.select([elevated, judged], [0, 1], 2)
        value_key = pd.factorize(render(value, repr), sort=True)[0]
        ref_key = np.where(own, pd.factorize(render(ref_high, repr), sort=True)[0], -1)
        order = np.lexsort(
            (unit.codes, ref_key, value_key, analyte.codes, preference, patient[rows])
        )
        who, first = col.first_per_group(patient[rows][order])
        chosen = order[first]
        nonempty = unit.isin(*(u for u in unit.values.tolist() if u))[chosen]
        unit_text = unit.texts()[chosen]
        units = filled(len(chosen), "")
        units[nonempty] = text(" ", unit_text[nonempty])
        analyte_text = analyte.texts()[chosen]
        judged_c, own_c, up = judged[chosen], own[chosen], elevated[chosen]
        relation = np.where(up, "above ", "at or below ").astype(object)
        in_unit = filled(len(chosen), "without a unit")
        in_unit[nonempty] = text("in ", unit_text[nonempty])
        words = text(
            "no reference range; the protocol has no default upper limit for ",
            analyte_text,
            " ",
            in_unit,
        )
        mine = judged_c & own_c
        words[mine] = text(
            relation[mine], "its reference upper limit ", render(limit[chosen][mine], number)
        )
        protocols = judged_c & ~own_c
        words[protocols] = text(
            relation[protocols],
            render(limit[chosen][protocols], number),
            ", the protocol's default upper limit for ",
            unit_text[protocols],
        )
        evidence_words = text(
            analyte_text,
            " ",
            render(value[chosen], number),
            units,
            " on ",
            iso(day[rows][chosen]),
            " (",
            words,
            ")",
        )
        status = filled(c.patients, "unknown")
        evidence = filled(
            c.patients, f"no alp or bone_alp result in the {window} days before as_of"
        )
        status[who] = np.select([up, judged_c], ["unmet", "met"], "unknown").astype(object)
        evidence[who] = evidence_words
        self._criterion(CriterionName.alp_normal, status[c.patient], evidence[c.patient])

    def time_since_injury(self) -> None:
        """readiness.time_since_injury: every injury on or before the site's first
        evidence (as_of if it has none) whose kind has a waiting time, in order of
        date then kind, one part of the evidence each."""
        c, waiting = self.c, self.protocol.waiting_months
        kind = col.Coded.of(c.injuries["kind"])
        day = col.days(c.injuries["date"])
        months_of = np.array(
            [np.nan if (m := waiting.of(k)) is None else m for k in kind.values.tolist()] + [np.nan]
        )
        order = np.lexsort((kind.codes, day, c.injury_patient))
        kind, day = kind.take(order), day[order]
        count = np.bincount(c.injury_patient, minlength=c.patients)
        start = np.cumsum(count) - count
        # one row per (site, injury of its patient)
        per_site = count[c.patient]
        pair_site = np.repeat(np.arange(self.size), per_site)
        offset = np.arange(len(pair_site)) - np.repeat(np.cumsum(per_site) - per_site, per_site)
        pair = np.repeat(start[c.patient], per_site) + offset
        reference = np.where(self.first_day < col.NEVER, self.first_day, self.today)
        months = months_of[kind.codes[pair]]
        cause = (day[pair] <= reference[pair_site]) & ~np.isnan(months)
        pair_site, pair, months = pair_site[cause], pair[cause], months[cause].astype(np.int64)
        injured = day[pair]
        waited = self.today >= col.add_months(injured, months)
        parts = text(
            kind.texts(kind.codes[pair]),
            " ",
            iso(injured),
            ": ",
            render(col.whole_months_between(injured, self.today), str),
            " months since injury, ",
            render(months, str),
            " advised",
        )
        status = filled(self.size, "unknown")
        evidence = filled(self.size, "no injury recorded")
        with_causes = col.first_per_group(pair_site)[0]
        evidence[with_causes] = col.join_groups(pair_site, parts, "; ")
        no_cause = per_site > 0
        no_cause[with_causes] = False
        status[per_site > 0] = "met"
        evidence[no_cause] = text(
            "no injury with a waiting time on or before the site's first evidence ",
            iso(reference[no_cause]),
        )
        all_waited = col.reduce_at(np.minimum, self.size, pair_site, waited.astype(np.int64), 1)
        status[with_causes] = np.where(all_waited[with_causes] == 1, "met", "unmet")
        self._criterion(CriterionName.time_since_injury, status, evidence)

    def not_genetic_ho(self) -> None:
        """readiness.not_genetic_ho."""
        c = self.c
        fop = c.injuries["kind"].eq(InjuryKind.fop.value).to_numpy(bool, na_value=False)
        first = col.reduce_at(
            np.minimum,
            c.patients,
            c.injury_patient[fop],
            col.days(c.injuries["date"])[fop],
            col.NEVER,
        )[c.patient]
        self.fop: Bools = first < col.NEVER
        status = np.where(self.fop, "unmet", "met").astype(object)
        evidence = filled(self.size, "no fop recorded")
        evidence[self.fop] = text(
            "fop recorded ", iso(first[self.fop]), ": surgery can trigger flare-ups; never resect"
        )
        self._criterion(CriterionName.not_genetic_ho, status, evidence)

    def _criterion(self, name: CriterionName, status: Texts, evidence: Texts) -> None:
        self.status[name.value], self.evidence[name.value] = status, evidence

    def verdict(self) -> None:
        """readiness.readiness_verdict."""
        levels = self.protocol.readiness.levels
        blocking = np.zeros(self.size, dtype=bool)
        missing = np.zeros(self.size, dtype=bool)
        for name in CriterionName:
            level = levels.of(name)
            if level in (Level.required, Level.required_if_known):
                blocking |= self.status[name.value] == "unmet"
            if level == Level.required:
                missing |= self.status[name.value] == "unknown"
        self.readiness: Texts = np.select(
            [self.rank == 0, blocking, missing],
            ["not_applicable", "not_ready", "insufficient_data"],
            "ready",
        ).astype(object)

    # --- model-spec section 6 ---

    def flags(self) -> None:
        """flags.site_flags."""
        c, rules = self.c, self.protocol.flags
        f, s = c.all_findings, c.all_scans
        ho, scan_ho = f.stage > 0, self.all_scan_ho
        patient_first = col.reduce_at(  # blind to resections (flags.patient_first_ho_date)
            np.minimum,
            c.patients,
            np.concatenate([f.patient[ho], s.patient[scan_ho]]),
            np.concatenate([f.day[ho], s.day[scan_ho]]),
            col.NEVER,
        )[c.patient]
        site_ho = self.first_ho < col.NEVER
        seen = site_ho & (patient_first < col.NEVER)
        gap = self.first_ho - np.where(seen, patient_first, 0)
        # flags.is_new_site and flags.is_recurrence: HO after a resection recurs
        new_site = seen & (gap > rules.new_site_gap_days) & ~self.resected
        recurrence = site_ho & self.resected

        e = c.findings
        brooker = ~np.isnan(e.brooker)
        valle = e.della_valle.codes >= 0
        increases = [
            _increase_days(e.site[brooker], e.day[brooker], e.brooker[brooker].astype(np.int64)),
            _increase_days(e.site[valle], e.day[valle], e.della_valle.codes[valle]),
        ]
        grade_site = np.concatenate([site for site, _ in increases])
        advance_site, advance_day = self._stage_advances()
        new = np.flatnonzero(new_site)
        progression = _after_treatment(
            np.concatenate([grade_site, advance_site, new]),
            np.concatenate([*(day for _, day in increases), advance_day, self.first_ho[new]]),
            c,
            rules.progression_window_days,
        )
        grade_increase = np.zeros(self.size, dtype=bool)
        grade_increase[grade_site] = True
        raised = {
            "genetic_ho": self.fop,
            "grade_increase": grade_increase,
            "new_site": new_site,
            "progression_after_treatment": progression,
            "recurrence": recurrence,
            "rising_activity": self.activity == "rising",
            "rom_loss": self._rom_loss(),
        }
        names = filled(self.size, "")
        for name in FLAGS:
            on = raised[name]
            names[on] = np.where(names[on] == "", name, text(names[on], ";" + name))
        self.flag_names = names

    def _rom_loss(self) -> Bools:
        """flags.rom_loss_movements: for some movement at the site, the lowest arc on
        its latest day is at least the protocol's fraction below the largest arc of
        an earlier day (the same expression as flags.rom_loss_shown)."""
        m, lost = self.c.motion, np.zeros(self.size, dtype=bool)
        known = ~np.isnan(m.degrees)
        if not known.any():
            return lost
        rows = pd.DataFrame(
            {
                "site": m.site[known],
                "movement": m.movement.codes[known],
                "day": m.day[known],
                "degrees": m.degrees[known],
            }
        )
        by = ["site", "movement"]
        last = (rows["day"] == rows.groupby(by)["day"].transform("max")).to_numpy(bool)
        latest = rows[last].groupby(by)["degrees"].min()
        earlier = rows[~last].groupby(by)["degrees"].max()
        both = pd.concat({"latest": latest, "earlier": earlier}, axis=1, join="inner")
        high, low = both["earlier"].to_numpy(np.float64), both["latest"].to_numpy(np.float64)
        fraction = self.protocol.flags.rom_loss_fraction
        shown = (high > 0) & (high - low >= fraction * high - ROM_SLACK)
        lost[both.index.get_level_values("site").to_numpy()[shown]] = True
        return lost

    def _stage_advances(self) -> tuple[Ints, Ints]:
        """flags.stage_advance_dates: days on which a site moves from early or
        mineralising to a later stage (the day's highest stage against the highest
        reached on earlier days)."""
        f, s = self.c.findings, self.c.scans
        site = np.concatenate([f.site, s.site])
        day = np.concatenate([f.day, s.day])
        stage = np.concatenate([f.stage, self.scan_ho.astype(np.int64)])
        if len(day):  # two runs sorted by site and day: a stable sort merges them
            order = np.argsort(site * (int(day.max()) - int(day.min()) + 1) + day, kind="stable")
            site, day, stage = site[order], day[order], stage[order]
        site, day, _, highest = col.daily(site, day, stage)
        before = col.earlier(site, highest, np.maximum, 0)
        advance = np.isin(before, (1, 2)) & (highest > before)
        return site[advance], day[advance]

    # --- model-spec section 7 ---

    def forecast(self) -> None:
        """assess_patient's forecast: declining sites whose scan_stabilised is unmet,
        with at least MIN_POINTS ratios from the (latest) peak on, in one batched fit;
        `passed` when the forecast day is before as_of."""
        rules = self.protocol.forecast
        length = self.last - self.peak + 1
        stabilised = self.status[CriterionName.scan_stabilised.value]
        wanted = (stabilised == "unmet") & (self.activity == "declining") & (self.n > 0)
        rows = np.flatnonzero(wanted & (length >= MIN_POINTS))
        self.forecast_dates = {key: filled(self.size, None) for key in ("date", "low", "high")}
        self.forecast_passed = filled(self.size, None)
        if len(rows) == 0:
            return
        offsets = np.arange(int(length[rows].max()))
        mask = offsets[None, :] < length[rows, None]
        taken = np.where(mask, self.peak[rows, None] + offsets[None, :], 0)
        peak_day = self.d_day[self.peak[rows]]
        days = np.where(mask, self.d_day[taken] - peak_day[:, None], 0).astype(np.float64)
        ratios = np.where(mask, self.d_ratio[taken], 0.0)
        years = np.array([12 * rules.horizon_years], dtype=np.int64)
        horizon = col.add_months(np.array([self.today]), years)[0]
        found, *offset = forecast_offsets(
            days, ratios, mask.astype(np.float64), self.threshold[rows], horizon - peak_day, rules
        )
        for key, value in zip(("date", "low", "high"), offset, strict=True):
            self.forecast_dates[key][rows[found]] = iso(peak_day[found] + value[found])
        self.forecast_passed[rows[found]] = peak_day[found] + offset[0][found] < self.today

    # --- output ---

    def frame(self) -> pd.DataFrame:
        c, levels = self.c, self.protocol.readiness.levels
        missing = np.isnan(self.brooker)
        brooker = pd.array(np.where(missing, 0, self.brooker).astype(np.int64), dtype="Int64")
        brooker[missing] = pd.NA
        columns: dict[str, Any] = {
            "mrn": c.mrns[c.patient],
            "as_of": filled(self.size, iso(np.array([self.today]))[0]),
            "model_version": np.full(self.size, MODEL_VERSION, dtype=np.int64),
            "protocol_fingerprint": filled(self.size, self.protocol.fingerprint),
            "site": c.site,
            "side": c.side,
            "stage": self.stage,
            "brooker": brooker,
            "della_valle": self.della_valle,
            "activity": self.activity,
            "latest_ratio": self.latest_ratio,
            "readiness": self.readiness,
        }
        for name in CRITERIA:
            columns[f"{name}_status"] = self.status[name]
            columns[f"{name}_level"] = filled(self.size, levels.of(name).value)
            columns[f"{name}_evidence"] = self.evidence[name]
        columns["flags"] = self.flag_names
        for key in ("date", "low", "high"):
            columns[f"forecast_{key}"] = self.forecast_dates[key]
        columns["forecast_passed"] = self.forecast_passed
        dtypes = {
            "brooker": "Int64",
            "latest_ratio": "float64",
            "model_version": "int64",
            "forecast_passed": "boolean",
        }
        return pd.DataFrame(
            {name: pd.Series(columns[name], dtype=dtypes.get(name, object)) for name in COLUMNS}
        )


# --- rules over columns ---


def kim_thresholds(initial: Floats, rules: ReadinessRules) -> Floats:
    """readiness.kim_threshold over a column; NaN where no band applies."""
    finals: list[Any] = [rules.kim_high_final, rules.kim_low_final]
    bands = [_above(initial, rules.kim_high_initial), _above(initial, rules.kim_low_initial)]
    thresholds: Floats = np.select(bands, finals, np.nan)
    return thresholds


def _above(values: Floats, limit: float | Floats) -> Bools:
    """activity.above over a column: value > limit, beyond floating-point noise."""
    result: Bools = values > limit + RATIO_SLACK
    return result


def _study(modality: Texts, day: Ints) -> Texts:
    """readiness._study: which study, on which day."""
    return text(modality, " ", iso(day))


def _repr(value: float) -> str:
    """readiness._threshold: a ratio threshold as the spec writes it."""
    return repr(float(value))


def _round6(values: Floats) -> Floats:
    """Python's round(x, 6), as `to_json` writes latest_ratio (numpy rounds otherwise)."""
    out = np.full(len(values), np.nan)
    known = ~np.isnan(values)
    if known.any():
        uniques, inverse = np.unique(values[known], return_inverse=True)
        out[known] = np.array([round(v, 6) for v in uniques.tolist()])[inverse]
    return out


def _increase_days(site: Ints, day: Ints, grade: Ints) -> tuple[Ints, Ints]:
    """flags.grade_increase_dates for one grade, rows sorted by site and day: days on
    which a grade exceeds one recorded on an earlier day."""
    site, day, lowest, highest = col.daily(site, day, grade)
    up = highest > col.earlier(site, lowest, np.minimum, col.NEVER)
    return site[up], day[up]


def _after_treatment(site: Ints, day: Ints, c: CohortRecords, window_days: int) -> Bools:
    """flags.treatment_windows: whether any progression day falls after the start and
    no later than `window_days` after the end of a treatment course (an ongoing
    course counts up to as_of)."""
    treatment = c.courses["intent"].eq(Intent.treatment.value).to_numpy(bool, na_value=False)
    end = col.days(c.courses["end_date"])[treatment]
    watch = pd.DataFrame(
        {
            "patient": c.course_patient[treatment],
            "start": col.days(c.courses["start_date"])[treatment],
            "last": np.where(end == col.NO_DAY, col.NEVER, end + window_days),
        }
    )
    events = pd.DataFrame({"site": site, "day": day, "patient": c.patient[site]})
    pairs = events.merge(watch, on="patient")
    inside = ((pairs["start"] < pairs["day"]) & (pairs["day"] <= pairs["last"])).to_numpy()
    flagged = np.zeros(c.size, dtype=bool)
    flagged[pairs["site"].to_numpy()[inside]] = True
    return flagged
