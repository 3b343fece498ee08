"""The `ho-tracker` command line: each command parses, calls one service, prints.

This module only assembles the app from one module per command group; what the
commands share (console, engine, dates, exit codes) is in `tracker.cli.console`.
User errors (TrackerError) become one clear sentence on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tracker.cli import (
    assess,
    audit,
    board,
    dicom,
    fhir,
    interchange,
    pacs,
    patients,
    reminders,
    reports,
    schema,
    serve,
    teams,
    users,
)
from tracker.cli.console import run_app, use_database

__all__ = ["app", "main", "run"]

app = typer.Typer(
    help="Follow patients at risk of heterotopic ossification from injury to a safe resection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL; default HO_TRACKER_DATABASE_URL or sqlite:///data/tracker.db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    use_database(database_url)


# `ho-tracker --help` lists commands, then groups, each in the order registered here.
app.command("scheduler")(reminders.scheduler_command)
app.command("report")(reports.report_command)
app.command("audit")(audit.audit_command)
app.command("import")(interchange.import_command)
app.command("export")(interchange.export_command)
app.command("synth")(interchange.synth_command)
app.command("assess")(assess.assess_command)
app.command("demo")(serve.demo_command)
app.command("serve")(serve.serve_command)

app.add_typer(schema.app, name="db")
app.add_typer(patients.patients_app, name="patients")
app.add_typer(patients.patient_app, name="patient")
app.add_typer(reminders.app, name="reminders")
app.add_typer(teams.app, name="teams")
app.add_typer(fhir.app, name="fhir")
app.add_typer(dicom.app, name="dicom")
app.add_typer(pacs.app, name="pacs")
app.add_typer(users.app, name="users")
app.add_typer(board.app, name="board")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    return run_app(app, argv)


def main() -> None:
    sys.exit(run())
