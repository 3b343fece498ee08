"""Shared fixtures: a migrated database on SQLite, and again on PostgreSQL when
HO_TRACKER_TEST_POSTGRES_URL is set (CI sets it and insists those tests ran)."""

from __future__ import annotations

import atexit
import csv
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.store import database

SERVER_URL = os.environ.get("HO_TRACKER_TEST_POSTGRES_URL")
# Each test run works in databases of its own on that server (made on first use,
# dropped at exit), so two runs at once (a developer's and CI's) never reset each
# other's tables.
RUN = f"ho_test_{os.getpid()}_{secrets.token_hex(3)}"
_made: list[str] = []


def private_postgres_url(name: str = "main") -> str:
    """The URL of this run's database `name` on the server of
    HO_TRACKER_TEST_POSTGRES_URL, created if missing."""
    assert SERVER_URL
    database_name = f"{RUN}_{name}"
    if database_name not in _made:
        admin = sa.create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {database_name}")
        except sa.exc.OperationalError as error:
            pytest.fail(
                f"HO_TRACKER_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {error}"
            )
        finally:
            admin.dispose()
        _made.append(database_name)
    url = sa.make_url(SERVER_URL).set(database=database_name)
    return url.render_as_string(hide_password=False)


@atexit.register
def _drop_private_databases() -> None:
    if not (SERVER_URL and _made):
        return
    admin = sa.create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in _made:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


def reset_postgres(url: str) -> Engine:
    engine = database.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    except sa.exc.OperationalError as error:  # set but unreachable: a failure, not a skip
        pytest.fail(f"HO_TRACKER_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {error}")
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database of each backend (no schema)."""
    if request.param == "sqlite":
        engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    else:
        if not SERVER_URL:
            pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
        engine = reset_postgres(private_postgres_url())
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """An engine on a database migrated to the current schema, on each backend."""
    database.upgrade(empty_engine)
    return empty_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database, for tests that are about logic, not backends."""
    engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    database.upgrade(engine)
    yield engine
    engine.dispose()


def write_csv(
    folder: Path, name: str, rows: list[dict[str, object]], header: list[str] | None = None
) -> Path:
    """Write an interchange file from dicts (header: given, or the first row's keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = header or list(rows[0].keys())
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def count_rows(engine: Engine) -> dict[str, int]:
    names = [
        "patient",
        "injury",
        "imaging_study",
        "site_finding",
        "bone_scan_measurement",
        "treatment_course",
        "procedure",
        "lab_result",
        "clinical_exam",
        "range_of_motion",
    ]
    with engine.connect() as conn:
        return {n: conn.execute(sa.text(f"SELECT count(*) FROM {n}")).scalar_one() for n in names}
