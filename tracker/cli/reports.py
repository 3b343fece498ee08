"""`ho-tracker report`: a patient's report, or with --board the cohort board."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.console import day_or_today, login_name, open_engine, out
from tracker.errors import TrackerError

DEFAULT_OUT = Path("reports")


def report_command(
    mrn: Annotated[
        str | None, typer.Argument(help="The patient's mrn.", show_default=False)
    ] = None,
    board: Annotated[
        bool, typer.Option("--board", help="The cohort board instead of one patient.")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option(help="Report as of this date, YYYY-MM-DD (default today).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="html or pdf (the report); png or svg (its trend figure alone).",
        ),
    ] = "html",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = DEFAULT_OUT,
    protocol: Annotated[
        Path | None,
        typer.Option(help="Clinic protocol TOML file (default: the spec's defaults)."),
    ] = None,
) -> None:
    """Write a surgeon's report for a patient (readiness, trend figure, timeline,
    reminders), or with --board the cohort board, as HTML or PDF."""
    from tracker.services.assessment import protocol_from
    from tracker.services.audit import record_view, record_views
    from tracker.services.reports import (
        board_report,
        check_format,
        patient_report,
        write_board_report,
        write_patient_report,
    )

    check_format(fmt)
    day = day_or_today(as_of, "--as-of")
    rules = protocol_from(protocol)
    source = protocol.name if protocol is not None else "the spec's defaults"
    if board:
        if mrn is not None:
            raise TrackerError(f"Name one patient ({mrn}) or use --board, not both.")
        engine = open_engine()
        cohort = board_report(engine=engine, as_of=day, protocol=rules, protocol_name=source)
        path = write_board_report(cohort, out_dir, fmt)
        record_views(
            engine=engine, actor=login_name(), mrns=[str(s.mrn) for s in cohort.sites],
            what=f"board report, {fmt} (command line)",
        )  # fmt: skip
        out.print(
            f"Wrote the cohort board as of {day.isoformat()} ({len(cohort.sites)} sites of "
            f"{cohort.patients} patients) to {path}."
        )
        return
    if mrn is None:
        raise TrackerError("Name a patient (ho-tracker report MRN), or use --board.")
    engine = open_engine()
    report = patient_report(engine=engine, mrn=mrn, as_of=day, protocol=rules, protocol_name=source)
    path = write_patient_report(report, out_dir, fmt)
    record_view(engine=engine, actor=login_name(), mrn=mrn, what=f"{fmt} report (command line)")
    out.print(f"Wrote the report of {mrn} as of {day.isoformat()} to {path}.")
