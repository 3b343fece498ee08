"""A small ward for worklist tests: teams, named patients and reminders written
straight into the tables (the planner is tested elsewhere; here the rows are the
point)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.services.teams import add_team
from tracker.store.models import Patient, Reminder, table_of, utcnow

TODAY = dt.date(2026, 11, 3)
SITES = ("hip", "knee", "elbow", "shoulder")


@dataclass
class Ward:
    """Patients and their reminders; `made` keeps each reminder as written, so tests
    can say what a filter should find without asking the code under test."""

    engine: Engine
    made: list[dict[str, Any]] = field(default_factory=list)
    _serial: itertools.count = field(default_factory=itertools.count)

    def team(self, name: str) -> str:
        add_team(engine=self.engine, name=name, email=None)
        return name

    def patient(
        self, mrn: str, *, team: str | None = "ward_7", family: str = "Doe", given: str = "Jane"
    ) -> str:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(table_of(Patient)).values(
                    mrn=mrn, team=team, family_name=family, given_name=given
                )
            )
        return mrn

    def reminder(
        self,
        mrn: str,
        *,
        due: dt.date,
        rule: str = "monitoring_radiograph",
        status: str = "due",
        site: str | None = None,
        side: str | None = "left",
    ) -> int:
        """One reminder; without a site, a different one each time (so that the natural
        key never clashes)."""
        n = next(self._serial)
        if site is None:
            site = SITES[n % len(SITES)]
            side = ("left", "right")[(n // len(SITES)) % 2]
        extra: dict[str, Any] = {}
        if status == "sent":
            extra = {"sent_at": utcnow(), "message_id": f"<r{n}@test>"}
        if status == "cancelled":
            extra = {"cancel_reason": "no longer applies"}
        if status in ("satisfied", "acknowledged", "cancelled", "lapsed"):
            extra["closed_at"] = utcnow()
        with self.engine.begin() as conn:
            pid = conn.execute(
                sa.select(table_of(Patient).c.id).where(table_of(Patient).c.mrn == mrn)
            ).scalar_one()
            rid = conn.execute(
                sa.insert(table_of(Reminder))
                .values(
                    patient_id=pid, rule=rule, site=site, side=side, due=due, status=status,
                    **extra,
                )
                .returning(table_of(Reminder).c.id)
            ).scalar_one()  # fmt: skip
        team = self._team_of(mrn)
        self.made.append(
            {"id": rid, "mrn": mrn, "team": team, "rule": rule, "site": site, "side": side,
             "due": due, "status": status}
        )  # fmt: skip
        return int(rid)

    def _team_of(self, mrn: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(table_of(Patient).c.team).where(table_of(Patient).c.mrn == mrn)
            ).scalar_one()

    def expected(self, keep: Any = lambda row: True) -> list[int]:
        """Ids of the open reminders written here that `keep` accepts, in the worklist's
        order (due, then id)."""
        rows = [r for r in self.made if r["status"] in ("pending", "due", "sent") and keep(r)]
        return [r["id"] for r in sorted(rows, key=lambda r: (r["due"], r["id"]))]

    def status_of(self, rid: int) -> dict[str, Any]:
        r = table_of(Reminder).c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(r.status, r.closed_by, r.ack_reason, r.closed_at).where(r.id == rid)
            ).one()
        return dict(row._mapping)


def busy_ward(engine: Engine) -> Ward:
    """Two teams, named patients; open reminders overdue, due today, this week and
    later, several sharing a due date; closed and lapsed ones that must never show."""
    ward = Ward(engine)
    ward.team("ward_7")
    ward.team("spinal_unit")
    names = [("Doe", "Jane"), ("Okafor", "Ada"), ("Novak", "Petra"), ("Hall", "Freya")]
    for i, (family, given) in enumerate(names):
        ward.patient(f"H-{i:04d}", team=("ward_7", "spinal_unit")[i % 2], family=family,
                     given=given)  # fmt: skip
    ward.patient("H-NOTEAM", team=None, family="Green", given="Jacob")
    days = [-30, -30, -12, -3, -3, -3, -1, 0, 0, 2, 6, 7, 20]
    rules = ["monitoring_radiograph", "maturity_bone_scan", "course_review", "readiness_review"]
    for n, offset in enumerate(days):
        mrn = f"H-{n % 4:04d}" if n != 5 else "H-NOTEAM"
        status = "pending" if offset > 0 else ("sent" if n % 3 == 0 else "due")
        ward.reminder(mrn, due=TODAY + dt.timedelta(days=offset), rule=rules[n % 4], status=status)
    for n in range(12):  # a dozen due the same day: the id breaks the tie
        ward.reminder(f"H-{n // 3:04d}", due=TODAY - dt.timedelta(days=5), status="due")
    for status in ("satisfied", "acknowledged", "cancelled", "lapsed"):
        ward.reminder("H-0000", due=TODAY - dt.timedelta(days=40), status=status)
    return ward
