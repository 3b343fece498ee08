"""The schema: migrations agree with the models, and the rules hold in the database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from tests.conftest import SERVER_URL, private_postgres_url, reset_postgres
from tracker.errors import DatabaseNotReady
from tracker.store import database
from tracker.store.models import Patient


def test_migrations_and_models_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(engine: Engine) -> None:
    database.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    database.upgrade(engine)
    assert database.current_revision(engine) == database.head_revision()
    assert "site_finding" in sa.inspect(engine).get_table_names()


def test_fresh_sqlite_file_is_upgraded_on_first_use(tmp_path) -> None:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'new' / 'tracker.db'}")
    database.ensure_ready(engine)
    assert database.current_revision(engine) == database.head_revision()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_database_behind_the_code_is_refused_with_the_upgrade_command(engine: Engine) -> None:
    database.downgrade(engine, "base")
    with pytest.raises(DatabaseNotReady, match="ho-tracker db upgrade"):
        database.ensure_ready(engine)


@pytest.mark.postgres
def test_fresh_postgres_database_is_not_migrated_behind_the_users_back() -> None:
    if not SERVER_URL:
        pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
    engine = reset_postgres(private_postgres_url())
    with pytest.raises(DatabaseNotReady, match="run `ho-tracker db upgrade`"):
        database.ensure_ready(engine)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


PATIENT = "INSERT INTO patient (mrn) VALUES ('P1')"


def _pid(conn: sa.Connection) -> int:
    return conn.execute(sa.text("SELECT id FROM patient WHERE mrn = 'P1'")).scalar_one()


BAD_ROWS = {
    "ratio must be positive": (
        "INSERT INTO bone_scan_measurement (patient_id, date, site, side, phase, ratio) "
        "VALUES ({pid}, '2024-01-01', 'hip', 'left', 'delayed', 0)"
    ),
    "brooker 0 to 4": (
        "INSERT INTO imaging_study (patient_id, date, modality) "
        "VALUES ({pid}, '2024-01-01', 'radiograph');"
        "INSERT INTO site_finding (study_id, site, side, ho, brooker) "
        "VALUES ((SELECT max(id) FROM imaging_study), 'hip', 'left', 'present', 5)"
    ),
    "course ends after it starts": (
        "INSERT INTO treatment_course (patient_id, agent, intent, start_date, end_date) "
        "VALUES ({pid}, 'indomethacin', 'prophylaxis', '2024-02-01', '2024-01-01')"
    ),
    "injury kind from the vocabulary": (
        "INSERT INTO injury (patient_id, kind, date) VALUES ({pid}, 'sci', '2024-01-01')"
    ),
    "side from the vocabulary": (
        "INSERT INTO procedure (patient_id, kind, date, site, side) "
        "VALUES ({pid}, 'resection', '2024-01-01', 'hip', 'both')"
    ),
    "records belong to a stored patient": (
        "INSERT INTO lab_result (patient_id, date, analyte, value, unit) "
        "VALUES (999999, '2024-01-01', 'alp', 100, 'U/L')"
    ),
    "natural key is unique": (
        "INSERT INTO injury (patient_id, kind, date) VALUES ({pid}, 'burn', '2024-01-01');"
        "INSERT INTO injury (patient_id, kind, date) VALUES ({pid}, 'burn', '2024-01-01')"
    ),
    "study without accession is unique per day and modality": (
        "INSERT INTO imaging_study (patient_id, date, modality) VALUES ({pid}, '2024-01-01', 'ct');"
        "INSERT INTO imaging_study (patient_id, date, modality) VALUES ({pid}, '2024-01-01', 'ct')"
    ),
    "reference range is ordered": (
        "INSERT INTO lab_result (patient_id, date, analyte, value, unit, ref_low, ref_high) "
        "VALUES ({pid}, '2024-01-01', 'alp', 100, 'U/L', 130, 30)"
    ),
    "finding needs an ho value": (
        "INSERT INTO imaging_study (patient_id, date, modality) "
        "VALUES ({pid}, '2024-01-01', 'mri');"
        "INSERT INTO site_finding (study_id, site, side) "
        "VALUES ((SELECT max(id) FROM imaging_study), 'hip', 'left')"
    ),
}


@pytest.mark.parametrize("rule", sorted(BAD_ROWS))
def test_database_itself_refuses_rows_that_break_the_rules(engine: Engine, rule: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(PATIENT))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        pid = _pid(conn)
        for statement in BAD_ROWS[rule].format(pid=pid).split(";"):
            conn.execute(sa.text(statement))


def test_rows_get_utc_timestamps_from_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(PATIENT))
    with Session(engine) as session:
        patient = session.exec(select(Patient)).one()
    now = datetime.now(UTC)
    for stamp in (patient.created_at, patient.updated_at):
        aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # SQLite keeps UTC naive
        assert abs((now - aware).total_seconds()) < 120
