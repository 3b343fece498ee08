"""Interoperability: FHIR R4 Bundles in and out, the de-identified research export,
DICOM header import and the sites it leaves for a clinician. The CLI and the web
app call these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.interchange import deidentify, fhir_export, fhir_import
from tracker.interchange.csv_import import ImportSummary
from tracker.interchange.dicom_import import DicomSummary, import_dicom
from tracker.progress import Progress
from tracker.store.models import DicomPendingSite, ImagingStudy, Patient, table_of


def fhir_bundle(*, engine: Engine, mrn: str | None = None) -> dict[str, Any]:
    """One patient's records (NotFound if unknown), or everyone's, as a validated
    FHIR R4 Bundle ready for `json.dumps`. Serves `fhir export` and the web app's
    `GET /fhir/Patient/{mrn}/$everything`."""
    if mrn is None:
        return fhir_export.cohort_bundle(engine=engine)
    return fhir_export.patient_bundle(engine=engine, mrn=mrn)


def import_fhir(
    *, engine: Engine, path: Path, today: dt.date | None = None, progress: Progress | None = None
) -> ImportSummary:
    """Store a Bundle file, all or nothing, through the CSV import's checks."""
    return fhir_import.import_bundle_file(engine, path, today=today, progress=progress)


def export_research(
    *,
    engine: Engine,
    folder: Path,
    keep_team: bool = False,
    environ: dict[str, str] | None = None,
    today: dt.date | None = None,
) -> dict[str, int]:
    """The de-identified interchange export; refuses without HO_TRACKER_DEID_KEY."""
    key = deidentify.deid_key(environ)
    return deidentify.export_deidentified(
        engine=engine, folder=folder, key=key, keep_team=keep_team, today=today
    )


# --- DICOM headers and the sites they leave for a clinician ---


@dataclass(frozen=True)
class PendingSite:
    """A site a DICOM study named that still waits for its finding to be recorded."""

    id: int
    mrn: str
    study_id: int
    date: dt.date
    modality: str
    accession: str | None
    body_part: str  # as the header said ('' when absent)
    laterality: str
    site: str | None  # the tracker's site and side, when the header maps to one
    side: str | None
    source_file: str


def import_dicom_files(
    *, engine: Engine, paths: Sequence[Path], today: dt.date | None = None
) -> DicomSummary:
    """Studies (and pending sites) from DICOM headers, all or nothing; re-import adds
    nothing. Problems name the file and the DICOM element."""
    return import_dicom(engine, paths, today=today)


def pending_sites(*, engine: Engine, mrn: str | None = None) -> list[PendingSite]:
    """Pending sites of every patient (or one), oldest study first, for the worklist
    and the web app: each needs a clinician to record the site's finding."""
    pending, study, patient = (
        table_of(DicomPendingSite),
        table_of(ImagingStudy),
        table_of(Patient),
    )
    query = (
        sa.select(
            pending.c.id,
            patient.c.mrn,
            study.c.id,
            study.c.date,
            study.c.modality,
            study.c.accession,
            pending.c.body_part,
            pending.c.laterality,
            pending.c.site,
            pending.c.side,
            pending.c.source_file,
        )
        .select_from(pending.join(study).join(patient))
        .where(pending.c.status == "pending")
        .order_by(study.c.date, patient.c.mrn, pending.c.id)
    )
    if "voided_at" in study.c:
        query = query.where(study.c.voided_at.is_(None))
    if mrn is not None:
        query = query.where(patient.c.mrn == mrn)
    with engine.connect() as conn:
        return [PendingSite(*row) for row in conn.execute(query)]
