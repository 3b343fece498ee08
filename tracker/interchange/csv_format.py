"""Interchange CSV v2 (model-spec section 2): files, columns, types and natural keys.

This table drives import validation, export and the synthetic generator, so the
format is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import pandas as pd

from tracker import values, vocab

# One rule per value (tracker.values): an identifier (MRN, team) has no control
# character at all; text none either; a note may hold line breaks; every number is
# finite and within +/- values.NUMBER_LIMIT; every date is on or after
# values.EARLIEST_DATE and not after today (FUTURE_DAYS ahead where `future`).
ColumnKind = Literal["identifier", "text", "note", "enum", "date", "int", "float"]
TEXT_KINDS = ("identifier", "text", "note")


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool = False
    enum: type[StrEnum] | None = None
    positive: bool = False  # value must be > 0
    low: float | None = None  # inclusive bounds
    high: float | None = None
    max_length: int | None = None
    future: bool = False  # a date that may reach values.FUTURE_DAYS ahead


@dataclass(frozen=True)
class FileFormat:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the natural key: a re-imported row with this key adds nothing

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _enum(name: str, enum: type[StrEnum], required: bool = False) -> Column:
    return Column(name, "enum", required=required, enum=enum)


PLANNED_WEEKS_MAX = 520  # ten years: the longest course a protocol plans


def _note(name: str = "notes") -> Column:
    return Column(name, "note", max_length=values.NOTE_MAX)


MRN = Column("mrn", "identifier", required=True, max_length=values.MRN_MAX)
SITE = _enum("site", vocab.Site, required=True)
SIDE = _enum("side", vocab.Side, required=True)

PATIENTS = FileFormat(
    "patients.csv",
    (
        MRN,
        Column("birth_date", "date"),
        _enum("sex", vocab.Sex),
        Column("family_name", "text", max_length=values.NAME_MAX),
        Column("given_name", "text", max_length=values.NAME_MAX),
        Column("team", "identifier", max_length=values.TEAM_MAX),
    ),
    key=("mrn",),
)

INJURIES = FileFormat(
    "injuries.csv",
    (
        MRN,
        _enum("kind", vocab.InjuryKind, True),
        Column("date", "date", True),
        _note(),
    ),
    key=("mrn", "kind", "date"),
)

IMAGING = FileFormat(
    "imaging.csv",
    (
        MRN,
        Column("date", "date", True),
        _enum("modality", vocab.Modality, True),
        SITE,
        SIDE,
        _enum("ho", vocab.HoPresence, True),
        _enum("soft_tissue", vocab.SoftTissue),
        _enum("calcification", vocab.Calcification),
        _enum("cortex", vocab.Cortex),
        _enum("trabeculae", vocab.Trabeculae),
        _enum("vascularity", vocab.Vascularity),
        _enum("uptake", vocab.Uptake),
        Column("brooker", "int", low=vocab.BROOKER_MIN, high=vocab.BROOKER_MAX),
        _enum("della_valle", vocab.DellaValle),
        Column("size_mm", "float", positive=True),
        Column("accession", "text", max_length=64),
        # v2: why the study was done; the rows of one study share it (validate.py)
        _enum("indication", vocab.Indication),
        _note(),
    ),
    key=("mrn", "date", "modality", "accession", "site", "side"),
)
STUDY_KEY = ("mrn", "date", "modality", "accession")
# imaging.csv columns stored on the study rather than on each site finding
STUDY_COLUMNS = ("date", "modality", "accession", "indication")

BONE_SCANS = FileFormat(
    "bone_scans.csv",
    (
        MRN,
        Column("date", "date", True),
        SITE,
        SIDE,
        _enum("phase", vocab.Phase, True),
        Column("ratio", "float", positive=True),
        Column("lesion_counts", "float", positive=True),
        Column("reference_counts", "float", positive=True),
        Column("reference_region", "text", max_length=100),
    ),
    key=("mrn", "date", "site", "side", "phase", "ratio"),
)

TREATMENTS = FileFormat(
    "treatments.csv",
    (
        MRN,
        _enum("agent", vocab.Agent, True),
        _enum("intent", vocab.Intent, True),
        Column("start_date", "date", True),
        Column("end_date", "date"),
        Column("planned_weeks", "float", positive=True, high=PLANNED_WEEKS_MAX),
        Column("dose", "float", positive=True),
        Column("dose_unit", "text", max_length=30),
        _enum("site", vocab.Site),
        _enum("side", vocab.Side),
    ),
    key=("mrn", "agent", "intent", "start_date"),
)

PROCEDURES = FileFormat(
    "procedures.csv",
    (
        MRN,
        _enum("kind", vocab.ProcedureKind, True),
        Column("date", "date", True),
        SITE,
        SIDE,
        _note(),
    ),
    key=("mrn", "kind", "date", "site", "side"),
)

LABS = FileFormat(
    "labs.csv",
    (
        MRN,
        Column("date", "date", True),
        _enum("analyte", vocab.Analyte, True),
        Column("value", "float", True),
        # one of its analyte's units (vocab.LAB_UNITS): validate.check_rules
        Column("unit", "text", True, max_length=30),
        Column("ref_low", "float"),
        Column("ref_high", "float"),
    ),
    key=("mrn", "date", "analyte"),
)

EXAMS = FileFormat(
    "exams.csv",
    (
        MRN,
        Column("date", "date", True),
        SITE,
        SIDE,
        *(_enum(sign, vocab.Sign) for sign in vocab.EXAM_SIGNS),
        Column("pain", "int", low=vocab.PAIN_MIN, high=vocab.PAIN_MAX),
        _note(),
    ),
    key=("mrn", "date", "site", "side"),
)

ROM = FileFormat(
    "rom.csv",
    (
        MRN,
        Column("date", "date", True),
        SITE,
        SIDE,
        _enum("movement", vocab.Movement, True),
        Column("degrees", "float", True, low=vocab.DEGREES_MIN, high=vocab.DEGREES_MAX),
    ),
    key=("mrn", "date", "site", "side", "movement"),
)

# Import order: patients first, everything else refers to them.
FORMATS: tuple[FileFormat, ...] = (
    PATIENTS,
    INJURIES,
    IMAGING,
    BONE_SCANS,
    TREATMENTS,
    PROCEDURES,
    LABS,
    EXAMS,
    ROM,
)
FORMAT_BY_NAME = {f.name: f for f in FORMATS}


def format_number(value: float) -> str:
    """The canonical text of a number: shortest round-trip form, no trailing `.0`."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def number_texts(series: pd.Series) -> pd.Series:
    """Canonical text of each number in a column; '' where missing."""
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return pd.Series(
        [format_number(v) if v == v else "" for v in values.tolist()],
        index=series.index,
        dtype=object,
    )
