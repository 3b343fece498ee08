"""`ho-tracker audit`: the audit trail of the records and the web app."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tracker.cli.console import login_name, open_engine, out, parse_date


def audit_command(
    mrn: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this username.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, newest first.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """The audit trail: who created, corrected, voided or viewed what, and when."""
    from tracker.services.audit import audit_trail, record_views

    day = parse_date(since, "--since") if since else None
    engine = open_engine()
    rows = audit_trail(engine=engine, mrn=mrn, username=user, since=day, limit=limit)
    # the listing names patients: a view of each MRN listed (issue 15)
    record_views(
        engine=engine, actor=login_name(), mrns=[row.mrn for row in rows if row.mrn],
        what="audit trail (command line)",
        search={"mrn": mrn, "user": user, "since": since, "limit": limit},
    )  # fmt: skip
    if as_json:
        print(json.dumps([row.as_json() for row in rows], indent=1, default=str))
        return
    table = Table("when (UTC)", "who", "action", "record", "mrn")
    for row in rows:
        record = f"{row.entity} {row.entity_id}" if row.entity_id is not None else row.entity or ""
        table.add_row(
            f"{row.at:%Y-%m-%d %H:%M:%S}",
            row.username or "system",
            row.action,
            record,
            row.mrn or "",
        )
    out.print(table)
