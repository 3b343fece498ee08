"""`ho-tracker board refresh`: the surgeons' board's stored site assessments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.console import BarProgress, clinic_protocol, day_or_today, open_engine, out

app = typer.Typer(help="The surgeons' board: its stored site assessments.", no_args_is_help=True)


@app.command("refresh")
def board_refresh_command(
    as_of: Annotated[
        str | None, typer.Option(help="Assess as of this date (default today).")
    ] = None,
    protocol: Annotated[
        Path | None,
        typer.Option(help="Clinic protocol TOML file (default: the web app's, from settings)."),
    ] = None,
) -> None:
    """Assess every patient and store each site's call, which the board and the patient
    search read (after each save the web app refreshes that patient's alone)."""
    from tracker.services.site_assessments import refresh_all

    day = day_or_today(as_of, "--as-of")
    rules = clinic_protocol(protocol)
    with BarProgress() as progress:
        done = refresh_all(engine=open_engine(), as_of=day, protocol=rules, progress=progress)
    out.print(
        f"Stored the assessments of {done.sites} site{'' if done.sites == 1 else 's'} of "
        f"{done.patients} patient{'' if done.patients == 1 else 's'} as of {day.isoformat()} "
        f"(protocol {done.protocol_fingerprint}).",
        soft_wrap=True,
    )
