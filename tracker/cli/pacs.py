"""`ho-tracker pacs poll|status`: the PACS feed over DICOMweb (`tracker.pacs`)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tracker.cli.console import login_name, open_engine, out, parse_date
from tracker.errors import TrackerError
from tracker.pacs.settings import PacsSettings

app = typer.Typer(help="Imaging studies read from the PACS (DICOMweb).", no_args_is_help=True)


def _settings() -> PacsSettings:
    settings = PacsSettings.from_environ(os.environ)
    if settings is None:
        raise TrackerError(
            "No PACS is configured; set HO_TRACKER_PACS_URL to its DICOMweb root "
            "(e.g. http://pacs:8042/dicom-web)."
        )
    return settings


@app.command("poll")
def pacs_poll_command(
    since: Annotated[
        str | None,
        typer.Option(help="Read studies from this date (YYYY-MM-DD); default the position."),
    ] = None,
    mrn: Annotated[
        str | None,
        typer.Option(help="Only this patient (PatientID = MRN); the position is kept."),
    ] = None,
) -> None:
    """Read new studies from the PACS now: headers only (QIDO-RS), never pixels. Each
    new study of a tracked patient becomes an imaging study with a pending site."""
    from tracker.pacs import poll

    settings = _settings()
    start = parse_date(since, "--since") if since else None
    report = poll(engine=open_engine(), settings=settings, since=start, mrn=mrn, actor=login_name())
    for sentence in report.sentences():
        out.print(sentence)


@app.command("status")
def pacs_status_command() -> None:
    """Where the PACS feed stands: the dates read, the last successful poll, the last
    error and the back-off."""
    from tracker.pacs import read_state, status_sentences

    settings = _settings()
    out.print(f"PACS: {settings.url} (polled every {settings.poll_minutes} minutes).")
    for sentence in status_sentences(read_state(engine=open_engine())):
        out.print(sentence)
