"""Assessing patients: one patient through `staging.assess_patient`, the whole
cohort through `staging.cohort`. Both read the store through `store.loaders`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.errors import TrackerError
from tracker.protocol import Protocol, load_protocol
from tracker.staging import PatientAssessment, PatientRecords, assess_patient
from tracker.store.loaders import patient_records

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
