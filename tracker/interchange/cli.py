"""`ho-tracker fhir export|import`, `ho-tracker dicom import` and the research export.

Registered in `tracker.cli`; like every command each parses, calls one service in
`tracker.services.interop` and prints what happened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from tracker.errors import TrackerError

fhir_app = typer.Typer(help="FHIR R4 Bundles in and out.", no_args_is_help=True)


@fhir_app.command("export")
def fhir_export_command(
    mrn: Annotated[
        str | None, typer.Argument(help="The patient's mrn.", show_default=False)
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every patient in one Bundle.")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the Bundle JSON here, not to stdout.")
    ] = None,
) -> None:
    """Export one patient (MRN) or everyone (--all) as a FHIR R4 Bundle (JSON)."""
    from tracker.cli import _engine, err
    from tracker.services.interop import fhir_bundle

    if (mrn is None) == (not everyone):
        raise TrackerError("Name one patient (ho-tracker fhir export MRN) or use --all, not both.")
    bundle = fhir_bundle(engine=_engine(), mrn=None if everyone else mrn)
    text = json.dumps(bundle, ensure_ascii=False, indent=1) + "\n"
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, out_file)
    err.print(f"Wrote {len(bundle.get('entry', []))} resources to {out_file}.")


@fhir_app.command("import")
def fhir_import_command(
    bundle: Annotated[Path, typer.Argument(help="A FHIR Bundle JSON file.")],
) -> None:
    """Import a FHIR Bundle, all or nothing, with the CSV import's checks."""
    from tracker.cli import BarProgress, _engine, _print_import
    from tracker.services.interop import import_fhir

    if not bundle.is_file():
        raise TrackerError(f"{bundle} is not a file; name a FHIR Bundle JSON file.")
    with BarProgress() as progress:
        summary = import_fhir(engine=_engine(), path=bundle, progress=progress)
    _print_import(summary.added, summary.unchanged)


def export_deidentified(folder: Path, keep_team: bool) -> None:
    """The body of `ho-tracker export --deidentified DIR`."""
    from tracker.cli import _engine, out
    from tracker.services.interop import export_research

    counts = export_research(engine=_engine(), folder=folder, keep_team=keep_team)
    out.print(
        f"Wrote {sum(counts.values())} de-identified rows in {len(counts)} files to {folder} "
        "(mrn hashed, names, birth dates, accession numbers and notes dropped, dates shifted)."
    )


dicom_app = typer.Typer(help="Imaging studies from DICOM headers.", no_args_is_help=True)


@dicom_app.command("import")
def dicom_import_command(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files, or folders of them.")],
) -> None:
    """Add imaging studies from DICOM headers (no pixel data needed); each body part
    and laterality becomes a pending site for a clinician. Re-importing adds nothing."""
    from tracker.cli import _engine, out
    from tracker.services.interop import import_dicom_files

    summary = import_dicom_files(engine=_engine(), paths=paths)
    out.print(
        f"Read {summary.files} files: {summary.studies_added} studies and "
        f"{summary.sites_added} pending sites added, {summary.unchanged} already stored."
    )


@dicom_app.command("pending")
def dicom_pending_command(
    mrn: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
) -> None:
    """Sites named by DICOM studies that still wait for a clinician's finding."""
    from rich.table import Table

    from tracker.cli import _engine, out
    from tracker.services.interop import pending_sites

    rows = pending_sites(engine=_engine(), mrn=mrn)
    table = Table(
        "id",
        "mrn",
        "date",
        "modality",
        "accession",
        "body part",
        "laterality",
        "site",
        "side",
        title=f"{len(rows)} pending sites",
    )
    for row in rows:
        table.add_row(
            str(row.id),
            row.mrn,
            row.date.isoformat(),
            row.modality,
            row.accession or "",
            row.body_part,
            row.laterality,
            row.site or "?",
            row.side or "?",
        )
    out.print(table)
