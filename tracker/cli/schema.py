"""`ho-tracker db upgrade|downgrade|current`: the database schema (Alembic)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.cli.console import open_engine, out
from tracker.store import database

app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (creates it on an empty database)."""
    engine = open_engine(migrate_fresh=False)
    database.upgrade(engine, revision)
    out.print(f"Database at revision {database.current_revision(engine)}.")


@app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision ('base' removes all).")] = "-1",
) -> None:
    """Step the schema back (default one revision)."""
    engine = open_engine(migrate_fresh=False)
    database.downgrade(engine, revision)
    out.print(f"Database at revision {database.current_revision(engine) or 'base (empty)'}.")


@app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this version needs."""
    engine = open_engine(migrate_fresh=False)
    current = database.current_revision(engine) or "none"
    out.print(f"Database revision: {current}; this version needs {database.head_revision()}.")
