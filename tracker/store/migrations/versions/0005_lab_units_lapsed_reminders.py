"""Model v2: lab units become a vocabulary the database checks, and reminders may lapse.

- `lab_result.unit` must be one of its analyte's units (model-spec v2, section 1).
  Stored spellings of an allowed unit (case, `IU/L` for `U/L`, the micro sign,
  `mcg`, spacing, `(FEU)`) are rewritten to the vocabulary's spelling, one audit row
  per changed lab. Nothing is converted between units and nothing is guessed: if
  any stored unit is not a spelling of an allowed one (`ng/mL` for a D-dimer, which
  may be FEU or DDU), the migration stops before changing anything and names every
  such row, so the unit can be corrected from the source report first.
- The reminder status `lapsed` (model-spec v2, section 9). The v2 rule is applied
  to the stored open reminders with the day each row was created: one that is
  pending or due, was never sent (no delivery attempt) and was created more than
  30 days after its due date becomes lapsed, with one audit row per reminder.
  Delivered history (sent, satisfied, acknowledged) is left alone.

Downgrade drops the unit CHECK (mapped spellings stay mapped: they are the same
units) and turns lapsed reminders into cancelled ones that say why, since v1 has no
lapsed status.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tracker.errors import TrackerError

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen at this revision (a later change of the vocabulary comes with a migration
# of its own): model-spec v2 section 1, as tracker.vocab.LAB_UNITS says today.
LAB_UNITS: dict[str, tuple[str, ...]] = {
    "alp": ("U/L", "ukat/L"),
    "bone_alp": ("ug/L", "U/L"),
    "crp": ("mg/L", "mg/dL"),
    "ck": ("U/L", "ukat/L"),
    "d_dimer": ("mg/L FEU", "ug/mL FEU", "ng/mL FEU", "ng/mL DDU"),
}
STATUSES_V1 = ("pending", "due", "sent", "satisfied", "acknowledged", "cancelled")
STATUSES_V2 = (*STATUSES_V1, "lapsed")
LAPSE_AFTER_DAYS = 30  # the protocol default of model-spec section 9
OPEN = ("pending", "due")
WHY_LAPSED = (
    "migration 0005 (model v2): created more than 30 days after its due date and never "
    "sent, so it is kept as lapsed, not delivered"
)
WHY_MAPPED = "migration 0005 (model v2): the same unit, written as the unit vocabulary spells it"
DOWNGRADED = "lapsed under model v2; cancelled by the downgrade of migration 0005"


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def unit_check() -> str:
    """The CHECK text of tracker.store.models.lab_unit_allowed at this revision."""
    return " OR ".join(
        f"(analyte = '{analyte}' AND unit IN ({_in(units)}))"
        for analyte, units in LAB_UNITS.items()
    )


_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})  # micro sign and Greek mu
_ANNOTATION = re.compile(r"\s*[({\[]\s*(FEU|DDU)\s*[)}\]]\s*$", re.IGNORECASE)


def same_unit(analyte: str, unit: str) -> str | None:
    """The vocabulary spelling of `unit` for `analyte`, when `unit` is only another
    way of writing that very unit; None when it is not (a different unit, a missing
    FEU/DDU, anything unknown). Nothing is converted."""
    allowed = LAB_UNITS.get(analyte, ())
    if unit in allowed:
        return unit
    text = unit.translate(_MICRO).strip()
    text = _ANNOTATION.sub(r" \1", text)  # mg/L (FEU), mg/L{FEU} -> mg/L FEU
    text = re.sub(r"\s*/\s*", "/", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"^mcg", "ug", text, flags=re.IGNORECASE)  # mcg is the microgram
    # the international unit of enzyme activity is the enzyme unit U (umol/min)
    text = re.sub(r"^IU/", "U/", text, flags=re.IGNORECASE)
    by_folded = {u.casefold(): u for u in allowed}
    return by_folded.get(text.casefold())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_AT = sa.bindparam("at", type_=sa.DateTime(timezone=True))


def upgrade() -> None:
    conn = op.get_bind()
    mapped = _lab_units_to_map(conn)  # stops here, before any change, on an unknown unit
    now = _now()
    for (analyte, old), new in mapped.items():
        _map_lab_unit(conn, analyte, old, new, now)
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_reminder_status_allowed'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_reminder_status_allowed'), f"status IN ({_in(STATUSES_V2)})"
        )
    _lapse_open_reminders(conn, now)
    with op.batch_alter_table('lab_result', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_lab_result_unit_allowed'), unit_check())


def downgrade() -> None:
    conn = op.get_bind()
    now = _now()
    lapsed = "FROM reminder r JOIN patient p ON p.id = r.patient_id WHERE r.status = 'lapsed'"
    conn.execute(
        sa.text(
            "INSERT INTO audit_event (at, username, action, entity, entity_id, mrn, before, "
            "after) SELECT :at, NULL, 'correct', 'reminder', r.id, p.mrn, CAST(:before AS TEXT), "
            f"CAST(:after AS TEXT) {lapsed}"
        ).bindparams(_AT),
        {
            "at": now,
            "before": json.dumps({"status": "lapsed"}),
            "after": json.dumps({"status": "cancelled", "cancel_reason": DOWNGRADED}),
        },
    )
    conn.execute(
        sa.text(
            "UPDATE reminder SET status = 'cancelled', cancel_reason = :why, "
            "version = version + 1, updated_at = :at WHERE status = 'lapsed'"
        ).bindparams(_AT),
        {"why": DOWNGRADED, "at": now},
    )
    with op.batch_alter_table('lab_result', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_lab_result_unit_allowed'), type_='check')
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_reminder_status_allowed'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_reminder_status_allowed'), f"status IN ({_in(STATUSES_V1)})"
        )


# --- lab units -------------------------------------------------------------------------


def _lab_units_to_map(conn: sa.Connection) -> dict[tuple[str, str], str]:
    """Every stored (analyte, unit) that needs rewriting, and its vocabulary spelling;
    raise, naming every row, if any stored unit has none. Voided rows count too: the
    CHECK holds for every row."""
    pairs = conn.execute(
        sa.text("SELECT DISTINCT analyte, unit FROM lab_result ORDER BY analyte, unit")
    ).all()
    mapped: dict[tuple[str, str], str] = {}
    unmappable: list[tuple[str, str]] = []
    for analyte, unit in pairs:
        spelling = same_unit(analyte, unit)
        if spelling is None:
            unmappable.append((analyte, unit))
        elif spelling != unit:
            mapped[(analyte, unit)] = spelling
    if unmappable:
        raise TrackerError(_refusal(conn, unmappable))
    return mapped


def _refusal(conn: sa.Connection, pairs: list[tuple[str, str]]) -> str:
    rows = []
    for analyte, unit in pairs:
        rows += conn.execute(
            sa.text(
                "SELECT l.id, p.mrn, l.date, l.analyte, l.unit, l.voided_at FROM lab_result l "
                "JOIN patient p ON p.id = l.patient_id "
                "WHERE l.analyte = :analyte AND l.unit = :unit"
            ),
            {"analyte": analyte, "unit": unit},
        ).all()
    rows.sort(key=lambda row: row[0])
    lines = [
        f"  lab {lab_id} (mrn {mrn}, {date}{', voided' if voided else ''}): "
        f"{analyte} unit {unit!r}; allowed for {analyte}: "
        + ", ".join(LAB_UNITS.get(analyte, ()))
        for lab_id, mrn, date, analyte, unit, voided in rows
    ]
    return (
        f"Migration 0005 stopped and changed nothing: {len(rows)} lab "
        f"result{'s have units' if len(rows) != 1 else ' has a unit'} that the v2 unit "
        "vocabulary (model-spec section 1) does not allow and that is not just another "
        "spelling of an allowed unit, so it cannot be mapped without guessing:\n"
        + "\n".join(lines)
        + "\nSet each to the unit its source report gives (for example `UPDATE lab_result "
        "SET unit = 'ng/mL FEU' WHERE id = ...`), then run `ho-tracker db upgrade` again."
    )


def _map_lab_unit(conn: sa.Connection, analyte: str, old: str, new: str, now: dt.datetime) -> None:
    where = "WHERE l.analyte = :analyte AND l.unit = :old"
    conn.execute(
        sa.text(
            "INSERT INTO audit_event (at, username, action, entity, entity_id, mrn, before, "
            "after) SELECT :at, NULL, 'correct', 'lab_result', l.id, p.mrn, "
            "CAST(:before AS TEXT), CAST(:after AS TEXT) "
            f"FROM lab_result l JOIN patient p ON p.id = l.patient_id {where}"
        ).bindparams(_AT),
        {
            "at": now,
            "analyte": analyte,
            "old": old,
            "before": json.dumps({"unit": old}),
            "after": json.dumps({"unit": new, "reason": WHY_MAPPED}),
        },
    )
    conn.execute(
        sa.text(
            "UPDATE lab_result SET unit = :new, version = version + 1, updated_at = :at "
            "WHERE analyte = :analyte AND unit = :old"
        ).bindparams(_AT),
        {"new": new, "analyte": analyte, "old": old, "at": now},
    )


# --- reminders -------------------------------------------------------------------------


def _lapse_open_reminders(conn: sa.Connection, now: dt.datetime) -> None:
    """Set-based (a cohort's years of history may hold many rows): audit rows first,
    then one UPDATE, both over the same condition."""
    if conn.dialect.name == "sqlite":
        late = "CAST(julianday(date(r.created_at)) - julianday(r.due) AS INTEGER)"
    else:
        late = "(CAST(r.created_at AT TIME ZONE 'UTC' AS DATE) - r.due)"
    lapses = (
        f"r.status IN ({_in(OPEN)}) AND {late} > {LAPSE_AFTER_DAYS} "
        "AND r.attempts = 0 AND r.sent_at IS NULL AND r.message_id IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM delivery_attempt a WHERE a.reminder_id = r.id)"
    )
    audit = (
        "INSERT INTO audit_event (at, username, action, entity, entity_id, mrn, before, "
        "after) SELECT :at, NULL, 'correct', 'reminder', r.id, p.mrn, "
        "'{\"status\": \"' || r.status || '\"}', "
        f"'{{\"status\": \"lapsed\", \"days_late_when_created\": ' || CAST({late} AS TEXT) "
        "|| ', \"reason\": ' || CAST(:why AS TEXT) || '}' "
        f"FROM reminder r JOIN patient p ON p.id = r.patient_id WHERE {lapses}"
    )
    conn.execute(sa.text(audit).bindparams(_AT), {"at": now, "why": json.dumps(WHY_LAPSED)})
    conn.execute(
        sa.text(
            "UPDATE reminder SET status = 'lapsed', closed_at = :at, claimed_by = NULL, "
            "claim_token = NULL, claimed_until = NULL, version = version + 1, "
            f"updated_at = :at WHERE id IN (SELECT r.id FROM reminder r WHERE {lapses})"
        ).bindparams(_AT),
        {"at": now},
    )
