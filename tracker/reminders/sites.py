"""Every site's stage, readiness and the day it became ready, for the whole cohort.

Planning reads only a site's stage and readiness (and, for a ready site, the day it
became ready), so it runs the cohort staging (`CohortSites`) without the flags and
forecasts that readiness never reads.

The day a ready site became ready (`rules.ready_since`, one site at a time) is found
here for all ready sites at once: each (site, candidate day) pair becomes a stand-in
patient holding that site's records, the patient's injuries and ALP results, all
dated on or before the candidate day and moved forward so that the candidate day
falls on as_of. One cohort run on as_of then answers "ready on that day?" for every
pair. Moving dates keeps every day count (scan age, ALP window) and every order;
only calendar-month waiting times (time_since_injury) can differ, so when a clinic
makes that criterion count for readiness the one-site path is used instead.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from tracker.protocol import Level, Protocol
from tracker.reminders import rules
from tracker.staging import cohort_columns as col
from tracker.staging.cohort_records import CohortFrames, CohortRecords
from tracker.staging.cohort_sites import CohortSites
from tracker.staging.readiness import Readiness

SITE = ["mrn", "site", "side"]
ALP = ["alp", "bone_alp"]


class _StageAndReadiness(CohortSites):
    """CohortSites without flags and forecasts (they come after the verdict and feed
    nothing the planner reads)."""

    def flags(self) -> None:
        return None

    def forecast(self) -> None:
        return None


def stage_and_readiness(frames: CohortFrames, as_of: date, protocol: Protocol) -> pd.DataFrame:
    """mrn, site, side, stage, readiness of every site on as_of, sorted by mrn, site,
    side: the values `assess_cohort` (and so `assess_patient`) gives."""
    records = CohortRecords(frames, col.day_number(as_of))
    sites = _StageAndReadiness(records, protocol)
    return pd.DataFrame(
        {
            "mrn": pd.Series(records.mrns[records.patient], dtype=object),
            "site": pd.Series(records.site, dtype=object),
            "side": pd.Series(records.side, dtype=object),
            "stage": pd.Series(sites.stage, dtype=object),
            "readiness": pd.Series(sites.readiness, dtype=object),
        }
    )


def shift_safe(protocol: Protocol) -> bool:
    """Whether moving dates keeps every readiness verdict (see the module doc)."""
    return protocol.readiness.levels.of("time_since_injury") == Level.advisory


def ready_since(
    frames: CohortFrames, ready: pd.DataFrame, as_of: date, protocol: Protocol
) -> np.ndarray:
    """For each row (mrn, site, side) of `ready`, sites ready on as_of, the day it
    became ready, exactly as `rules.ready_since` finds it (object array of dates)."""
    today = rules.day_number(as_of)
    ready = ready[SITE].reset_index(drop=True).assign(k=np.arange(len(ready)))
    mrns = ready["mrn"].unique()
    window = protocol.readiness.alp_window_days + 1

    def of_ready(frame: pd.DataFrame, on: list[str], date_column: str = "date") -> pd.DataFrame:
        mine = frame[frame["mrn"].isin(mrns).to_numpy(bool)]
        out = mine.merge(ready[[*on, "k"]], on=on)
        out["day"] = rules.days(out[date_column])
        return out

    findings = of_ready(frames.findings, SITE)
    scans = of_ready(frames.bone_scans, SITE)
    procedures = of_ready(frames.procedures, SITE)
    injuries = of_ready(frames.injuries, ["mrn"])
    labs = of_ready(frames.labs[frames.labs["analyte"].isin(ALP).to_numpy(bool)], ["mrn"])

    # the days on which the answer can change (rules.ready_since)
    candidates = pd.concat(
        [
            f[["k", "day"]]
            for f in (
                findings,
                scans,
                procedures,
                injuries,
                labs,
                labs.assign(day=labs["day"] + window),
            )
        ],
        ignore_index=True,
    )
    candidates = candidates[candidates["day"].to_numpy() <= today].drop_duplicates()
    candidates = candidates.sort_values(["k", "day"], ascending=[True, False], ignore_index=True)
    k_of = candidates["k"].to_numpy()
    first_row = np.searchsorted(k_of, k_of, side="left")
    candidates["pos"] = np.arange(len(candidates)) - first_row  # 0: the latest day
    # Ask in rounds, latest days first, and only for sites still ready on every day
    # asked so far: the walk back stops at the first day the site was not ready.
    ready_on = np.zeros(len(candidates), dtype=bool)
    low, high = 0, 4
    running = np.ones(len(ready), dtype=bool)
    while True:
        pos = candidates["pos"].to_numpy()
        now = running[k_of] & (pos >= low) & (pos < high)
        if not now.any():
            break
        rows = np.flatnonzero(now)
        ready_on[rows] = _ready_on_candidates(
            candidates.iloc[rows], len(ready), findings, scans, procedures, injuries, labs,
            frames, today, protocol,
        )  # fmt: skip
        broken = np.unique(k_of[rows[~ready_on[rows]]])
        running[broken] = False
        low, high = high, high * 4
    # walk back from as_of while the site stays ready: the leading run of each site
    candidates["run"] = pd.Series(ready_on).groupby(candidates["k"].to_numpy()).cummin()
    in_run = candidates[candidates["run"].to_numpy(bool)]
    since = np.full(len(ready), float(today))  # no candidate day at all: as_of
    latest = candidates.groupby("k")["day"].max()  # ready only through time passing
    since[latest.index.to_numpy()] = latest.to_numpy()
    first = in_run.groupby("k")["day"].min()
    since[first.index.to_numpy()] = first.to_numpy()
    return np.array([rules.from_day_number(d) for d in since], dtype=object)


def _ready_on_candidates(
    candidates: pd.DataFrame,
    sites_count: int,
    findings: pd.DataFrame,
    scans: pd.DataFrame,
    procedures: pd.DataFrame,
    injuries: pd.DataFrame,
    labs: pd.DataFrame,
    frames: CohortFrames,
    today: int,
    protocol: Protocol,
) -> np.ndarray:
    """Whether each candidate's site is ready on its day (one stand-in per row)."""
    label = np.char.mod("%09d", np.arange(len(candidates)))
    # candidates are sorted by k: each site's candidate days are one run of rows
    k_of = candidates["k"].to_numpy()
    on = candidates["day"].to_numpy()
    count = np.bincount(k_of, minlength=sites_count)
    start = np.cumsum(count) - count

    def stand_in(records: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
        """Each record once per candidate day of its site on or after its date, moved
        forward by as_of minus that day (integer positions only: no string joins)."""
        k = records["k"].to_numpy()
        per = count[k]
        row = np.repeat(np.arange(len(records)), per)
        v = np.repeat(start[k], per) + (np.arange(len(row)) - np.repeat(np.cumsum(per) - per, per))
        keep = records["day"].to_numpy()[row] <= on[v]
        row, v = row[keep], v[keep]
        out = records[list(like.columns)].iloc[row].reset_index(drop=True)
        out["mrn"] = label[v]
        out["date"] = out["date"] + pd.to_timedelta(today - on[v], unit="D")
        return out

    moved = CohortFrames(
        patients=pd.DataFrame({"mrn": label}),
        injuries=stand_in(injuries, frames.injuries),
        findings=stand_in(findings, frames.findings),
        bone_scans=stand_in(scans, frames.bone_scans),
        courses=frames.courses.iloc[:0],
        procedures=stand_in(procedures, frames.procedures),
        labs=stand_in(labs, frames.labs),
    )
    verdicts = stage_and_readiness(moved, rules.from_day_number(today), protocol)
    ready = verdicts.loc[verdicts["readiness"] == Readiness.ready, "mrn"].to_numpy(dtype=str)
    return np.isin(label, ready)
