"""The PACS feed's position (issue 17).

- `pacs_poll_state`: one row (id 1): the study date through which every study has been
  read from the PACS, the last successful poll, the last error (in words) and when,
  how many polls in a row failed, and when the next attempt may run (the back-off).

Imaging studies and pending sites from the PACS use the existing tables
(`imaging_study`, `dicom_pending_site`, whose `source_file` reads
`pacs:<StudyInstanceUID>`), so nothing else changes.

Downgrade drops the table; the studies it brought in stay.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pacs_poll_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("complete_through", sa.Date(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_pacs_poll_state_single_row")),
        sa.CheckConstraint(
            "failures >= 0", name=op.f("ck_pacs_poll_state_failures_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_poll_state")),
    )


def downgrade() -> None:
    op.drop_table("pacs_poll_state")
