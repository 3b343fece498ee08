"""`ho-tracker users ...` and `ho-tracker audit`: the web app's users and its trail.

Command bodies live here so `tracker/cli.py` stays a list of commands; the engine
and output helpers come from there (imported inside the commands, because
`tracker.cli` imports this module).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from tracker import vocab
from tracker.errors import Problem, ValidationFailed

users_app = typer.Typer(help="Web-app users, their roles and API tokens.", no_args_is_help=True)

ROLES = ", ".join(vocab.values(vocab.Role))


def _password() -> str:
    """Prompted twice without echo at a terminal; one line of standard input otherwise
    (so `echo pw | ho-tracker users add ...` works in scripts)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    again = typer.prompt("Repeat password", hide_input=True)
    if first != again:
        raise ValidationFailed([Problem("user", None, "password", "the two entries differ")])
    return str(first)


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="The name used to sign in.")],
    role: Annotated[str, typer.Option(help=f"One of {ROLES}.")],
) -> None:
    """Add a user; the password is prompted (or read from standard input)."""
    from tracker.cli import _engine, out
    from tracker.services.users import add_user

    user = add_user(engine=_engine(), username=username, role=role, password=_password())
    out.print(f"Added {user.username} ({user.role}).")


@users_app.command("list")
def users_list() -> None:
    """Every user with role and whether they may sign in."""
    from tracker.cli import _engine, out
    from tracker.services.users import list_users

    table = Table("username", "role", "active", "created")
    for user in list_users(engine=_engine()):
        table.add_row(
            user.username, user.role, "yes" if user.active else "no", f"{user.created_at:%Y-%m-%d}"
        )
    out.print(table)


@users_app.command("reset-password")
def users_reset_password(
    username: Annotated[str, typer.Argument(help="Whose password to reset.")],
    temporary: Annotated[
        bool,
        typer.Option(
            "--temporary/--prompt",
            help="Make a temporary password and print it once (default), or prompt for one.",
        ),
    ] = True,
) -> None:
    """Reset a password; the user must choose their own at their next sign-in. The way
    back in for an admin locked out of the web app."""
    from tracker.cli import _engine, out
    from tracker.services.users import reset_password

    chosen = None if temporary else _password()
    given = reset_password(engine=_engine(), username=username, password=chosen)
    if temporary:
        print(given)
    out.print(f"Reset the password of {username}: they must choose a new one when they sign in.")


@users_app.command("role")
def users_role(
    username: Annotated[str, typer.Argument(help="Whose role to change.")],
    role: Annotated[str, typer.Argument(help=f"One of {ROLES}.")],
) -> None:
    """Change what a user may do; the last active admin keeps the role."""
    from tracker.cli import _engine, out
    from tracker.services.users import set_role

    user = set_role(engine=_engine(), username=username, role=role)
    out.print(f"{user.username} is now a {user.role}.")


@users_app.command("token")
def users_token(
    username: Annotated[str, typer.Argument(help="Whose token it is.")],
    name: Annotated[str, typer.Option(help="What the token is for (e.g. 'lab feed').")],
) -> None:
    """Issue an API token and print it once: only its hash is kept."""
    from tracker.cli import _engine
    from tracker.services.users import issue_api_token

    print(issue_api_token(engine=_engine(), username=username, name=name))


def audit_command(
    mrn: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this username.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, newest first.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """The audit trail: who created, corrected, voided or viewed what, and when."""
    from tracker.cli import _engine, _parse_date, out
    from tracker.services.audit import audit_trail

    day = _parse_date(since, "--since") if since else None
    rows = audit_trail(engine=_engine(), mrn=mrn, username=user, since=day, limit=limit)
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
