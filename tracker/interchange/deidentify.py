"""`ho-tracker export --deidentified DIR`: the interchange CSVs for research.

Built on the CSV export (so voided records stay out), then, per patient:
- the mrn becomes a keyed hash: HMAC-SHA256 of the mrn under HO_TRACKER_DEID_KEY,
  the first 16 hex characters (64 bits). Without the key nobody can link a hash to a
  patient, and the same key gives the same hash in every export (linkable studies);
- names, birth date, accession numbers and every free-text note are dropped: notes
  are typed by people and may hold names or numbers. Team is dropped unless asked for;
- every date is moved back by the same per-patient offset of 1 to 365 days, taken
  from the HMAC, so intervals within a patient stay exact. Moving back (never
  forward) keeps dates out of the future, so the folder re-imports as interchange;
- `extra/ages.csv` (mrn hash, age_years, age_at) keeps the age in whole years at the
  first injury, or at the export date when the patient has no injury. It sits in a
  subfolder because it is not an interchange file: the import refuses a folder with a
  `.csv` it cannot read (issue 13), and the export folder must still re-import.

The files are spreadsheet-safe as the CSV export's are (csv_export: a text cell that
begins like a formula gets a `'` in front); the mrn is hashed from the stored value,
never from its quoted cell, so the same patient keeps the same hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from tracker.errors import TrackerError
from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_export import stored_rows, text_columns, write_csv

KEY_VARIABLE = "HO_TRACKER_DEID_KEY"
MIN_KEY_LENGTH = 16
HASH_HEX = 16
MAX_SHIFT_DAYS = 365
DROPPED = ("family_name", "given_name", "birth_date", "accession", "notes")
AGES = "extra/ages.csv"  # beside the interchange files, not among them


def deid_key(environ: dict[str, str] | None = None) -> bytes:
    """The secret from HO_TRACKER_DEID_KEY; refuse to run without a usable one."""
    value = (environ if environ is not None else os.environ).get(KEY_VARIABLE, "")
    if len(value) < MIN_KEY_LENGTH:
        raise TrackerError(
            f"Set {KEY_VARIABLE} to a secret of at least {MIN_KEY_LENGTH} characters before a "
            "de-identified export; keep it to link later exports, never ship it with the data."
        )
    return value.encode("utf-8")


def pseudonym(key: bytes, mrn: str) -> str:
    return hmac.new(key, mrn.encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_HEX]


def date_shift(key: bytes, mrn: str) -> int:
    """Days to move this patient's dates by: -365..-1, never 0, the same for one key."""
    digest = hmac.new(key, b"date-shift:" + mrn.encode("utf-8"), hashlib.sha256).digest()
    return -(1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS)


def export_deidentified(
    *,
    engine: Engine,
    folder: Path,
    key: bytes,
    keep_team: bool = False,
    today: dt.date | None = None,
) -> dict[str, int]:
    """Write the de-identified interchange files and extra/ages.csv; return rows per
    file (by path within `folder`)."""
    today = today or dt.date.today()
    with engine.connect() as conn:  # the CSV export's rows (voided records stay out)
        frames = {f.name: stored_rows(conn, f) for f in fmt.FORMATS}
    patients = frames[fmt.PATIENTS.name]
    mrns = patients["mrn"].tolist()
    hashes = {m: pseudonym(key, m) for m in mrns}
    shifts = {m: dt.timedelta(days=date_shift(key, m)) for m in mrns}
    ages = _ages(patients, frames[fmt.INJURIES.name], today)

    out: dict[str, pd.DataFrame] = {}
    for file in fmt.FORMATS:
        frame = frames[file.name]
        if file is fmt.IMAGING:
            frame = _keep_studies_apart(frame)
        for column in file.columns:
            if column.kind == "date" and column.name in frame:
                frame[column.name] = _shifted(frame[column.name], frame["mrn"].map(shifts))
        dropped = [
            c for c in DROPPED if c in frame and not (file is fmt.IMAGING and c == "accession")
        ]
        if not keep_team and "team" in frame:
            dropped.append("team")
        frame = frame.drop(columns=dropped)
        frame["mrn"] = frame["mrn"].map(hashes)
        out[file.name] = frame.sort_values([k for k in file.key if k in frame], kind="stable")
    ages["mrn"] = ages["mrn"].map(hashes)
    out[AGES] = ages.sort_values("mrn")

    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, frame in out.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        interchange = fmt.FORMAT_BY_NAME.get(name)  # extra/ages.csv holds no text
        write_csv(frame, target, text=text_columns(interchange) if interchange else [])
        counts[name] = len(frame)
    return counts


def _shifted(dates: pd.Series, shifts: pd.Series) -> pd.Series:
    present = dates != ""
    moved = pd.to_datetime(dates.where(present, None), format="%Y-%m-%d") + pd.to_timedelta(shifts)
    return moved.dt.strftime("%Y-%m-%d").where(present, "")


def _keep_studies_apart(imaging: pd.DataFrame) -> pd.DataFrame:
    """Accession numbers go; two studies of one day and modality that only they told
    apart are numbered 1, 2 ... instead, so no finding is merged into another study."""
    imaging = imaging.copy()
    study = ["mrn", "date", "modality"]
    numbered = imaging.groupby(study)["accession"].transform(lambda a: a.nunique() > 1)
    order = imaging.groupby(study)["accession"].rank(method="dense").astype(int).astype(str)
    imaging["accession"] = order.where(numbered, "")
    return imaging


def _ages(patients: pd.DataFrame, injuries: pd.DataFrame, today: dt.date) -> pd.DataFrame:
    first_injury = injuries.groupby("mrn")["date"].min()
    rows = []
    for mrn, birth in zip(patients["mrn"], patients["birth_date"], strict=True):
        at = first_injury.get(mrn)
        basis = "first_injury" if at else "export"
        when = dt.date.fromisoformat(at) if at else today
        age = _whole_years(dt.date.fromisoformat(birth), when) if birth else None
        rows.append({"mrn": mrn, "age_years": age, "age_at": basis if birth else ""})
    frame = pd.DataFrame(rows, columns=["mrn", "age_years", "age_at"])
    frame["age_years"] = frame["age_years"].astype("Int64")
    return frame


def _whole_years(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
