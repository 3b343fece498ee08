"""The web app a team uses all day (issue 14).

- `user_account.team` (the user's unit, for the worklist's "my team" filter),
  `must_change_password` (set by an admin's password reset) and `last_signin_at`.
- `reminder.closed_by` and `reminder.ack_reason`: who acknowledged a reminder by hand
  and why (bulk acknowledge asks for a reason).
- `flash_notice`: one-time notices for a browser session, kept in the database so
  that any app process shows them and no URL can make the app say something.

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


def downgrade() -> None:
    op.drop_index("ix_flash_notice_session_nonce", table_name="flash_notice")
    op.drop_table("flash_notice")
    with op.batch_alter_table("reminder") as batch:
        batch.drop_column("ack_reason")
        batch.drop_column("closed_by")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_constraint("fk_user_account_team_team", type_="foreignkey")
        batch.drop_column("last_signin_at")
        batch.drop_column("must_change_password")
        batch.drop_column("team")
