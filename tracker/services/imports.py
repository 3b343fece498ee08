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

from sqlalchemy.engine import Engine

from tracker.interchange.csv_import import ImportSummary, import_folder
from tracker.progress import Progress
from tracker.protocol import Protocol
from tracker.services.site_assessments import assessment_state, refresh_all, refresh_patient

__all__ = ["ONE_AT_A_TIME", "import_records", "refresh_imported"]

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
) -> ImportSummary:
    """Import a folder of interchange CSVs (ValidationFailed: nothing written), then
    refresh the stored site assessments of the patients given new rows, as of
    `today` (default: today) under `protocol` (default: the spec's)."""
    today = today or dt.date.today()
    summary = import_folder(engine, folder, today=today, progress=progress, actor=actor)
    refresh_imported(engine=engine, mrns=summary.mrns_with_new_rows, as_of=today, protocol=protocol)
    return summary


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
