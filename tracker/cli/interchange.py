"""`ho-tracker import|export|synth`: interchange CSV v1 in and out, synthetic cohorts.

`export --deidentified` is the research export (`tracker.services.interop`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tracker.cli.console import (
    BarProgress,
    clinic_protocol,
    login_name,
    open_engine,
    out,
    parse_date,
    print_import,
)


def import_command(
    folder: Annotated[Path, typer.Argument(help="Folder of interchange CSV files.")],
) -> None:
    """Import interchange CSVs, all or nothing; every bad row is listed with its line."""
    from tracker.services.imports import import_records

    engine = open_engine()
    with BarProgress() as progress:
        # the board's stored assessments follow the imported patients (issue 14)
        summary = import_records(
            engine=engine, folder=folder, actor=login_name(), protocol=clinic_protocol(None),
            progress=progress, source=f"CSV import of {folder.name}",
        )  # fmt: skip
    print_import(summary.added, summary.unchanged)


def export_command(
    folder: Annotated[Path, typer.Argument(help="Folder to write the CSV files into.")],
    deidentified: Annotated[
        bool,
        typer.Option(
            "--deidentified",
            help="For research: mrn hashed with HO_TRACKER_DEID_KEY, identifiers dropped, "
            "dates shifted per patient.",
        ),
    ] = False,
    keep_team: Annotated[
        bool, typer.Option("--keep-team", help="With --deidentified: keep the team column.")
    ] = False,
) -> None:
    """Export every record as interchange CSV v1."""
    if deidentified:
        _export_deidentified(folder, keep_team)
        return
    from tracker.interchange.csv_export import export_folder
    from tracker.services.audit import record_cohort_view

    engine = open_engine()
    with BarProgress() as progress:
        counts = export_folder(engine, folder, progress=progress)
    record_cohort_view(engine=engine, actor=login_name(), what="CSV export (command line)")
    out.print(f"Wrote {sum(counts.values())} rows in {len(counts)} files to {folder}.")


def _export_deidentified(folder: Path, keep_team: bool) -> None:
    from tracker.services.audit import record_cohort_view
    from tracker.services.interop import export_research

    engine = open_engine()
    counts = export_research(engine=engine, folder=folder, keep_team=keep_team)
    what = "de-identified research export (command line)"
    record_cohort_view(engine=engine, actor=login_name(), what=what)
    out.print(
        f"Wrote {sum(counts.values())} de-identified rows in {len(counts)} files to {folder} "
        "(mrn hashed, names, birth dates, accession numbers and notes dropped, dates shifted)."
    )


def synth_command(
    patients: Annotated[int, typer.Option(min=1, help="How many patients.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the CSV files.")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 1,
    until: Annotated[str | None, typer.Option(help="Last date of the cohort (YYYY-MM-DD).")] = None,
) -> None:
    """Write a synthetic cohort with realistic HO trajectories as interchange CSVs."""
    from tracker.interchange import synth

    kwargs: dict[str, Any] = {}
    if until:
        kwargs["until"] = parse_date(until, "--until")
    with BarProgress() as progress:
        progress.start("Generating patients", patients)
        counts = synth.write_cohort(
            out_dir, patients=patients, seed=seed, progress=progress.advance, **kwargs
        )
    out.print(f"Wrote {sum(counts.values())} rows for {patients} patients to {out_dir}.")
