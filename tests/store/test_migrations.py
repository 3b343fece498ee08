"""The schema: migrations agree with the models, and the rules hold in the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from tests.conftest import SERVER_URL, private_postgres_url, reset_postgres
from tracker import vocab
from tracker.errors import DatabaseNotReady, TrackerError
from tracker.store import database
from tracker.store.models import Patient, Reminder, table_of


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
    # The database's own clock, read before and after, brackets the defaults it
    # stamps: no tolerance on the wall clock, and no second clock (a PostgreSQL
    # server elsewhere) to disagree with.
    with engine.connect() as conn:
        before = _database_now(conn)
    with engine.begin() as conn:
        conn.execute(sa.text(PATIENT))
    with engine.connect() as conn:
        after = _database_now(conn)
    with Session(engine) as session:
        patient = session.exec(select(Patient)).one()
    for stamp in (patient.created_at, patient.updated_at):
        assert before <= _utc(stamp) <= after


def _database_now(conn: sa.Connection) -> datetime:
    if conn.dialect.name == "sqlite":  # whole seconds, UTC, as its CURRENT_TIMESTAMP stamps
        text = conn.execute(sa.text("SELECT CURRENT_TIMESTAMP")).scalar_one()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    stamp = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    return _utc(stamp)


def _utc(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # SQLite keeps UTC naive


# --- migration 0005: the lab unit vocabulary and lapsed reminders (model v2) ------------

V1 = "0004"  # the last revision without the unit vocabulary and `lapsed`


def _fresh_database_like(engine: Engine, tmp_path: Path) -> Engine:
    """A second empty database on the same backend as `engine`."""
    if engine.dialect.name == "sqlite":
        return database.make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    return reset_postgres(private_postgres_url("fresh"))


def _checks(engine: Engine) -> dict[str, set[tuple[str | None, str]]]:
    inspector = sa.inspect(engine)
    return {
        table: {
            (check["name"], " ".join(check["sqltext"].split()))
            for check in inspector.get_check_constraints(table)
        }
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


def test_a_migrated_schema_checks_exactly_what_a_fresh_one_does(
    engine: Engine, tmp_path: Path
) -> None:
    # compare_metadata (above) does not look at CHECK constraints, so the unit
    # vocabulary and the reminder statuses are compared here, constraint by constraint.
    fresh = _fresh_database_like(engine, tmp_path)
    try:
        SQLModel.metadata.create_all(fresh)
        assert _checks(engine) == _checks(fresh)
        assert any(
            name == "ck_lab_result_unit_allowed" for name, _ in _checks(engine)["lab_result"]
        )
    finally:
        fresh.dispose()


def test_the_database_refuses_a_unit_outside_its_analytes_list(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(PATIENT))
    insert = (
        "INSERT INTO lab_result (patient_id, date, analyte, value, unit) "
        "VALUES (:pid, :date, :analyte, 1, :unit)"
    )
    with engine.begin() as conn:  # every analyte's own units are stored
        pid = _pid(conn)
        for day, (analyte, unit) in enumerate(
            (a, u) for a, units in vocab.LAB_UNITS.items() for u in units
        ):
            date = f"2024-01-{day + 1:02d}"
            conn.execute(
                sa.text(insert), {"pid": pid, "date": date, "analyte": analyte, "unit": unit}
            )
    for analyte, unit in (("alp", "mg/L"), ("crp", "U/L"), ("d_dimer", "ng/mL"), ("alp", "u/l")):
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(insert),
                {"pid": _pid(conn), "date": "2024-02-01", "analyte": analyte, "unit": unit},
            )


@pytest.fixture
def v1_engine(empty_engine: Engine) -> Engine:
    """A database at the last v1 revision, to be upgraded by a test."""
    database.upgrade(empty_engine, V1)
    return empty_engine


def _add_patient(conn: sa.Connection, mrn: str) -> int:
    return conn.execute(
        sa.text("INSERT INTO patient (mrn) VALUES (:mrn) RETURNING id"), {"mrn": mrn}
    ).scalar_one()


def _add_lab(conn: sa.Connection, pid: int, date: str, analyte: str, unit: str) -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO lab_result (patient_id, date, analyte, value, unit) "
            "VALUES (:pid, :date, :analyte, 100, :unit) RETURNING id"
        ),
        {"pid": pid, "date": date, "analyte": analyte, "unit": unit},
    ).scalar_one()


def _units(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, unit FROM lab_result")).all())


def _audit(engine: Engine, entity: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT entity_id, mrn, username, action, before, after FROM audit_event "
                "WHERE entity = :entity ORDER BY entity_id"
            ),
            {"entity": entity},
        ).all()


def test_migration_stops_on_an_unmappable_unit_and_names_the_rows(v1_engine: Engine) -> None:
    with v1_engine.begin() as conn:
        a1, b2 = _add_patient(conn, "A1"), _add_patient(conn, "B2")
        mappable = _add_lab(conn, a1, "2024-01-01", "alp", "IU/L")
        fine = _add_lab(conn, a1, "2024-01-02", "crp", "mg/L")
        # ng/mL without FEU or DDU: a D-dimer's two scales differ about twofold
        d_dimer = _add_lab(conn, a1, "2024-01-03", "d_dimer", "ng/mL")
        # mmol/L is no spelling of an ALP activity: nothing is converted or guessed
        alp = _add_lab(conn, b2, "2024-01-04", "alp", "mmol/L")
    with pytest.raises(TrackerError) as stopped:
        database.upgrade(v1_engine)
    message = str(stopped.value)
    assert "changed nothing" in message
    assert f"lab {d_dimer} (mrn A1, 2024-01-03): d_dimer unit 'ng/mL'" in message
    assert "allowed for d_dimer: mg/L FEU, ug/mL FEU, ng/mL FEU, ng/mL DDU" in message
    assert f"lab {alp} (mrn B2, 2024-01-04): alp unit 'mmol/L'" in message
    assert "allowed for alp: U/L, ukat/L" in message
    assert f"lab {mappable} " not in message and f"lab {fine} " not in message
    assert database.current_revision(v1_engine) == V1
    assert _units(v1_engine) == {mappable: "IU/L", fine: "mg/L", d_dimer: "ng/mL", alp: "mmol/L"}
    assert _audit(v1_engine, "lab_result") == []


def test_migration_maps_other_spellings_of_an_allowed_unit_and_audits_each_lab(
    v1_engine: Engine,
) -> None:
    spellings = {
        ("alp", "IU/L"): "U/L",
        ("alp", "u/l"): "U/L",
        ("ck", "iu/l"): "U/L",
        ("ck", "\u00b5kat/L"): "ukat/L",  # micro sign
        ("alp", "\u03bckat/l"): "ukat/L",  # Greek mu
        ("crp", "mg/l"): "mg/L",
        ("crp", "MG/DL"): "mg/dL",
        ("bone_alp", "mcg/L"): "ug/L",
        ("d_dimer", "\u00b5g/mL FEU"): "ug/mL FEU",
        ("d_dimer", "mg/L (FEU)"): "mg/L FEU",
        ("d_dimer", "ng/ml ddu"): "ng/mL DDU",
    }
    with v1_engine.begin() as conn:
        pid = _add_patient(conn, "A1")
        ids = {
            _add_lab(conn, pid, f"2024-01-{day + 1:02d}", analyte, unit): (analyte, unit)
            for day, (analyte, unit) in enumerate(spellings)
        }
        untouched = _add_lab(conn, pid, "2024-02-01", "alp", "U/L")
    database.upgrade(v1_engine)
    units = _units(v1_engine)
    assert {lab: units[lab] for lab in ids} == {lab: spellings[ids[lab]] for lab in ids}
    assert units[untouched] == "U/L"
    audited = _audit(v1_engine, "lab_result")
    assert [row.entity_id for row in audited] == sorted(ids)
    for row in audited:
        assert (row.mrn, row.username, row.action) == ("A1", None, "correct")
        assert json.loads(row.before) == {"unit": ids[row.entity_id][1]}
        assert json.loads(row.after)["unit"] == spellings[ids[row.entity_id]]
    with v1_engine.connect() as conn:
        versions = dict(conn.execute(sa.text("SELECT id, version FROM lab_result")).all())
    assert versions[untouched] == 1 and all(versions[lab] == 2 for lab in ids)


DUE = datetime(2024, 1, 1).date()


def _add_reminder(
    conn: sa.Connection, pid: int, rule: str, status: str, created_days_after_due: int, **extra: Any
) -> int:
    created = datetime(2024, 1, 1, 9, 30, tzinfo=UTC) + timedelta(days=created_days_after_due)
    values = {
        "patient_id": pid,
        "rule": rule,
        "due": DUE,
        "status": status,
        "attempts": 0,
        "late": False,
        "version": 1,
        "created_at": created,
        "updated_at": created,
        **extra,
    }
    return conn.execute(
        sa.insert(table_of(Reminder)).values(**values).returning(table_of(Reminder).c.id)
    ).scalar_one()


def _statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, status FROM reminder")).all())


def test_history_imported_years_late_is_lapsed_by_the_migration_and_delivered_history_kept(
    v1_engine: Engine,
) -> None:
    sent = {"sent_at": datetime(2024, 3, 1, tzinfo=UTC), "message_id": "<m1@ho>", "attempts": 1}
    with v1_engine.begin() as conn:
        pid = _add_patient(conn, "A1")
        # the v1 rules (the v2 bedside rules come with migration 0008)
        screen, prophylaxis, radiograph, scan, course, _, review, resection, recurrence = [
            r.value for r in vocab.ReminderRule
        ][:9]
        lapsed_pending = _add_reminder(conn, pid, screen, "pending", 700)
        lapsed_due = _add_reminder(conn, pid, prophylaxis, "due", 31)
        on_the_limit = _add_reminder(conn, pid, radiograph, "due", 30)
        planned_in_time = _add_reminder(conn, pid, scan, "pending", -10)
        tried_once = _add_reminder(conn, pid, course, "due", 400, attempts=1)
        conn.execute(
            sa.text(
                "INSERT INTO delivery_attempt (reminder_id, kind, attempted_at, outcome) "
                "VALUES (:id, 'reminder', :at, 'no_address')"
            ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))),
            {"id": tried_once, "at": datetime(2025, 2, 5, tzinfo=UTC)},
        )
        delivered = _add_reminder(conn, pid, review, "sent", 300, **sent)
        satisfied = _add_reminder(conn, pid, resection, "satisfied", 300)
        acknowledged = _add_reminder(conn, pid, recurrence, "acknowledged", 300)
    database.upgrade(v1_engine)
    assert _statuses(v1_engine) == {
        lapsed_pending: "lapsed",
        lapsed_due: "lapsed",
        on_the_limit: "due",  # 30 days late is not more than 30
        planned_in_time: "pending",
        tried_once: "due",  # a delivery was attempted: not "never sent"
        delivered: "sent",
        satisfied: "satisfied",
        acknowledged: "acknowledged",
    }
    audited = _audit(v1_engine, "reminder")
    assert [row.entity_id for row in audited] == sorted([lapsed_pending, lapsed_due])
    by_id = {row.entity_id: row for row in audited}
    assert json.loads(by_id[lapsed_pending].before) == {"status": "pending"}
    after = json.loads(by_id[lapsed_pending].after)
    assert (after["status"], after["days_late_when_created"]) == ("lapsed", 700)
    assert json.loads(by_id[lapsed_due].after)["days_late_when_created"] == 31
    assert {(row.mrn, row.username, row.action) for row in audited} == {("A1", None, "correct")}


def test_upgrade_and_downgrade_round_trip_keeps_every_reminder_and_lab(v1_engine: Engine) -> None:
    with v1_engine.begin() as conn:
        pid = _add_patient(conn, "A1")
        lab = _add_lab(conn, pid, "2024-01-01", "alp", "IU/L")
        lapsing = _add_reminder(conn, pid, "hip_ultrasound_screen", "pending", 90)
        open_ = _add_reminder(conn, pid, "consider_prophylaxis", "due", 2)
    database.upgrade(v1_engine)
    assert _statuses(v1_engine)[lapsing] == "lapsed"

    database.downgrade(v1_engine, V1)
    assert database.current_revision(v1_engine) == V1
    with v1_engine.connect() as conn:
        reason = conn.execute(
            sa.text("SELECT cancel_reason FROM reminder WHERE id = :id"), {"id": lapsing}
        ).scalar_one()
    assert _statuses(v1_engine) == {lapsing: "cancelled", open_: "due"}  # v1 has no lapsed
    assert "lapsed" in reason
    assert _units(v1_engine) == {lab: "U/L"}  # the same unit, still mapped
    with v1_engine.begin() as conn:  # v1 stores any unit text again
        _add_lab(conn, pid, "2024-01-02", "alp", "mmol/L")
    with pytest.raises(sa.exc.IntegrityError), v1_engine.begin() as conn:
        _add_reminder(conn, pid, "monitoring_radiograph", "lapsed", 90)

    with v1_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM lab_result WHERE unit = 'mmol/L'"))
    database.upgrade(v1_engine)
    assert database.current_revision(v1_engine) == database.head_revision()
    with v1_engine.begin() as conn:
        _add_reminder(conn, pid, "monitoring_radiograph", "lapsed", 90)
    with pytest.raises(sa.exc.IntegrityError), v1_engine.begin() as conn:
        _add_lab(conn, pid, "2024-01-03", "alp", "mmol/L")
