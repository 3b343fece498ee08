"""The whole cohort on one day, column by column: `assess_patient`'s answers for
every site of every patient (model-spec sections 3-8).

The rules of the one-patient modules are restated over columns
(`cohort_sites.CohortSites`): every patient's records sit in one frame per kind,
sites are integer ids in (mrn, site, side) order, and each rule is a mask, a grouped
reduction or a sort. Ties are broken exactly as the one-patient path breaks them
(its canonical record order), sums are taken in the same order, numbers and dates
are written by the same formatting, and forecasts go through the same batched fit,
so every value, evidence texts included, is identical; tests/staging/
test_cohort_one_truth.py holds the two paths to that. Python writes each distinct
number or date once; nothing loops over patients or sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd

from tracker.protocol import Protocol
from tracker.staging.cohort_columns import day_number
from tracker.staging.cohort_records import CohortFrames, CohortRecords, cohort_frames
from tracker.staging.cohort_sites import COLUMNS, CRITERIA, CohortSites
from tracker.staging.readiness import Readiness

DEFAULT_PROTOCOL = Protocol()

__all__ = [
    "COLUMNS",
    "CohortFrames",
    "assess_cohort",
    "cohort_as_json_sites",
    "cohort_frames",
    "readiness_counts",
    "site_json",
]


def assess_cohort(
    frames: CohortFrames, as_of: date, protocol: Protocol = DEFAULT_PROTOCOL
) -> pd.DataFrame:
    """Every site of every patient on `as_of`, one row each, sorted by mrn, site, side.

    Columns (COLUMNS): mrn, as_of (ISO date), model_version, protocol_fingerprint
    (which rules made the call, model-spec section 8), site, side, stage, brooker,
    della_valle, activity, latest_ratio, readiness; `<criterion>_status`, `_level`
    and `_evidence` for each criterion in the spec's order; flags (sorted names
    joined by ";", "" for none); forecast_date, forecast_low, forecast_high (ISO
    dates or None) and forecast_passed (boolean, NA without a forecast). Each row
    holds exactly what `to_json(assess_patient(...))` gives for that site.
    """
    return CohortSites(CohortRecords(frames, day_number(as_of)), protocol).frame()


def readiness_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Sites per readiness verdict: ready, not_ready, insufficient_data, not_applicable."""
    counts = frame["readiness"].value_counts()
    return {name: int(counts.get(name, 0)) for name in Readiness}


def cohort_as_json_sites(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The cohort frame as `to_json(...)["sites"]` per mrn (patients with a site);
    also reads back a frame written to CSV or Parquet."""
    sites: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        sites.setdefault(str(row["mrn"]), []).append(site_json(row))
    return sites


def site_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """One cohort row in the structure of model-spec section 8."""
    brooker, ratio = _plain(row["brooker"]), _plain(row["latest_ratio"])
    flags = _plain(row["flags"])
    return {
        "site": row["site"],
        "side": row["side"],
        "stage": row["stage"],
        "brooker": None if brooker is None else int(brooker),
        "della_valle": _plain(row["della_valle"]),
        "activity": row["activity"],
        "latest_ratio": None if ratio is None else float(ratio),
        "readiness": row["readiness"],
        "criteria": [
            {
                "name": name,
                "status": row[f"{name}_status"],
                "level": row[f"{name}_level"],
                "evidence": row[f"{name}_evidence"],
            }
            for name in CRITERIA
        ],
        "flags": flags.split(";") if flags else [],
        "forecast": None
        if _plain(row["forecast_date"]) is None
        else {
            **{key: row[f"forecast_{key}"] for key in ("date", "low", "high")},
            "passed": _boolean(row["forecast_passed"]),
        },
    }


def _boolean(value: Any) -> bool:
    """True or False as written to the frame, to CSV ("True") or to Parquet."""
    return value.strip() == "True" if isinstance(value, str) else bool(value)


def _plain(value: Any) -> Any:
    """None for every spelling of a missing value (None, NaN, pd.NA)."""
    return None if value is None or value is pd.NA or value != value else value
