"""Assessing patients: one patient through `staging.assess_patient`, the whole
cohort through `staging.cohort`. Both read the store through `store.loaders`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.errors import TrackerError
from tracker.interchange.csv_export import write_csv
from tracker.progress import NoProgress, Progress
from tracker.protocol import Protocol, load_protocol
from tracker.staging import PatientAssessment, PatientRecords, assess_patient
from tracker.staging.cohort import CohortFrames, assess_cohort
from tracker.store.loaders import patient_records, read_cohort

DEFAULT_PROTOCOL_FILE = Path(__file__).resolve().parents[2] / "data" / "protocols" / "default.toml"


def protocol_from(path: Path | None) -> Protocol:
    """The clinic protocol in `path`, or the spec's defaults."""
    return load_protocol(path) if path is not None else Protocol()


def first_record_date(records: PatientRecords) -> dt.date | None:
    dates = [r.date for r in records.injuries]
    dates += [r.date for r in records.findings]
    dates += [r.date for r in records.bone_scans]
    dates += [r.start_date for r in records.courses]
    dates += [r.date for r in records.procedures]
    dates += [r.date for r in records.labs]
    return min(dates) if dates else None


def assess_one(
    *, engine: Engine, mrn: str, as_of: dt.date, protocol: Protocol | None = None
) -> PatientAssessment:
    """One patient's assessment on `as_of`; NotFound for an unknown mrn."""
    with Session(engine) as session:
        records = patient_records(session, mrn)
    first = first_record_date(records)
    if first is not None and as_of < first:
        raise TrackerError(
            f"as_of {as_of.isoformat()} is before the first record of {mrn} "
            f"({first.isoformat()}); choose a later date."
        )
    return assess_patient(records, as_of, protocol or Protocol())


# --- the whole cohort ---

COHORT_FORMATS = (".csv", ".parquet")  # by file suffix: CSV, or Parquet (pyarrow)


def assess_all(
    *,
    engine: Engine,
    as_of: dt.date,
    protocol: Protocol | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Every site of every patient on `as_of`, one row per site (`staging.cohort`):
    the answers `assess_one` gives, patient by patient."""
    progress = progress or NoProgress()
    progress.start("Assessing every patient", 2)
    with engine.connect() as conn:
        frames = read_cohort(conn)
    progress.advance(1)
    first = first_cohort_date(frames)
    if first is not None and as_of < first:
        raise TrackerError(
            f"as_of {as_of.isoformat()} is before every record in the store (the first is "
            f"dated {first.isoformat()}); choose a later date."
        )
    frame = assess_cohort(frames, as_of, protocol or Protocol())
    progress.advance(1)
    return frame


def first_cohort_date(frames: CohortFrames) -> dt.date | None:
    """The earliest date of any record in the frames (a course counts from its start)."""
    columns = [
        frames.injuries["date"],
        frames.findings["date"],
        frames.bone_scans["date"],
        frames.courses["start_date"],
        frames.procedures["date"],
        frames.labs["date"],
    ]
    firsts = [pd.to_datetime(c).min() for c in columns if len(c)]
    firsts = [f for f in firsts if not pd.isna(f)]
    return min(firsts).date() if firsts else None


def check_cohort_output(path: Path) -> None:
    """Refuse an output file whose suffix names no format we write."""
    if path.suffix.lower() not in COHORT_FORMATS:
        suffix = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise TrackerError(
            f"Cannot write the cohort to {path.name}: {suffix} is not a format it can be "
            "written in; end the file name in .csv or .parquet."
        )


def write_cohort_assessment(frame: pd.DataFrame, path: Path) -> None:
    """Write the cohort assessment as CSV or Parquet, chosen by the file's suffix.

    The CSV is spreadsheet-safe as every CSV export is (csv_export.write_csv): a text
    cell (an MRN, a word, evidence) that would open as a formula gets a `'` in front;
    the numeric columns (brooker, latest_ratio, ...) are written as numbers."""
    check_cohort_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        text = [str(name) for name in frame.columns if frame[name].dtype == object]
        write_csv(frame, path, text=text)
    else:
        frame.to_parquet(path, index=False)
