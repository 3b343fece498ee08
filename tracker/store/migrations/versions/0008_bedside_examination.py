"""The bedside examination (issue 16, model-spec v2 sections 1, 2 and 10).

- `clinical_exam`: one row per patient, date, site and side: the signs swelling,
  warmth and erythema (yes/no, blank when not examined) and a 0-10 pain score.
- `range_of_motion`: one row per patient, date, site, side and movement, with the
  arc in degrees (0-200).
- `imaging_study.indication`: why the study was done (optional).
- `reminder.rule` accepts the two bedside rules of model-spec v2 section 9,
  `suspected_ho_imaging` and `dvt_query_hip_ultrasound`.

Both tables are clinical records like the others: versioned, voidable with a reason,
natural keys that ignore voided rows, CHECKs for every vocabulary and range.

Downgrade drops the two tables and the indication column, and deletes the reminders
of the two bedside rules (with their delivery attempts), which v1 cannot hold.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:45:00
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen at this revision (model-spec v2 section 1, as tracker.vocab says today).
SITES = (
    "hip", "knee", "elbow", "shoulder", "thigh", "pelvis", "spine", "ankle", "wrist", "hand",
    "foot", "jaw", "other",
)  # fmt: skip
SIDES = ("left", "right", "midline")
SIGNS = ("yes", "no")
MOVEMENTS = (
    "flexion", "extension", "abduction", "adduction", "internal_rotation",
    "external_rotation", "pronation", "supination", "dorsiflexion", "plantarflexion",
)  # fmt: skip
INDICATIONS = (
    "screening", "dvt_query", "symptoms", "follow_up", "pre_operative", "post_operative",
    "other",
)  # fmt: skip
VOIDED_WITH_REASON = (
    "voided_at IS NULL OR (voided_reason IS NOT NULL AND length(voided_reason) > 0)"
)
LIVE = sa.text("voided_at IS NULL")
RULES_V1 = (
    "hip_ultrasound_screen", "consider_prophylaxis", "monitoring_radiograph",
    "maturity_bone_scan", "course_review", "post_course_radiograph", "readiness_review",
    "post_resection_prophylaxis", "recurrence_radiograph",
)  # fmt: skip
BEDSIDE_RULES = ("suspected_ho_imaging", "dvt_query_hip_ultrasound")


@contextmanager
def _imaging_study_batch(table: str = "imaging_study") -> Iterator[Any]:
    """A batch change of `table` (imaging_study, reminder). On SQLite it rebuilds the
    table, reflecting the patient table it refers to; SQLite cannot reflect patient's
    expression indexes and SQLAlchemy says so on stderr. They are only read, never
    rebuilt (patient is not changed here), so the warning is kept off the user's
    terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Skipped unsupported reflection of expression-based index"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            yield batch_op


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _record_columns() -> list[sa.Column]:
    """The columns every clinical record carries (models.Recorded)."""
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("voided_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("site", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("side", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    ]


def _record_constraints(table: str) -> list[sa.Constraint]:
    return [
        sa.CheckConstraint(f"site IN ({_in(SITES)})", name=op.f(f"ck_{table}_site_allowed")),
        sa.CheckConstraint(f"side IN ({_in(SIDES)})", name=op.f(f"ck_{table}_side_allowed")),
        sa.CheckConstraint(VOIDED_WITH_REASON, name=op.f(f"ck_{table}_voided_with_reason")),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f(f"fk_{table}_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "clinical_exam",
        *_record_columns(),
        sa.Column("swelling", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("warmth", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("erythema", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("pain", sa.Integer(), nullable=True),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        *_record_constraints("clinical_exam"),
        *(
            sa.CheckConstraint(
                f"{sign} IS NULL OR {sign} IN ({_in(SIGNS)})",
                name=op.f(f"ck_clinical_exam_{sign}_allowed"),
            )
            for sign in ("swelling", "warmth", "erythema")
        ),
        sa.CheckConstraint(
            "pain IS NULL OR pain BETWEEN 0 AND 10", name=op.f("ck_clinical_exam_pain_range")
        ),
    )
    with op.batch_alter_table("clinical_exam", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinical_exam_patient_id"), ["patient_id"])
        batch_op.create_index(
            "uq_clinical_exam_patient_id_date_site_side",
            ["patient_id", "date", "site", "side"],
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )

    op.create_table(
        "range_of_motion",
        *_record_columns(),
        sa.Column("movement", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("degrees", sa.Float(), nullable=False),
        *_record_constraints("range_of_motion"),
        sa.CheckConstraint(
            f"movement IN ({_in(MOVEMENTS)})", name=op.f("ck_range_of_motion_movement_allowed")
        ),
        sa.CheckConstraint(
            "degrees >= 0 AND degrees <= 200", name=op.f("ck_range_of_motion_degrees_range")
        ),
    )
    with op.batch_alter_table("range_of_motion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_range_of_motion_patient_id"), ["patient_id"])
        batch_op.create_index(
            "uq_range_of_motion_patient_id_date_site_side_movement",
            ["patient_id", "date", "site", "side", "movement"],
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )

    with _imaging_study_batch() as batch_op:
        batch_op.add_column(
            sa.Column("indication", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )
        batch_op.create_check_constraint(
            op.f("ck_imaging_study_indication_allowed"),
            f"indication IS NULL OR indication IN ({_in(INDICATIONS)})",
        )
    _rule_check(RULES_V1 + BEDSIDE_RULES)


def _rule_check(rules: Sequence[str]) -> None:
    with _imaging_study_batch("reminder") as batch_op:
        batch_op.drop_constraint(op.f("ck_reminder_rule_allowed"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_reminder_rule_allowed"), f"rule IN ({_in(rules)})"
        )


def downgrade() -> None:
    bedside = f"SELECT id FROM reminder WHERE rule IN ({_in(BEDSIDE_RULES)})"
    op.execute(f"DELETE FROM delivery_attempt WHERE reminder_id IN ({bedside})")
    op.execute(f"DELETE FROM reminder WHERE rule IN ({_in(BEDSIDE_RULES)})")
    _rule_check(RULES_V1)
    with _imaging_study_batch() as batch_op:
        batch_op.drop_constraint(op.f("ck_imaging_study_indication_allowed"), type_="check")
        batch_op.drop_column("indication")
    for table, key in (
        ("range_of_motion", "uq_range_of_motion_patient_id_date_site_side_movement"),
        ("clinical_exam", "uq_clinical_exam_patient_id_date_site_side"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(key)
            batch_op.drop_index(batch_op.f(f"ix_{table}_patient_id"))
        op.drop_table(table)
