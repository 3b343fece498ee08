"""The engine, schema readiness and Alembic migrations.

SQLite is the single-machine default (WAL, foreign keys on); PostgreSQL serves a
multi-user unit. A fresh SQLite file is brought to the current schema on first
use; any other database must be upgraded on purpose with `ho-tracker db upgrade`,
so that nobody migrates a shared hospital database by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.config import get_settings
from tracker.errors import DatabaseNotReady

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "memory":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: settings), with SQLite tuned for the tracker."""
    url = url or get_settings().database_url
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    command.downgrade(alembic_config(engine), revision)


def _is_empty(engine: Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


def ensure_ready(engine: Engine) -> None:
    """Make sure the schema matches the code, or explain how to get there.

    A fresh (empty) SQLite database is upgraded in place; anything else that is
    not at the current revision raises DatabaseNotReady naming the fix.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if engine.dialect.name == "sqlite" and current is None and _is_empty(engine):
        upgrade(engine)
        return
    where = engine.url.render_as_string(hide_password=True)
    state = "has no tracker schema" if current is None else f"is at revision {current}"
    raise DatabaseNotReady(
        f"The database {where} {state}, but this version of ho-tracker needs revision "
        f"{head}: run `ho-tracker db upgrade` first."
    )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
