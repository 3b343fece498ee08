"""Interoperability: FHIR R4 Bundles in and out, the de-identified research export,
DICOM header import and the sites it leaves for a clinician. The CLI and the web
app call these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import Conflict, NotFound, Problem, ValidationFailed
from tracker.interchange import deidentify, fhir_export, fhir_import
from tracker.interchange.csv_import import ImportSummary
from tracker.interchange.dicom_import import DicomSummary, import_dicom
from tracker.progress import Progress
from tracker.protocol import Protocol
from tracker.services.imaging_records import correct_imaging_study
from tracker.store.models import DicomPendingSite, ImagingStudy, Patient, SiteFinding, table_of


def fhir_bundle(
    *, engine: Engine, mrn: str | None = None, protocol: Protocol | None = None
) -> dict[str, Any]:
    """One patient's records (NotFound if unknown), or everyone's, as a validated
    FHIR R4 Bundle ready for `json.dumps`; each derived stage names the model and
    `protocol` (default: the spec's) behind it. Serves `fhir export` and the web
    app's `GET /fhir/Patient/{mrn}/$everything`."""
    if mrn is None:
        return fhir_export.cohort_bundle(engine=engine, protocol=protocol)
    return fhir_export.patient_bundle(engine=engine, mrn=mrn, protocol=protocol)


def fhir_service_requests(
    *,
    engine: Engine,
    mrn: str | None = None,
    statuses: Collection[str] | None = None,
    protocol: Protocol | None = None,
    today: dt.date | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """One patient's imaging reminders (NotFound if the patient is unknown), or every
    patient's, as FHIR ServiceRequests, those of `statuses` (FHIR request statuses;
    default all), as a validated searchset Bundle, with the mrns of the patients it
    shows (for the audit): `GET /fhir/ServiceRequest?patient=MRN`. Each is the
    ServiceRequest that patient's `$everything` holds."""
    from fhir.resources.R4B.bundle import Bundle

    from tracker.interchange import fhir_requests

    protocol = protocol or Protocol()
    frames = fhir_export.read_records(engine, mrn)
    with engine.connect() as conn:
        reminders = fhir_requests.read_reminders(conn, mrn)
    day = today or dt.date.today()
    by_patient = fhir_requests.service_requests(reminders, frames, protocol, day)
    found, shown = [], []
    for patient_mrn, resources in by_patient.items():
        kept = [r for r in resources if statuses is None or r["status"] in statuses]
        found += kept
        shown += [patient_mrn] if kept else []
    bundle = fhir_requests.searchset(found)
    Bundle.model_validate(bundle)
    return bundle, shown


def import_fhir(
    *, engine: Engine, path: Path, today: dt.date | None = None, progress: Progress | None = None
) -> ImportSummary:
    """Store a Bundle file, all or nothing, through the CSV import's checks; then the
    stored site assessments of its patients are refreshed (services/imports.py)."""
    from tracker.services.imports import refresh_imported

    summary = fhir_import.import_bundle_file(engine, path, today=today, progress=progress)
    day = today or dt.date.today()
    refresh_imported(engine=engine, mrns=summary.mrns_with_new_rows, as_of=day)
    return summary


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
    status: str = "pending"  # or 'completed', once a matching finding is stored
    completed_at: dt.datetime | None = None
    completed_by: str | None = None


def import_dicom_files(
    *, engine: Engine, paths: Sequence[Path], today: dt.date | None = None
) -> DicomSummary:
    """Studies (and pending sites) from DICOM headers, all or nothing; re-import adds
    nothing. Problems name the file and the DICOM element."""
    return import_dicom(engine, paths, today=today)


_pending, _study, _patient = table_of(DicomPendingSite), table_of(ImagingStudy), table_of(Patient)


def _pending_query() -> sa.Select:
    pending, study, patient = _pending.c, _study.c, _patient.c
    return sa.select(
        pending.id,
        patient.mrn,
        study.id,
        study.date,
        study.modality,
        study.accession,
        pending.body_part,
        pending.laterality,
        pending.site,
        pending.side,
        pending.source_file,
        pending.status,
        pending.completed_at,
        pending.completed_by,
    ).select_from(_pending.join(_study).join(_patient))


def pending_sites(
    *,
    engine: Engine,
    mrn: str | None = None,
    include_completed: bool = False,
    limit: int | None = None,
) -> list[PendingSite]:
    """Pending sites of every patient (or one), oldest study first, for the worklist
    and the web app: each needs a clinician to record the site's finding. One query
    (the patient page relies on it). With `include_completed`, completed ones too;
    with `limit`, the oldest that many (the worklist's page)."""
    query = _pending_query().order_by(_study.c.date, _patient.c.mrn, _pending.c.id)
    query = query.where(_study.c.voided_at.is_(None))
    if not include_completed:
        query = query.where(_pending.c.status == "pending")
    if mrn is not None:
        query = query.where(_patient.c.mrn == mrn)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [PendingSite(*row) for row in conn.execute(query)]


def pending_site(*, engine: Engine, pending_id: int) -> PendingSite:
    """One pending site (pending or completed) by id; NotFound if there is none."""
    with engine.connect() as conn:
        row = conn.execute(_pending_query().where(_pending.c.id == pending_id)).first()
    if row is None:
        raise NotFound(
            f"There is no pending DICOM site {pending_id}; `ho-tracker dicom pending` lists them."
        )
    return PendingSite(*row)


def complete_pending_site(
    *,
    engine: Engine,
    actor: str,
    pending_id: int,
    finding: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> PendingSite:
    """Record the finding of a pending site (ho, and site, side and features when given)
    as a new finding of its study through `correct_imaging_study`, so checks, version
    and audit are the web form's; a finding that matches completes the site. Site and
    side default to the ones the header maps to. Returns the site as it now stands
    (still pending if a site or side other than its own was given). With the clinic
    `protocol`, the patient's reminders are re-planned at once, so the reminder the
    study satisfies (a monitoring radiograph, issue 17) closes with it."""
    site = pending_site(engine=engine, pending_id=pending_id)
    if site.status != "pending":
        raise Conflict(
            f"Pending DICOM site {pending_id} was already completed by "
            f"{site.completed_by or 'someone'}; correct its finding on the study instead."
        )
    row = {k: v for k, v in finding.items() if v not in (None, "")}
    row.setdefault("site", site.site)
    row.setdefault("side", site.side)
    header = {"site": f"body part '{site.body_part}'", "side": f"laterality '{site.laterality}'"}
    missing = [name for name in ("site", "side") if row[name] is None]
    if missing:
        raise ValidationFailed(
            Problem(
                "dicom_pending_site",
                None,
                name,
                f"the header's {header[name]} maps to no tracker {name}; name the {name}",
            )
            for name in missing
        )
    finding_c, study_c = table_of(SiteFinding).c, _study.c
    with engine.connect() as conn:
        version = conn.execute(
            sa.select(study_c.version).where(study_c.id == site.study_id)
        ).scalar_one()
        live = conn.execute(
            sa.select(finding_c.id).where(
                finding_c.study_id == site.study_id, finding_c.voided_at.is_(None)
            )
        ).scalars()
        # the study's findings are named unchanged, so the new row is added after them
        rows = [{"id": fid} for fid in live] + [row]
    correct_imaging_study(
        engine=engine,
        actor=actor,
        record_id=site.study_id,
        expected_version=version,
        changes={"findings": rows},
        today=today,
        protocol=protocol,
    )
    return pending_site(engine=engine, pending_id=pending_id)
