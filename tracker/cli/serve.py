"""`ho-tracker serve` (the web app and its reminder scheduler under uvicorn) and
`ho-tracker demo`, the newcomer's command, which loads the demo cohort first."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.cli.console import (
    DEMO_DIR,
    BarProgress,
    clinic_protocol,
    date_text,
    login_name,
    open_engine,
    out,
)
from tracker.cli.patients import print_patients

HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


def demo_command(
    data: Annotated[Path, typer.Option(help="Folder of demo CSVs.")] = DEMO_DIR,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Then run the web app and scheduler.")
    ] = True,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
) -> None:
    """Load the demo cohort (once), dated so its latest records are 3 days old, plan its
    reminders as of today, add demo users, then serve the web app."""
    from tracker.interchange.csv_import import ImportSummary
    from tracker.interchange.demo import load_demo
    from tracker.reminders.planner import plan
    from tracker.services.audit import record_views
    from tracker.services.imports import import_records
    from tracker.services.worklist import status_counts

    engine = open_engine()
    today = dt.date.today()
    actor = login_name()
    with BarProgress() as progress:

        def audited(folder: Path) -> ImportSummary:  # an import row per patient (issue 15)
            return import_records(
                engine=engine, folder=folder, actor=actor, today=today, progress=progress,
                protocol=clinic_protocol(None), source="demo cohort (command line)",
            )  # fmt: skip

        loaded = load_demo(engine, data, today=today, progress=progress, importer=audited)
    where = engine.url.render_as_string(hide_password=True)
    moved = f"{loaded.shift_days:+d} days" if loaded.shift_days else "not moved"
    latest = f", latest record {date_text(loaded.latest)}" if loaded.latest else ""
    if loaded.already_loaded:
        out.print(
            f"Demo cohort already in {where} ({loaded.summary.total_added} new rows; its dates "
            f"stay as first loaded: {moved}{latest}). For a current demo, use a new database.",
            soft_wrap=True,
        )
    else:
        out.print(
            f"Demo cohort loaded into {where} ({loaded.summary.total_added} new rows; every "
            f"date {moved}{latest}).",
            soft_wrap=True,
        )
    plan(engine=engine, as_of=today, protocol=clinic_protocol(None))

    counts = status_counts(engine=engine)

    def count(status: str | None = None) -> int:  # no status: due and sent
        wanted = (status,) if status else (vocab.ReminderStatus.due, vocab.ReminderStatus.sent)
        return sum(counts.get(str(s), 0) for s in wanted)

    out.print(
        f"Worklist as of {today.isoformat()}: {count()} reminders due, "
        f"{count(vocab.ReminderStatus.pending)} coming in the next weeks; "
        f"{count(vocab.ReminderStatus.lapsed)} lapsed (long past when first planned: kept "
        "in the patients' histories, never sent).",
        soft_wrap=True,
    )
    if not serve:
        from tracker.services.patients import list_patients

        listed = list_patients(engine=engine)
        print_patients(listed)
        record_views(
            engine=engine, actor=actor, mrns=[str(p.mrn) for p in listed],
            what="patients list (demo, command line)",
        )  # fmt: skip
        out.print("Next: `ho-tracker patient show H-READY` tells one patient's story.")
        return
    from tracker.web.launch import DEMO_PASSWORD, address, ensure_demo_users

    users = ensure_demo_users(engine=engine)
    out.print(
        f"Open {address(host, port)} and sign in as "
        + ", ".join(u.username for u in users)
        + f" (password: {DEMO_PASSWORD}). Stop with Ctrl+C."
    )
    _serve(engine, host, port)


def serve_command(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """Run the web app (and the reminder scheduler) under uvicorn; GET /healthz probes it."""
    from tracker.web.launch import address

    engine = open_engine()
    out.print(f"Serving on {address(host, port)}")
    _serve(engine, host, port)


def _serve(engine: Engine, host: str, port: int) -> None:
    from tracker.web.launch import serve

    serve(engine=engine, host=host, port=port)
