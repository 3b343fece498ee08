"""Test helpers for reminders: a real SMTP server (aiosmtpd) that counts what it
receives by Message-ID and can refuse a share of messages, and databases.

PostgreSQL tests here use their own database of the test run (tests/conftest.py,
`private_postgres_url`), so that they never collide with other tests resetting theirs.
"""

from __future__ import annotations

import asyncio
import email
import logging
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import date as date_type
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from tests.conftest import SERVER_URL, private_postgres_url
from tracker.config import Settings
from tracker.services.teams import add_team
from tracker.store import database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    message_id: str
    recipient: str
    subject: str
    body: str


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps every accepted message; refuses `refuse_rate` of
    recipients with a random 4xx (greylisting, as real servers do at RCPT)."""

    refuse_rate: float = 0.0
    seed: int = 7
    delay: float = 0.0  # seconds of "network" per RCPT and DATA answer
    received: list[Received] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:  # noqa: N802, E501
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.random.random() < self.refuse_rate:
                self.refused += 1
                return self.random.choice(
                    [
                        "451 4.7.1 Greylisted, please try again later",
                        "450 4.2.1 Mailbox temporarily unavailable",
                        "452 4.3.1 Insufficient system storage",
                    ]
                )
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content)
        body = message.get_payload(decode=True) or b""
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.received.append(
                    Received(
                        message_id=str(message["Message-ID"]),
                        recipient=recipient,
                        subject=str(message["Subject"]),
                        body=body.decode(errors="replace")
                        if isinstance(body, bytes)
                        else str(body),
                    )
                )
        # Like a real MTA, the message is queued the moment the final dot arrives; the
        # answer may take a while (and the client may be dead by then).
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 2.0.0 Message accepted for delivery"

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(m.message_id for m in self.received)

    def reminder_ids(self) -> Counter[str]:
        return Counter({k: v for k, v in self.ids().items() if k.startswith("<reminder-")})


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int
    controller: Controller

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_tls": "none",
            "smtp_from": "ho-tracker@clinic.example.org",
            "smtp_timeout_seconds": 5,
            "retry_base_seconds": 60,
        }
        values.update(overrides)
        return Settings(**values)

    def env(self) -> dict[str, str]:
        return {
            "HO_TRACKER_SMTP_HOST": "127.0.0.1",
            "HO_TRACKER_SMTP_PORT": str(self.port),
            "HO_TRACKER_SMTP_TLS": "none",
            "HO_TRACKER_SMTP_FROM": "ho-tracker@clinic.example.org",
        }


def start_smtp(mailbox: Mailbox) -> SmtpServer:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpServer(mailbox=mailbox, port=port, controller=controller)


@pytest.fixture
def smtp() -> Any:
    server = start_smtp(Mailbox())
    yield server
    server.controller.stop()


# --- databases ----------------------------------------------------------------------------


def reminders_postgres_url() -> str:
    """The URL of the reminders' own PostgreSQL database in this test run."""
    return private_postgres_url("reminders")


def fresh_postgres() -> Engine:
    engine = database.make_engine(reminders_postgres_url())
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    database.upgrade(engine)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A migrated database of each backend, PostgreSQL in its own database of the test run."""
    if request.param == "sqlite":
        engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
        database.upgrade(engine)
    else:
        if not SERVER_URL:
            pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
        engine = fresh_postgres()
    yield engine
    engine.dispose()


@pytest.fixture
def lite(tmp_path: Path) -> Any:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    database.upgrade(engine)
    yield engine
    engine.dispose()


# --- stored patients ------------------------------------------------------------------------


def add_patient(engine: Engine, mrn: str, team: str | None = "ward7", **records: Any) -> None:
    """A patient with records given as lists of dicts per table: injuries (kind, d),
    courses (agent, intent, start, end), findings (date, modality, site, side, ho,
    extra...), procedures (kind, date, site, side), bone_scans (date, site, side,
    phase, ratio)."""
    with engine.begin() as conn:
        if (
            team is not None
            and not conn.execute(sa.text("SELECT 1 FROM team WHERE name = :n"), {"n": team}).first()
        ):
            conn.execute(sa.text("INSERT INTO team (name) VALUES (:n)"), {"n": team})
        conn.execute(
            sa.text("INSERT INTO patient (mrn, team) VALUES (:m, :t)"), {"m": mrn, "t": team}
        )
        pid = conn.execute(
            sa.text("SELECT id FROM patient WHERE mrn = :m"), {"m": mrn}
        ).scalar_one()
        for row in records.get("injuries", []):
            conn.execute(
                sa.text("INSERT INTO injury (patient_id, kind, date) VALUES (:p, :kind, :d)"),
                {"p": pid, **row},
            )
        for row in records.get("courses", []):
            conn.execute(
                sa.text(
                    "INSERT INTO treatment_course (patient_id, agent, intent, start_date, "
                    "end_date) VALUES (:p, :agent, :intent, :start, :end)"
                ),
                {"p": pid, "end": None, **row},
            )
        for row in records.get("findings", []):
            add_finding(conn, pid, **row)
        for row in records.get("procedures", []):
            add_procedure(conn, pid, **row)
        for row in records.get("bone_scans", []):
            conn.execute(
                sa.text(
                    "INSERT INTO bone_scan_measurement (patient_id, date, site, side, phase, "
                    "ratio) VALUES (:p, :date, :site, :side, :phase, :ratio)"
                ),
                {"p": pid, "site": "hip", "side": "right", "phase": "delayed", **row},
            )


def add_procedure(conn: sa.Connection, pid: int, *, date: str, site: str = "hip",
                  side: str = "right", kind: str = "resection") -> None:  # fmt: skip
    conn.execute(
        sa.text(
            "INSERT INTO procedure (patient_id, kind, date, site, side) "
            "VALUES (:p, :kind, :d, :site, :side)"
        ),
        {"p": pid, "kind": kind, "d": date, "site": site, "side": side},
    )


def patient_id(engine: Engine, mrn: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT id FROM patient WHERE mrn = :m"), {"m": mrn}).scalar_one()
        )


def add_finding(conn: sa.Connection, pid: int, *, date: str, modality: str, site: str = "hip",
                side: str = "right", ho: str = "present", **extra: Any) -> None:  # fmt: skip
    conn.execute(
        sa.text("INSERT INTO imaging_study (patient_id, date, modality) VALUES (:p, :d, :m)"),
        {"p": pid, "d": date, "m": modality},
    )
    sid = conn.execute(
        sa.text("SELECT max(id) FROM imaging_study WHERE patient_id = :p"), {"p": pid}
    ).scalar_one()
    columns = ", ".join(["study_id", "site", "side", "ho", *extra])
    marks = ", ".join([":s", ":site", ":side", ":ho", *[f":{k}" for k in extra]])
    conn.execute(
        sa.text(f"INSERT INTO site_finding ({columns}) VALUES ({marks})"),
        {"s": sid, "site": site, "side": side, "ho": ho, **extra},
    )


def give_team_address(
    engine: Engine, team: str = "ward7", email_address: str = "ward7@clinic.example.org"
) -> None:  # noqa: E501
    add_team(engine=engine, name=team, email=email_address)


def reminders(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM reminder ORDER BY id")).mappings().all()
    out = [dict(r) for r in rows]
    for row in out:  # SQLite hands plain SQL dates back as text
        if isinstance(row["due"], str):
            row["due"] = date_type.fromisoformat(row["due"])
    return out


class JobErrors(logging.Handler):
    """Every error the reminder jobs log. A scheduled job logs its failure instead of
    raising it (`jobs._guarded`, so the next run tries again), so APScheduler's events
    never carry an exception: a test of a job run asserts on this instead."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self.errors.append(text)

    def __enter__(self) -> JobErrors:
        logging.getLogger("tracker.reminders").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("tracker.reminders").removeHandler(self)


class FakeClock:
    """A clock tests move by hand (timezone-aware UTC)."""

    def __init__(self, start: datetime) -> None:
        self.now = start if start.tzinfo else start.replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def jump(self, **delta: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)
