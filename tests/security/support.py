"""What the security tests share: a real SMTP server (aiosmtpd on 127.0.0.1) that keeps
each message's raw bytes, patients and team addresses planted with SQL (as data stored
before the input rules would be), a reminder whose e-mail failed in the demo cohort,
and reading back an exported CSV.

`mail_server` is a fixture of tests/security/conftest.py; the browser tests import it
from here.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (
    FakeClock,
    Mailbox,
    SmtpServer,
    add_patient,
    reminders,
    start_smtp,
)
from tracker.interchange import csv_format as fmt
from tracker.protocol import Protocol
from tracker.reminders.delivery import Deliverer
from tracker.reminders.planner import plan
from tracker.services.teams import add_team

PROTOCOL = Protocol()
BAD_MRN = "BAD\r\nBcc: leak@elsewhere.example"


# --- mail --------------------------------------------------------------------------------


class RawMailbox(Mailbox):
    """A Mailbox that also keeps each message's raw bytes, to read its headers."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.raw.append(envelope.content)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def mail_server() -> Iterator[SmtpServer]:
    server = start_smtp(RawMailbox())
    yield server
    server.controller.stop()


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def deliverer(engine: Engine, server: SmtpServer, clock: FakeClock) -> Deliverer:
    return Deliverer(
        engine=engine, protocol=PROTOCOL, settings=server.settings(), clock=clock, worker="test"
    )


# --- patients and teams planted with SQL ---------------------------------------------------


def course_ending(engine: Engine, mrn: str, end: dt.date, team: str) -> None:
    """A patient (inserted with plain SQL) whose prophylaxis course ends on `end`: one
    course review due then."""
    add_patient(
        engine,
        mrn,
        team=team,
        courses=[{"agent": "etidronate", "intent": "prophylaxis",
                  "start": (end - dt.timedelta(days=30)).isoformat(), "end": end.isoformat()}],
    )  # fmt: skip


def plant_address(engine: Engine, team: str, address: str) -> None:
    """A team address stored before the address rules: straight into the table."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE team SET email = :e WHERE name = :n"), {"e": address, "n": team}
        )


def row_of(engine: Engine, mrn: str) -> dict[str, Any]:
    """The one reminder of the patient `mrn`."""
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT id FROM patient WHERE mrn = :m"), {"m": mrn}).scalar()
    [row] = [r for r in reminders(engine) if r["patient_id"] == pid]
    return row


def failed_in_demo(engine: Engine, server: SmtpServer) -> dt.date:
    """The bad-MRN patient (a CR/LF in its MRN) and a good one, A001, in ward7 of the
    demo cohort, planned and delivered once: the bad one's e-mail failed."""
    day = dt.date(2026, 11, 3)
    course_ending(engine, BAD_MRN, day - dt.timedelta(days=2), team="ward7")
    course_ending(engine, "A001", day - dt.timedelta(days=1), team="ward7")
    add_team(engine=engine, name="ward7", email="ward7@clinic.example.org")
    clock = FakeClock(at(day))
    for mrn in (BAD_MRN, "A001"):
        plan(engine=engine, as_of=day, protocol=PROTOCOL, now=clock(), mrn=mrn)
    report = deliverer(engine, server, clock).deliver()
    assert report.problems
    return day


# --- exported CSV ---------------------------------------------------------------------------


def csv_rows(path: Path) -> list[dict[str, str]]:
    """An exported CSV file's rows, by header name, read as a spreadsheet would."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # what makes a cell a formula (OWASP)


def formula_cells(folder: Path) -> list[tuple[str, str, str]]:
    """(file, column, cell) of every text cell (csv_format's TEXT_KINDS) of the
    interchange files in `folder` that a spreadsheet would run as a formula."""
    found = []
    for file in fmt.FORMATS:
        text = [c.name for c in file.columns if c.kind in fmt.TEXT_KINDS]
        for row in csv_rows(folder / file.name):
            cells = [(name, row.get(name) or "") for name in text]
            found += [(file.name, name, cell) for name, cell in cells if cell[:1] in TRIGGERS]
    return found
