"""`ho-tracker fhir export|import`: FHIR R4 Bundles through `tracker.services.interop`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.console import BarProgress, err, login_name, open_engine, print_import
from tracker.errors import TrackerError

app = typer.Typer(help="FHIR R4 Bundles in and out.", no_args_is_help=True)


@app.command("export")
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
    from tracker.services.audit import record_cohort_view, record_view
    from tracker.services.interop import fhir_bundle

    if (mrn is None) == (not everyone):
        raise TrackerError("Name one patient (ho-tracker fhir export MRN) or use --all, not both.")
    engine = open_engine()
    bundle = fhir_bundle(engine=engine, mrn=None if everyone else mrn)
    if mrn is None:
        record_cohort_view(engine=engine, actor=login_name(), what="FHIR export (command line)")
    else:
        record_view(engine=engine, actor=login_name(), mrn=mrn, what="FHIR export (command line)")
    text = json.dumps(bundle, ensure_ascii=False, indent=1) + "\n"
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f".{out_file.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, out_file)  # a reader never sees half a Bundle
    err.print(f"Wrote {len(bundle.get('entry', []))} resources to {out_file}.")


@app.command("import")
def fhir_import_command(
    bundle: Annotated[Path, typer.Argument(help="A FHIR Bundle JSON file.")],
) -> None:
    """Import a FHIR Bundle, all or nothing, with the CSV import's checks."""
    from tracker.services.imports import import_fhir

    if not bundle.is_file():
        raise TrackerError(f"{bundle} is not a file; name a FHIR Bundle JSON file.")
    with BarProgress() as progress:
        summary = import_fhir(
            engine=open_engine(), path=bundle, actor=login_name(), progress=progress
        )
    print_import(summary.added, summary.unchanged)
