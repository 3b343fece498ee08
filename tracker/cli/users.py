"""`ho-tracker users add|list|reset-password|role|token`: the web app's users."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from tracker import vocab
from tracker.cli.console import open_engine, out
from tracker.errors import Problem, ValidationFailed

app = typer.Typer(help="Web-app users, their roles and API tokens.", no_args_is_help=True)

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


@app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="The name used to sign in.")],
    role: Annotated[str, typer.Option(help=f"One of {ROLES}.")],
) -> None:
    """Add a user; the password is prompted (or read from standard input)."""
    from tracker.services.users import add_user

    user = add_user(engine=open_engine(), username=username, role=role, password=_password())
    out.print(f"Added {user.username} ({user.role}).")


@app.command("list")
def users_list() -> None:
    """Every user with role and whether they may sign in."""
    from tracker.services.users import list_users

    table = Table("username", "role", "active", "created")
    for user in list_users(engine=open_engine()):
        table.add_row(
            user.username, user.role, "yes" if user.active else "no", f"{user.created_at:%Y-%m-%d}"
        )
    out.print(table)


@app.command("reset-password")
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
    from tracker.services.users import reset_password

    chosen = None if temporary else _password()
    given = reset_password(engine=open_engine(), username=username, password=chosen)
    if temporary:
        print(given)
    out.print(f"Reset the password of {username}: they must choose a new one when they sign in.")


@app.command("role")
def users_role(
    username: Annotated[str, typer.Argument(help="Whose role to change.")],
    role: Annotated[str, typer.Argument(help=f"One of {ROLES}.")],
) -> None:
    """Change what a user may do; the last active admin keeps the role."""
    from tracker.services.users import set_role

    user = set_role(engine=open_engine(), username=username, role=role)
    out.print(f"{user.username} is now a {user.role}.")


@app.command("token")
def users_token(
    username: Annotated[str, typer.Argument(help="Whose token it is.")],
    name: Annotated[str, typer.Option(help="What the token is for (e.g. 'lab feed').")],
) -> None:
    """Issue an API token and print it once: only its hash is kept."""
    from tracker.services.users import issue_api_token

    print(issue_api_token(engine=open_engine(), username=username, name=name))
