"""Teams (units, wards) and their delivery addresses; which team a patient is in."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker import values, vocab
from tracker.addresses import checked_address, shown
from tracker.errors import NotFound, TrackerError
from tracker.services.audit import write_event
from tracker.store.models import Patient, Team, table_of, utcnow

team, patient = table_of(Team), table_of(Patient)


@dataclass(frozen=True)
class TeamSummary:
    name: str
    email: str | None
    escalation_email: str | None
    patients: int


def _check_address(option: str, value: str | None) -> str | None:
    """The address as the library normalises it (issue 15: email-validator, not a
    pattern), or a sentence naming the option and the reason."""
    if value is None:
        return None
    try:
        return checked_address(value)
    except ValueError as refused:
        raise TrackerError(f"{option} '{shown(value)}' {refused}.") from None


def add_team(
    *,
    engine: Engine,
    name: str,
    email: str | None,
    escalation_email: str | None = None,
    actor: str | None = None,
) -> bool:
    """Create a team, or give an existing one (say, made by a CSV import) its
    addresses. Returns True when the team is new. The change is audited (issue 15) by
    `actor` (None: the system itself) in its own transaction; a team is no patient's
    record, so the row names no MRN."""
    problem = values.identifier_problem(name, limit=values.TEAM_MAX)
    if problem is not None:
        raise TrackerError(f"Team name '{shown(name)}' {problem}.")
    email = _check_address("--email", email)
    escalation_email = _check_address("--escalation-email", escalation_email)
    columns = (team.c.id, team.c.name, team.c.email, team.c.escalation_email)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(*columns).where(team.c.name == name)).first()
        if exists is None:
            added = conn.execute(
                team.insert().values(name=name, email=email, escalation_email=escalation_email)
            ).inserted_primary_key
            write_event(
                conn, actor=actor, action=vocab.AuditAction.create, entity="team",
                entity_id=int(added[0]) if added else None, mrn=None,
                after={"name": name, "email": email, "escalation_email": escalation_email},
            )  # fmt: skip
            return True
        changes: dict[str, object] = {"updated_at": utcnow()}
        if email is not None:
            changes["email"] = email
        if escalation_email is not None:
            changes["escalation_email"] = escalation_email
        conn.execute(team.update().where(team.c.name == name).values(**changes))
        before: dict[str, object] = {"name": name, "email": exists.email}
        before["escalation_email"] = exists.escalation_email
        after = {**before, **{k: v for k, v in changes.items() if k != "updated_at"}}
        write_event(
            conn, actor=actor, action=vocab.AuditAction.correct, entity="team",
            entity_id=int(exists.id), mrn=None, before=before, after=after,
        )  # fmt: skip
    return False


def list_teams(*, engine: Engine) -> list[TeamSummary]:
    counts = (
        sa.select(patient.c.team, sa.func.count().label("n")).group_by(patient.c.team).subquery()
    )
    query = (
        sa.select(team.c.name, team.c.email, team.c.escalation_email, counts.c.n)
        .select_from(team.outerjoin(counts, counts.c.team == team.c.name))
        .order_by(team.c.name)
    )
    with engine.connect() as conn:
        return [
            TeamSummary(name, email, escalation, int(n or 0))
            for name, email, escalation, n in conn.execute(query)
        ]


def set_patient_team(*, engine: Engine, mrn: str, team_name: str) -> str | None:
    """Put a patient in a team that exists; returns the previous team."""
    with engine.begin() as conn:
        found = conn.execute(sa.select(patient.c.team).where(patient.c.mrn == mrn)).first()
        if found is None:
            raise NotFound(f"No patient with mrn '{mrn}' is stored.")
        if conn.execute(sa.select(team.c.id).where(team.c.name == team_name)).first() is None:
            raise NotFound(
                f"There is no team '{team_name}': add it first with "
                f"`ho-tracker teams add {team_name} --email ADDRESS`."
            )
        conn.execute(
            patient.update().where(patient.c.mrn == mrn).values(team=team_name, updated_at=utcnow())
        )
    return found[0]
