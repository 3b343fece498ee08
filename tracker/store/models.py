"""The tables of the patient's story (model-spec section 1).

Rules live in the database as well as in Python: foreign keys, NOT NULL, CHECK
constraints for every enumeration and range, unique natural keys (the CSV
interchange relies on them so that re-importing adds nothing), and indexes for
per-patient reads. Every row carries created/updated timestamps in UTC.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Field, SQLModel

from tracker import vocab

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def one_of(column: str, enum: type[StrEnum], *, nullable: bool = False) -> sa.CheckConstraint:
    """CHECK that a text column holds a vocabulary value (model-spec section 1)."""
    allowed = ", ".join(f"'{v}'" for v in vocab.values(enum))
    clause = f"{column} IN ({allowed})"
    if nullable:
        clause = f"{column} IS NULL OR {clause}"
    return sa.CheckConstraint(clause, name=f"{column}_allowed")


def lab_unit_allowed() -> sa.CheckConstraint:
    """CHECK that a lab's unit is one its analyte allows (model-spec v2, section 1):
    the same (analyte, unit) pairs as `vocab.LAB_UNITS`, so the database refuses a
    unit that CSV, forms, the API and FHIR import refuse."""

    def quoted(units: tuple[str, ...]) -> str:
        return ", ".join(f"'{unit}'" for unit in units)

    clause = " OR ".join(
        f"(analyte = '{analyte}' AND unit IN ({quoted(units)}))"
        for analyte, units in vocab.LAB_UNITS.items()
    )
    return sa.CheckConstraint(clause, name="unit_allowed")


def positive(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IS NULL OR {column} > 0", name=f"{column}_positive")


def foreign_key(target: str) -> sa.ForeignKey:
    # Clinical records are never cascaded away with their patient.
    return sa.ForeignKey(target, ondelete="RESTRICT")


class Timestamped(SQLModel):
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now()},
        nullable=False,
    )
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "onupdate": utcnow},
        nullable=False,
    )


_LIVE = sa.text("voided_at IS NULL")


def voided_with_reason() -> sa.CheckConstraint:
    return sa.CheckConstraint(
        "voided_at IS NULL OR (voided_reason IS NOT NULL AND length(voided_reason) > 0)",
        name="voided_with_reason",
    )


def live_unique(table: str, *columns: str, where: str | None = None) -> sa.Index:
    """A natural key that ignores voided rows, so a voided record never blocks
    re-entering the corrected one (issue 6)."""
    clause = sa.text(f"{where} AND voided_at IS NULL") if where else _LIVE
    return sa.Index(
        f"uq_{table}_{'_'.join(columns)}",
        *columns,
        unique=True,
        sqlite_where=clause,
        postgresql_where=clause,
    )


class Recorded(Timestamped):
    """A clinical record: corrected under a version check, never deleted, only voided."""

    # optimistic concurrency: a correction names the version it started from
    version: int = Field(default=1, nullable=False, sa_column_kwargs={"server_default": "1"})
    voided_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    voided_reason: str | None = None
    voided_by: str | None = Field(default=None, max_length=200)


class Patient(Recorded, table=True):
    __tablename__ = "patient"
    __table_args__ = (
        one_of("sex", vocab.Sex, nullable=True),
        sa.CheckConstraint("length(mrn) > 0", name="mrn_not_blank"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(max_length=64, unique=True, nullable=False)
    birth_date: dt.date | None = None
    sex: str | None = Field(default=None, max_length=16)
    family_name: str | None = Field(default=None, max_length=200)
    given_name: str | None = Field(default=None, max_length=200)
    # the unit or ward whose channel receives the patient's reminders (model-spec 9)
    team: str | None = Field(
        default=None,
        max_length=100,
        index=True,
        sa_column_args=[sa.ForeignKey("team.name", ondelete="RESTRICT", onupdate="CASCADE")],
    )


class bytewise(FunctionElement[str]):
    """Text compared code point by code point on every backend: SQLite does so
    already; PostgreSQL is told COLLATE "C". The patient list then sorts alike on
    both, and a name prefix is a range of its order index under any database
    collation (a linguistic collation does not keep a prefix's names together)."""

    name = "bytewise"
    inherit_cache = True
    type = sa.String()


@compiles(bytewise)
def _bytewise(element: bytewise, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(bytewise, "postgresql")
def _bytewise_postgresql(element: bytewise, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'


def _name_keys(p: Any) -> tuple[Any, Any]:
    blank: Any = sa.literal_column("''")
    return (
        sa.func.coalesce(sa.func.lower(p.family_name), blank),
        sa.func.coalesce(sa.func.lower(p.given_name), blank),
    )


def patient_name_order(p: Any) -> tuple[Any, ...]:
    """The patient list's order, exactly as the index ix_patient_name_order holds it:
    family name, given name (lowercased; a missing one sorts first, as ''), MRN, id,
    each compared by code point."""
    family, given = _name_keys(p)
    return (bytewise(family), bytewise(given), bytewise(p.mrn), p.id)


def _patient_search_indexes() -> None:
    """The patient list at 100,000 patients (issue 14, services/patients.py): its name
    order, read a page at a time from where the last page stopped (and a family name's
    start is a range of it), and the start of a given name or MRN in any case. On
    PostgreSQL the prefix indexes use text_pattern_ops, so `lower(x) LIKE 'smi%'`
    reads them under any collation. (SQLite cannot reflect expression indexes: a
    batch migration that rebuilds the patient table must create these again.)"""
    p = Patient.__table__.c  # type: ignore[attr-defined]
    family, given = _name_keys(p)
    # the collation goes with the index columns, where PostgreSQL's DDL takes it (and
    # where Alembic, which cannot reflect it, does not compare it)
    bytewise_columns = {key: 'COLLATE "C"' for key in ("family_key", "given_key", "mrn")}
    sa.Index(
        "ix_patient_name_order",
        family.label("family_key"),
        given.label("given_key"),
        p.mrn,
        p.id,
        postgresql_ops=bytewise_columns,
    )
    for column in ("family_name", "given_name", "mrn"):
        folded = f"{column}_folded"
        sa.Index(
            f"ix_patient_{folded}",
            sa.func.lower(p[column]).label(folded),
            postgresql_ops={folded: "text_pattern_ops"},
        )


_patient_search_indexes()


class Injury(Recorded, table=True):
    __tablename__ = "injury"
    __table_args__ = (
        one_of("kind", vocab.InjuryKind),
        live_unique("injury", "patient_id", "kind", "date"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    kind: str = Field(max_length=40, nullable=False)
    date: dt.date = Field(nullable=False)
    notes: str | None = None


class ImagingStudy(Recorded, table=True):
    """One examination. Its natural key is (patient, date, modality, accession);
    a study without an accession number is unique on (patient, date, modality)."""

    __tablename__ = "imaging_study"
    __table_args__ = (
        one_of("modality", vocab.Modality),
        one_of("indication", vocab.Indication, nullable=True),
        sa.Index(
            "uq_imaging_study_no_accession",
            "patient_id",
            "date",
            "modality",
            unique=True,
            sqlite_where=sa.text("accession IS NULL AND voided_at IS NULL"),
            postgresql_where=sa.text("accession IS NULL AND voided_at IS NULL"),
        ),
        sa.Index(
            "uq_imaging_study_accession",
            "patient_id",
            "date",
            "modality",
            "accession",
            unique=True,
            sqlite_where=sa.text("accession IS NOT NULL AND voided_at IS NULL"),
            postgresql_where=sa.text("accession IS NOT NULL AND voided_at IS NULL"),
        ),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    modality: str = Field(max_length=20, nullable=False)
    accession: str | None = Field(default=None, max_length=64)
    # why the study was done (model-spec v2, section 1); the findings of a study share it
    indication: str | None = Field(default=None, max_length=20)


class SiteFinding(Recorded, table=True):
    """What one study showed at one site (one imaging.csv row)."""

    __tablename__ = "site_finding"
    __table_args__ = (
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        one_of("ho", vocab.HoPresence),
        one_of("soft_tissue", vocab.SoftTissue, nullable=True),
        one_of("calcification", vocab.Calcification, nullable=True),
        one_of("cortex", vocab.Cortex, nullable=True),
        one_of("trabeculae", vocab.Trabeculae, nullable=True),
        one_of("vascularity", vocab.Vascularity, nullable=True),
        one_of("uptake", vocab.Uptake, nullable=True),
        one_of("della_valle", vocab.DellaValle, nullable=True),
        sa.CheckConstraint(
            f"brooker IS NULL OR brooker BETWEEN {vocab.BROOKER_MIN} AND {vocab.BROOKER_MAX}",
            name="brooker_range",
        ),
        positive("size_mm"),
        live_unique("site_finding", "study_id", "site", "side"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(
        sa_column_args=[foreign_key("imaging_study.id")], nullable=False, index=True
    )
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    ho: str = Field(max_length=20, nullable=False)
    soft_tissue: str | None = Field(default=None, max_length=20)
    calcification: str | None = Field(default=None, max_length=20)
    cortex: str | None = Field(default=None, max_length=20)
    trabeculae: str | None = Field(default=None, max_length=5)
    vascularity: str | None = Field(default=None, max_length=20)
    uptake: str | None = Field(default=None, max_length=20)
    brooker: int | None = None
    della_valle: str | None = Field(default=None, max_length=1)
    size_mm: float | None = None
    notes: str | None = None


class BoneScanMeasurement(Recorded, table=True):
    """A quantitative bone-scan ratio: lesion ROI counts over normal-bone ROI counts."""

    __tablename__ = "bone_scan_measurement"
    __table_args__ = (
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        one_of("phase", vocab.Phase),
        sa.CheckConstraint("ratio > 0", name="ratio_positive"),
        positive("lesion_counts"),
        positive("reference_counts"),
        live_unique(
            "bone_scan_measurement", "patient_id", "date", "site", "side", "phase", "ratio"
        ),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    phase: str = Field(max_length=20, nullable=False)
    ratio: float = Field(nullable=False)
    lesion_counts: float | None = None
    reference_counts: float | None = None
    reference_region: str | None = Field(default=None, max_length=100)


class TreatmentCourse(Recorded, table=True):
    __tablename__ = "treatment_course"
    __table_args__ = (
        one_of("agent", vocab.Agent),
        one_of("intent", vocab.Intent),
        one_of("site", vocab.Site, nullable=True),
        one_of("side", vocab.Side, nullable=True),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="end_after_start"),
        sa.CheckConstraint("(site IS NULL) = (side IS NULL)", name="site_with_side"),
        positive("planned_weeks"),
        positive("dose"),
        live_unique("treatment_course", "patient_id", "agent", "intent", "start_date"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    agent: str = Field(max_length=30, nullable=False)
    intent: str = Field(max_length=20, nullable=False)
    start_date: dt.date = Field(nullable=False)
    end_date: dt.date | None = None
    planned_weeks: float | None = None
    dose: float | None = None
    dose_unit: str | None = Field(default=None, max_length=30)
    site: str | None = Field(default=None, max_length=20)
    side: str | None = Field(default=None, max_length=10)


class Procedure(Recorded, table=True):
    __tablename__ = "procedure"
    __table_args__ = (
        one_of("kind", vocab.ProcedureKind),
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        live_unique("procedure", "patient_id", "kind", "date", "site", "side"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    kind: str = Field(max_length=20, nullable=False)
    date: dt.date = Field(nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    notes: str | None = None


class LabResult(Recorded, table=True):
    __tablename__ = "lab_result"
    __table_args__ = (
        one_of("analyte", vocab.Analyte),
        lab_unit_allowed(),
        sa.CheckConstraint(
            "ref_low IS NULL OR ref_high IS NULL OR ref_low <= ref_high", name="ref_range_ordered"
        ),
        live_unique("lab_result", "patient_id", "date", "analyte"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    analyte: str = Field(max_length=20, nullable=False)
    value: float = Field(nullable=False)
    unit: str = Field(max_length=30, nullable=False)
    ref_low: float | None = None
    ref_high: float | None = None


class ClinicalExam(Recorded, table=True):
    """The bedside examination of one joint on one day (model-spec v2, section 10): the
    signs seen (yes/no, blank when not examined) and a 0-10 pain score."""

    __tablename__ = "clinical_exam"
    __table_args__ = (
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        *(one_of(sign, vocab.Sign, nullable=True) for sign in vocab.EXAM_SIGNS),
        sa.CheckConstraint(
            f"pain IS NULL OR pain BETWEEN {vocab.PAIN_MIN} AND {vocab.PAIN_MAX}",
            name="pain_range",
        ),
        live_unique("clinical_exam", "patient_id", "date", "site", "side"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    swelling: str | None = Field(default=None, max_length=5)
    warmth: str | None = Field(default=None, max_length=5)
    erythema: str | None = Field(default=None, max_length=5)
    pain: int | None = None
    notes: str | None = None


class RangeOfMotion(Recorded, table=True):
    """One movement's arc at one joint on one day, in degrees (model-spec v2, section 10)."""

    __tablename__ = "range_of_motion"
    __table_args__ = (
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        one_of("movement", vocab.Movement),
        sa.CheckConstraint(
            f"degrees >= {vocab.DEGREES_MIN} AND degrees <= {vocab.DEGREES_MAX}",
            name="degrees_range",
        ),
        live_unique("range_of_motion", "patient_id", "date", "site", "side", "movement"),
        voided_with_reason(),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    movement: str = Field(max_length=20, nullable=False)
    degrees: float = Field(nullable=False)


class Team(Timestamped, table=True):
    """A unit or ward: its patients' reminders go to its delivery address."""

    __tablename__ = "team"
    __table_args__ = (
        sa.CheckConstraint("length(name) > 0", name="name_not_blank"),
        sa.CheckConstraint("email IS NULL OR email LIKE '%_@_%'", name="email_has_at"),
        sa.CheckConstraint(
            "escalation_email IS NULL OR escalation_email LIKE '%_@_%'",
            name="escalation_email_has_at",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, nullable=False)
    email: str | None = Field(default=None, max_length=254)
    # escalations go here when set, else to `email` as well
    escalation_email: str | None = Field(default=None, max_length=254)


_NO_SITE = sa.text("site IS NULL")
_SITE = sa.text("site IS NOT NULL")
# the worklist's rows (not yet closed), in its order: its first page reads this index
# and stops, however much closed history there is (issue 14; services/worklist.py)
REMINDER_OPEN = "status IN ('pending', 'due', 'sent')"


class Reminder(Timestamped, table=True):
    """One reminder (model-spec section 9), also the in-app worklist row.

    Its natural key is (patient, rule, site, side, due): two partial unique indexes,
    because NULL never equals NULL in a unique constraint. Delivery bookkeeping
    lives on the row: a claim (`claimed_by`, `claim_token`, `claimed_until`) taken
    atomically before sending, the Message-ID, attempts and back-off, `version`
    bumped by every delivery update.
    """

    __tablename__ = "reminder"
    __table_args__ = (
        one_of("rule", vocab.ReminderRule),
        one_of("status", vocab.ReminderStatus),
        one_of("site", vocab.Site, nullable=True),
        one_of("side", vocab.Side, nullable=True),
        sa.CheckConstraint("(site IS NULL) = (side IS NULL)", name="site_with_side"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.CheckConstraint(
            "status <> 'cancelled' OR cancel_reason IS NOT NULL", name="cancelled_with_reason"
        ),
        sa.CheckConstraint(
            "status <> 'sent' OR (sent_at IS NOT NULL AND message_id IS NOT NULL)",
            name="sent_with_message",
        ),
        sa.Index(
            "uq_reminder_patient_rule_due",
            "patient_id",
            "rule",
            "due",
            unique=True,
            sqlite_where=_NO_SITE,
            postgresql_where=_NO_SITE,
        ),
        sa.Index(
            "uq_reminder_patient_rule_site_side_due",
            "patient_id",
            "rule",
            "site",
            "side",
            "due",
            unique=True,
            sqlite_where=_SITE,
            postgresql_where=_SITE,
        ),
        sa.Index("ix_reminder_status_due", "status", "due"),
        sa.Index(
            "ix_reminder_open_due_id",
            "due",
            "id",
            sqlite_where=sa.text(REMINDER_OPEN),
            postgresql_where=sa.text(REMINDER_OPEN),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    rule: str = Field(max_length=40, nullable=False)
    site: str | None = Field(default=None, max_length=20)
    side: str | None = Field(default=None, max_length=10)
    due: dt.date = Field(nullable=False)
    status: str = Field(default="pending", max_length=20, nullable=False)
    detail: str | None = Field(default=None, max_length=300)  # why the rule applies
    cancel_reason: str | None = Field(default=None, max_length=300)
    closed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    # who closed it by hand and why (issue 14: bulk acknowledge asks for a reason)
    closed_by: str | None = Field(default=None, max_length=200)
    ack_reason: str | None = Field(default=None, max_length=300)
    recipient: str | None = Field(default=None, max_length=254)
    attempts: int = Field(default=0, nullable=False)
    last_error: str | None = Field(default=None, max_length=500)
    next_attempt_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    claimed_by: str | None = Field(default=None, max_length=100)
    claim_token: str | None = Field(default=None, max_length=40)
    claimed_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    message_id: str | None = Field(default=None, max_length=200)
    sent_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    accepted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    late: bool = Field(default=False, nullable=False)
    escalated_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    escalation_message_id: str | None = Field(default=None, max_length=200)
    escalation_accepted_at: datetime | None = Field(
        default=None, sa_type=sa.DateTime(timezone=True)
    )
    version: int = Field(default=1, nullable=False)


class DeliveryAttempt(SQLModel, table=True):
    """Every attempt to deliver a reminder or its escalation, and how it ended."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('reminder', 'escalation')", name="kind_allowed"),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'refused', 'failed', 'no_address', 'unconfirmed', "
            "'stale', 'lost_claim')",
            name="outcome_allowed",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    reminder_id: int = Field(
        sa_column_args=[foreign_key("reminder.id")], nullable=False, index=True
    )
    kind: str = Field(max_length=20, nullable=False)
    attempted_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)
    outcome: str = Field(max_length=20, nullable=False)
    worker: str | None = Field(default=None, max_length=100)
    detail: str | None = Field(default=None, max_length=500)


class TeamDigest(SQLModel, table=True):
    """The daily digest of a team's open reminders: at most one per team and day."""

    __tablename__ = "team_digest"
    __table_args__ = (sa.UniqueConstraint("team", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(
        max_length=100,
        nullable=False,
        sa_column_args=[sa.ForeignKey("team.name", ondelete="CASCADE", onupdate="CASCADE")],
    )
    day: dt.date = Field(nullable=False)
    message_id: str = Field(max_length=200, nullable=False)
    reminders: int = Field(nullable=False)
    sent_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)


class UserAccount(Timestamped, table=True):
    """Someone who signs in to the web app (issue 6); the role decides what they may do."""

    __tablename__ = "user_account"
    __table_args__ = (
        one_of("role", vocab.Role),
        sa.CheckConstraint("length(username) > 0", name="username_not_blank"),
    )

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=200, unique=True, nullable=False)
    role: str = Field(max_length=20, nullable=False)
    password_hash: str = Field(max_length=500, nullable=False)  # argon2id, never the password
    active: bool = Field(default=True, nullable=False)
    # the user's own unit, for the worklist's "my team" filter (issue 14)
    team: str | None = Field(
        default=None,
        max_length=100,
        sa_column_args=[sa.ForeignKey("team.name", ondelete="SET NULL", onupdate="CASCADE")],
    )
    # set by an admin's password reset: the next sign-in must choose a new password
    must_change_password: bool = Field(
        default=False, nullable=False, sa_column_kwargs={"server_default": sa.false()}
    )
    last_signin_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class FlashNotice(SQLModel, table=True):
    """A one-time notice for one browser session ("Reminder acknowledged"), written by
    the request that did the work and shown, then deleted, by the next page that
    session opens. Kept in the database, not in process memory or the URL, so any app
    process shows it and no link can make the app say something it did not do."""

    __tablename__ = "flash_notice"

    id: int | None = Field(default=None, primary_key=True)
    session_nonce: str = Field(max_length=64, nullable=False, index=True)
    text: str = Field(max_length=1000, nullable=False)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now()},
        nullable=False,
    )


class ApiToken(SQLModel, table=True):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column_args=[foreign_key("user_account.id")], nullable=False, index=True
    )
    token_hash: str = Field(max_length=64, unique=True, nullable=False)
    name: str = Field(max_length=200, nullable=False)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now()},
        nullable=False,
    )
    last_used: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class WebSession(SQLModel, table=True):
    """A signed-in browser session, held on the server (issue 15): the cookie carries a
    random id whose SHA-256 alone is stored here. Signing out, disabling the user, a
    password reset or change and a role change end it at once, on every app process;
    an ended session stays ended (re-enabling a user revives nothing)."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(max_length=64, unique=True, index=True, nullable=False)
    user_id: int = Field(
        sa_column_args=[foreign_key("user_account.id")], nullable=False, index=True
    )
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now()},
        nullable=False,
    )
    last_seen_at: datetime = Field(
        default_factory=utcnow,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now()},
        nullable=False,
    )
    ended_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    # 'signed out', 'disabled', 'password reset', 'password changed', 'role changed',
    # 'idle', 'expired'
    ended_reason: str | None = Field(default=None, max_length=40)


class AuditEvent(SQLModel, table=True):
    """Who did what to which record, when, with the record before and after (issue 6).

    `username` is NULL for the system itself; `before`/`after` are JSON text."""

    __tablename__ = "audit_event"
    __table_args__ = (
        one_of("action", vocab.AuditAction),
        sa.Index("ix_audit_event_mrn_at", "mrn", "at"),
        sa.Index("ix_audit_event_at", "at"),
        # the audit page's user and action filters, newest first (issue 14)
        sa.Index("ix_audit_event_username_at", "username", "at"),
        sa.Index("ix_audit_event_action_at", "action", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), nullable=False)
    username: str | None = Field(default=None, max_length=200)
    action: str = Field(max_length=20, nullable=False)
    entity: str | None = Field(default=None, max_length=40)  # the table name
    entity_id: int | None = None
    mrn: str | None = Field(default=None, max_length=64)
    before: str | None = None
    after: str | None = None


class DicomPendingSite(Timestamped, table=True):
    """A site named by imported DICOM headers (Body Part Examined, Laterality) that
    waits for a clinician to record the finding; one per study, body part and side."""

    __tablename__ = "dicom_pending_site"
    __table_args__ = (
        one_of("site", vocab.Site, nullable=True),
        one_of("side", vocab.Side, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'completed')", name="status_allowed"),
        sa.UniqueConstraint("study_id", "body_part", "laterality"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(
        sa_column_args=[foreign_key("imaging_study.id")], nullable=False, index=True
    )
    body_part: str = Field(default="", max_length=64, nullable=False)  # '' when absent
    laterality: str = Field(default="", max_length=16, nullable=False)  # '' when absent
    site: str | None = Field(default=None, max_length=20)  # mapped from body_part, if known
    side: str | None = Field(default=None, max_length=10)
    source_file: str = Field(max_length=500, nullable=False)
    status: str = Field(default="pending", max_length=20, nullable=False)
    completed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    completed_by: str | None = Field(default=None, max_length=200)


class PacsPollState(SQLModel, table=True):
    """Where the PACS feed stands (issue 17): one row. Studies dated up to and including
    `complete_through` have all been read; each date window is written in the same
    transaction as the advance of this position, so a restart neither misses nor
    repeats a study. A failed poll leaves the position and records what went wrong
    (in words), how many polls in a row failed and when the next one may try."""

    __tablename__ = "pacs_poll_state"
    __table_args__ = (
        sa.CheckConstraint("id = 1", name="single_row"),
        sa.CheckConstraint("failures >= 0", name="failures_not_negative"),
    )

    id: int = Field(default=1, primary_key=True)
    complete_through: dt.date | None = None
    last_success_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    failures: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


BOARD_ORDER = ("priority", "rank_date", "mrn", "id")


class SiteAssessment(SQLModel, table=True):
    """One site of one patient as the cohort path assessed it on `as_of` (issue 14),
    kept so that the surgeons' board and the patient search read one page of stored
    calls instead of assessing every patient on every request. Derived, never edited:
    `services/site_assessments.py` rewrites every row (a refresh, the daily job) or one
    patient's rows (after each save of that patient's records)."""

    __tablename__ = "site_assessment"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "site", "side"),
        # the board's order (priority group, date, mrn, id), whole and per filter
        sa.Index("ix_site_assessment_board", *BOARD_ORDER),
        sa.Index("ix_site_assessment_readiness_board", "readiness", *BOARD_ORDER),
        sa.Index("ix_site_assessment_stage_board", "stage", *BOARD_ORDER),
        # the oldest and newest call and the rules behind them: two index probes
        sa.Index("ix_site_assessment_made", "as_of", "protocol_fingerprint", "model_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(
        sa_column_args=[sa.ForeignKey("patient.id", ondelete="CASCADE")], nullable=False
    )
    mrn: str = Field(max_length=64, nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    stage: str = Field(max_length=20, nullable=False)
    activity: str = Field(max_length=20, nullable=False)
    readiness: str = Field(max_length=20, nullable=False)
    flags: str = Field(default="", max_length=300, nullable=False)  # sorted, ";"-joined
    forecast_date: dt.date | None = None
    forecast_low: dt.date | None = None
    forecast_high: dt.date | None = None
    forecast_passed: bool | None = None
    # the board's group (0 ready, 1 stabilising soon, 2 rescan, 3 other HO, 4 no HO)
    # and the date it is ordered by within its group
    priority: int = Field(nullable=False)
    rank_date: dt.date = Field(nullable=False)
    as_of: dt.date = Field(nullable=False)
    model_version: int = Field(nullable=False)
    protocol_fingerprint: str = Field(max_length=80, nullable=False)
    assessed_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False)


CLINICAL_TABLES = (
    Patient,
    Injury,
    ImagingStudy,
    SiteFinding,
    BoneScanMeasurement,
    TreatmentCourse,
    Procedure,
    LabResult,
    ClinicalExam,
    RangeOfMotion,
)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a model, for bulk reads and writes."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table
