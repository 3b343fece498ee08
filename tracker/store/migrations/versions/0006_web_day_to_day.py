"""The web app a team uses all day (issue 14).

- `user_account.team` (the user's unit, for the worklist's "my team" filter),
  `must_change_password` (set by an admin's password reset) and `last_signin_at`.
- `reminder.closed_by` and `reminder.ack_reason`: who acknowledged a reminder by hand
  and why (bulk acknowledge asks for a reason).
- `flash_notice`: one-time notices for a browser session, kept in the database so
  that any app process shows them and no URL can make the app say something.
- `site_assessment`: every site's stored assessment (the cohort path's calls on one
  day), which the surgeons' board and the patient search page through.
- indexes for the patient list's name order and name/MRN search, and for the audit
  page's user and action filters (lists that page at 100,000 patients).

Downgrade drops them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_REMINDER = "status IN ('pending', 'due', 'sent')"


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("team", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("last_signin_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            "fk_user_account_team_team",
            "team",
            ["team"],
            ["name"],
            ondelete="SET NULL",
            onupdate="CASCADE",
        )
    with op.batch_alter_table("reminder") as batch:
        batch.add_column(sa.Column("closed_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("ack_reason", sa.String(length=300), nullable=True))
    # the worklist's open rows in its order (due, id): its first page stops early
    op.create_index(
        "ix_reminder_open_due_id",
        "reminder",
        ["due", "id"],
        sqlite_where=sa.text(OPEN_REMINDER),
        postgresql_where=sa.text(OPEN_REMINDER),
    )
    op.create_table(
        "flash_notice",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_nonce", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_flash_notice_session_nonce", "flash_notice", ["session_nonce"])
    _add_search_indexes()
    _add_site_assessments()


# The patient list in name order and found by the start of a name or MRN in any case,
# and the audit page's user and action filters, at 100,000 patients (issue 14). The
# name order compares code points on both backends (COLLATE "C" on PostgreSQL), so a
# family name's start is a range of it; on PostgreSQL the other prefix indexes use
# text_pattern_ops so LIKE 'smi%' reads them under any collation; SQLite reads them
# through a range (services/patients.py).
_PATIENT_INDEXES = {
    "ix_patient_name_order": (
        "{c}coalesce(lower(family_name), ''){e}, {c}coalesce(lower(given_name), ''){e}, "
        "{c}mrn{e}, id"
    ),
    "ix_patient_family_name_folded": "lower(family_name){ops}",
    "ix_patient_given_name_folded": "lower(given_name){ops}",
    "ix_patient_mrn_folded": "lower(mrn){ops}",
}


def _add_search_indexes() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    ops = " text_pattern_ops" if postgresql else ""
    bytewise = {"c": "(", "e": ') COLLATE "C"'} if postgresql else {"c": "", "e": ""}
    for name, expressions in _PATIENT_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON patient ({expressions.format(ops=ops, **bytewise)})")
    op.create_index("ix_audit_event_username_at", "audit_event", ["username", "at"])
    op.create_index("ix_audit_event_action_at", "audit_event", ["action", "at"])


def downgrade() -> None:
    op.drop_table("site_assessment")  # its indexes go with it
    op.drop_index("ix_audit_event_action_at", table_name="audit_event")
    op.drop_index("ix_audit_event_username_at", table_name="audit_event")
    for name in _PATIENT_INDEXES:
        op.drop_index(name, table_name="patient")
    op.drop_index("ix_flash_notice_session_nonce", table_name="flash_notice")
    op.drop_table("flash_notice")
    op.drop_index("ix_reminder_open_due_id", table_name="reminder")
    with op.batch_alter_table("reminder") as batch:
        batch.drop_column("ack_reason")
        batch.drop_column("closed_by")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_constraint("fk_user_account_team_team", type_="foreignkey")
        batch.drop_column("last_signin_at")
        batch.drop_column("must_change_password")
        batch.drop_column("team")


_BOARD_ORDER = ["priority", "rank_date", "mrn", "id"]


def _add_site_assessments() -> None:
    op.create_table(
        "site_assessment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "patient_id",
            sa.Integer(),
            sa.ForeignKey(
                "patient.id", name="fk_site_assessment_patient_id_patient", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("mrn", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("activity", sa.String(length=20), nullable=False),
        sa.Column("readiness", sa.String(length=20), nullable=False),
        sa.Column("flags", sa.String(length=300), nullable=False),
        sa.Column("forecast_date", sa.Date(), nullable=True),
        sa.Column("forecast_low", sa.Date(), nullable=True),
        sa.Column("forecast_high", sa.Date(), nullable=True),
        sa.Column("forecast_passed", sa.Boolean(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("rank_date", sa.Date(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("protocol_fingerprint", sa.String(length=80), nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "patient_id", "site", "side", name="uq_site_assessment_patient_id_site_side"
        ),
    )
    op.create_index("ix_site_assessment_board", "site_assessment", _BOARD_ORDER)
    op.create_index(
        "ix_site_assessment_readiness_board", "site_assessment", ["readiness", *_BOARD_ORDER]
    )
    op.create_index("ix_site_assessment_stage_board", "site_assessment", ["stage", *_BOARD_ORDER])
    op.create_index(
        "ix_site_assessment_made",
        "site_assessment",
        ["as_of", "protocol_fingerprint", "model_version"],
    )
