"""`ho-tracker teams add|list`: teams (units, wards) and where their reminders go.

Putting a patient in a team is `ho-tracker patient set-team` (`tracker.cli.patients`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tracker.cli.console import login_name, open_engine, out

app = typer.Typer(help="Teams (units, wards) and where their reminders go.", no_args_is_help=True)


@app.command("add")
def teams_add(
    name: Annotated[str, typer.Argument(help="Team name, as in patients.csv.")],
    email: Annotated[str | None, typer.Option(help="Where the team's reminders go.")] = None,
    escalation_email: Annotated[
        str | None, typer.Option(help="Where escalations go (default: --email).")
    ] = None,
) -> None:
    """Add a team, or set the addresses of an existing one."""
    from tracker.services.teams import add_team

    new = add_team(
        engine=open_engine(), name=name, email=email, escalation_email=escalation_email,
        actor=login_name(),
    )  # fmt: skip
    out.print(f"Team {name} {'added' if new else 'updated'}.")


@app.command("list")
def teams_list() -> None:
    """Every team with its addresses and number of patients."""
    from tracker.services.teams import list_teams

    table = Table("team", "e-mail", "escalation e-mail", "patients", title="Teams")
    for item in list_teams(engine=open_engine()):
        table.add_row(
            item.name, item.email or "(none: reminders wait)", item.escalation_email or "",
            str(item.patients),
        )  # fmt: skip
    out.print(table)
