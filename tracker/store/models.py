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

import sqlalchemy as sa
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


class Patient(Timestamped, table=True):
    __tablename__ = "patient"
    __table_args__ = (
        one_of("sex", vocab.Sex, nullable=True),
        sa.CheckConstraint("length(mrn) > 0", name="mrn_not_blank"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(max_length=64, unique=True, nullable=False)
    birth_date: dt.date | None = None
    sex: str | None = Field(default=None, max_length=16)
    family_name: str | None = Field(default=None, max_length=200)
    given_name: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=100, index=True)


class Injury(Timestamped, table=True):
    __tablename__ = "injury"
    __table_args__ = (
        one_of("kind", vocab.InjuryKind),
        sa.UniqueConstraint("patient_id", "kind", "date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    kind: str = Field(max_length=40, nullable=False)
    date: dt.date = Field(nullable=False)
    notes: str | None = None


class ImagingStudy(Timestamped, table=True):
    """One examination. Its natural key is (patient, date, modality, accession);
    a study without an accession number is unique on (patient, date, modality)."""

    __tablename__ = "imaging_study"
    __table_args__ = (
        one_of("modality", vocab.Modality),
        sa.Index(
            "uq_imaging_study_no_accession",
            "patient_id",
            "date",
            "modality",
            unique=True,
            sqlite_where=sa.text("accession IS NULL"),
            postgresql_where=sa.text("accession IS NULL"),
        ),
        sa.Index(
            "uq_imaging_study_accession",
            "patient_id",
            "date",
            "modality",
            "accession",
            unique=True,
            sqlite_where=sa.text("accession IS NOT NULL"),
            postgresql_where=sa.text("accession IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    modality: str = Field(max_length=20, nullable=False)
    accession: str | None = Field(default=None, max_length=64)


class SiteFinding(Timestamped, table=True):
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
        sa.UniqueConstraint("study_id", "site", "side"),
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


class BoneScanMeasurement(Timestamped, table=True):
    """A quantitative bone-scan ratio: lesion ROI counts over normal-bone ROI counts."""

    __tablename__ = "bone_scan_measurement"
    __table_args__ = (
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        one_of("phase", vocab.Phase),
        sa.CheckConstraint("ratio > 0", name="ratio_positive"),
        positive("lesion_counts"),
        positive("reference_counts"),
        sa.UniqueConstraint("patient_id", "date", "site", "side", "phase", "ratio"),
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


class TreatmentCourse(Timestamped, table=True):
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
        sa.UniqueConstraint("patient_id", "agent", "intent", "start_date"),
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


class Procedure(Timestamped, table=True):
    __tablename__ = "procedure"
    __table_args__ = (
        one_of("kind", vocab.ProcedureKind),
        one_of("site", vocab.Site),
        one_of("side", vocab.Side),
        sa.UniqueConstraint("patient_id", "kind", "date", "site", "side"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    kind: str = Field(max_length=20, nullable=False)
    date: dt.date = Field(nullable=False)
    site: str = Field(max_length=20, nullable=False)
    side: str = Field(max_length=10, nullable=False)
    notes: str | None = None


class LabResult(Timestamped, table=True):
    __tablename__ = "lab_result"
    __table_args__ = (
        one_of("analyte", vocab.Analyte),
        sa.CheckConstraint(
            "ref_low IS NULL OR ref_high IS NULL OR ref_low <= ref_high", name="ref_range_ordered"
        ),
        sa.UniqueConstraint("patient_id", "date", "analyte"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(sa_column_args=[foreign_key("patient.id")], nullable=False, index=True)
    date: dt.date = Field(nullable=False)
    analyte: str = Field(max_length=20, nullable=False)
    value: float = Field(nullable=False)
    unit: str = Field(max_length=30, nullable=False)
    ref_low: float | None = None
    ref_high: float | None = None


CLINICAL_TABLES = (
    Patient,
    Injury,
    ImagingStudy,
    SiteFinding,
    BoneScanMeasurement,
    TreatmentCourse,
    Procedure,
    LabResult,
)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a model, for bulk reads and writes."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table
