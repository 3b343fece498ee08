"""Bulk imports as the web app and the CLI run them: the interchange import itself
(`interchange.csv_import`, all or nothing), then the stored site assessments of the
patients it added records to, so that they reach the surgeons' board and the patient
search at once (issue 14) instead of at the next refresh.

The import is committed before the assessments are refreshed: a failed refresh is
logged, not raised (the records stand; the daily refresh or the board's Refresh
catches up), as after a save (`record_store.follow_record`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from tracker.interchange.csv_import import ImportSummary, import_folder
from tracker.progress import Progress
from tracker.protocol import Protocol
from tracker.services.audit import import_recorder
from tracker.services.site_assessments import assessment_state, refresh_all, refresh_patient

if TYPE_CHECKING:
    from tracker.interchange.dicom_import import DicomSummary

__all__ = ["ONE_AT_A_TIME", "import_dicom", "import_fhir", "import_records", "refresh_imported"]

log = logging.getLogger(__name__)

# Up to this many patients, each is assessed on its own (the one-patient path); more,
# and one cohort run for everyone is quicker than that many single runs.
ONE_AT_A_TIME = 200


def import_records(
    *,
    engine: Engine,
    folder: Path,
    actor: str | None = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
    progress: Progress | None = None,
    source: str = "CSV import",
) -> ImportSummary:
    """Import a folder of interchange CSVs (ValidationFailed: nothing written), with an
    audit row per patient given records, by `actor`, in the import's transaction
    (issue 15); then refresh the stored site assessments of those patients, as of
    `today` (default: today) under `protocol` (default: the spec's)."""
    today = today or dt.date.today()
    summary = import_folder(
        engine, folder, today=today, progress=progress, actor=actor,
        audit=import_recorder(actor=actor, source=source),
    )  # fmt: skip
    refresh_imported(engine=engine, mrns=summary.mrns_with_new_rows, as_of=today, protocol=protocol)
    return summary


def import_fhir(
    *,
    engine: Engine,
    path: Path,
    actor: str | None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """A FHIR Bundle file, all or nothing, through the CSV import's checks, audited as
    `import_records` is; then its patients' stored assessments are refreshed."""
    from tracker.interchange.fhir_import import import_bundle_file

    today = today or dt.date.today()
    audit = import_recorder(actor=actor, source=f"FHIR Bundle {path.name}")
    summary = import_bundle_file(engine, path, today=today, progress=progress, audit=audit)
    refresh_imported(engine=engine, mrns=summary.mrns_with_new_rows, as_of=today, protocol=protocol)
    return summary


def import_dicom(
    *, engine: Engine, paths: Sequence[Path], actor: str | None, today: dt.date | None = None
) -> DicomSummary:
    """Imaging studies (and pending sites) from DICOM headers, all or nothing, with an
    audit row per patient given a study or site, in the import's transaction."""
    from tracker.interchange.dicom_import import import_dicom as store_headers

    audit = import_recorder(actor=actor, source="DICOM headers")
    return store_headers(engine, paths, today=today, audit=audit)


def refresh_imported(
    *,
    engine: Engine,
    mrns: Sequence[str],
    as_of: dt.date,
    protocol: Protocol | None = None,
) -> None:
    """Assess these patients again and store their calls. Nothing is done while no call
    is stored at all: the board (and a filtered patient search) store everyone's on
    first use. Failures are logged: the imported records are already committed."""
    if not mrns:
        return
    protocol = protocol or Protocol()
    try:
        if assessment_state(engine=engine).empty:
            return
        if len(mrns) > ONE_AT_A_TIME:
            refresh_all(engine=engine, as_of=as_of, protocol=protocol)
            return
        for mrn in mrns:
            refresh_patient(engine=engine, mrn=mrn, as_of=as_of, protocol=protocol)
    except Exception:  # noqa: BLE001 - the import stands; the next refresh catches up
        log.exception("stored assessments not refreshed after importing %d patients", len(mrns))
