"""What every command shares: the console, the database, dates, progress, exit codes.

User errors (TrackerError) become one clear sentence on stderr and exit code 2; a
rejected import lists every problem as `file:line: field: reason` first. That
mapping lives here, once (`run_app`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar
from rich.table import Table
from sqlalchemy.engine import Engine

from tracker.errors import TrackerError, ValidationFailed
from tracker.protocol import Protocol
from tracker.store import database
from tracker.values import as_of_problem

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "data" / "demo"

# Piped output (files, CI logs) gets a wide page so tables are never cut.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


class _Database:
    url: str | None = None


_database = _Database()


def use_database(url: str | None) -> None:
    """Remember `--database-url` for `open_engine` (None: the settings' URL)."""
    _database.url = url


def open_engine(*, migrate_fresh: bool = True) -> Engine:
    """The engine of `--database-url` (or the settings'); a fresh database is migrated."""
    engine = database.make_engine(_database.url)
    if migrate_fresh:
        database.ensure_ready(engine)
    return engine


def clinic_protocol(path: Path | None) -> Protocol:
    """The protocol in `path`, else the clinic's (HO_TRACKER_PROTOCOL_FILE), else the
    spec's defaults: what the web app and the scheduler use."""
    from tracker.config import get_settings
    from tracker.services.assessment import protocol_from

    return protocol_from(path or get_settings().protocol_file)


def parse_date(text: str, option: str) -> dt.date:
    """A YYYY-MM-DD option value, or a sentence naming the option."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TrackerError(f"{option} '{text}' is not a date in the form YYYY-MM-DD.") from None


def day_or_today(text: str | None, option: str) -> dt.date:
    """The as-of date given with `option`, or today when it was left out; it has the
    bounds of an as-of date (tracker.values.as_of_problem), as on the web."""
    if not text:
        return dt.date.today()
    day = parse_date(text, option)
    problem = as_of_problem(day, today=dt.date.today())
    if problem is not None:
        raise TrackerError(f"{option} {problem}.")
    return day


def date_text(value: dt.date | None) -> str:
    """A date as printed in tables: ISO, or empty when unknown."""
    return value.isoformat() if value else ""


def login_name() -> str:
    """Who runs the command, for the audit trail."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return "cli"


def print_import(added: dict[str, int], unchanged: dict[str, int]) -> None:
    """The table an import (CSV or FHIR) ends with."""
    table = Table("file", "added", "already stored", title="Import")
    for name in added:
        table.add_row(name, str(added[name]), str(unchanged.get(name, 0)))
    out.print(table)
    out.print(f"{sum(added.values())} rows added.")


class BarProgress:
    """A rich progress bar on stderr, shown only when a person is watching."""

    def __init__(self) -> None:
        self.bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self.task: int | None = None

    def __enter__(self) -> BarProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def start(self, description: str, total: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)  # type: ignore[arg-type]
        self.task = self.bar.add_task(description, total=total)

    def advance(self, done: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, done)  # type: ignore[arg-type]


def run_app(app: typer.Typer, argv: list[str] | None) -> int:
    """Run `app` and return its exit code: 0 done, 2 a user error (usage, or a
    TrackerError told in a sentence on stderr)."""
    try:
        app(args=argv, prog_name="ho-tracker")
    except SystemExit as done:  # Typer's normal way out, usage errors included (2)
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ValidationFailed as failed:
        for problem in failed.problems:
            print(str(problem), file=sys.stderr)
        print(f"Nothing was written: {failed}", file=sys.stderr)
        return 2
    except TrackerError as error:
        print(str(error), file=sys.stderr)
        return 2
    return 0
