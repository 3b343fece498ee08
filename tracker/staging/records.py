"""A patient's story as the clinical core sees it: frozen records, no storage.

Values are the plain strings of `tracker.vocab` (its StrEnum members compare equal
to them); dates are `datetime.date`. The store's loaders build these; the core never
writes them. `SiteEvidence` is the slice of the story that counts for one site on
one day (model-spec section 3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, TypeVar

from tracker.vocab import Phase, ProcedureKind


@dataclass(frozen=True, slots=True)
class Injury:
    kind: str  # InjuryKind
    date: date


@dataclass(frozen=True, slots=True)
class Finding:
    """One site's finding on one imaging study (imaging.csv)."""

    date: date
    modality: str  # Modality
    site: str  # Site
    side: str  # Side
    ho: str  # HoPresence
    soft_tissue: str | None = None
    calcification: str | None = None
    cortex: str | None = None
    trabeculae: str | None = None
    vascularity: str | None = None
    uptake: str | None = None
    brooker: int | None = None
    della_valle: str | None = None
    size_mm: float | None = None
    indication: str | None = None  # Indication: why its study was done (v2, optional)


@dataclass(frozen=True, slots=True)
class BoneScan:
    """One quantitative bone-scan measurement: lesion over normal-bone uptake."""

    date: date
    site: str
    side: str
    phase: str  # Phase
    ratio: float | None = None  # None when neither ratio nor counts were recorded


@dataclass(frozen=True, slots=True)
class Course:
    agent: str  # Agent
    intent: str  # Intent
    start_date: date
    end_date: date | None = None  # None while the course is ongoing
    planned_weeks: float | None = None


@dataclass(frozen=True, slots=True)
class Procedure:
    kind: str  # ProcedureKind
    date: date
    site: str
    side: str


@dataclass(frozen=True, slots=True)
class Lab:
    date: date
    analyte: str  # Analyte
    value: float
    ref_high: float | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Exam:
    """The bedside examination of one joint on one day (exams.csv, model-spec v2,
    section 10): signs seen ("yes"), not seen ("no") or not examined (None). It feeds
    the suspected_ho_imaging reminder; it never makes a site."""

    date: date
    site: str  # Site
    side: str  # Side
    swelling: str | None = None  # Sign
    warmth: str | None = None
    erythema: str | None = None
    pain: int | None = None  # 0-10


@dataclass(frozen=True, slots=True)
class RangeOfMotion:
    """One movement's arc at a joint on one day, measured with a goniometer (rom.csv,
    model-spec v2, section 10). It feeds the `rom_loss` flag; it never makes a site."""

    date: date
    site: str  # Site
    side: str  # Side
    movement: str  # Movement
    degrees: float


@dataclass(frozen=True, slots=True)
class PatientRecords:
    mrn: str
    injuries: tuple[Injury, ...] = ()
    findings: tuple[Finding, ...] = ()
    bone_scans: tuple[BoneScan, ...] = ()
    courses: tuple[Course, ...] = ()
    procedures: tuple[Procedure, ...] = ()
    labs: tuple[Lab, ...] = ()
    range_of_motion: tuple[RangeOfMotion, ...] = ()
    exams: tuple[Exam, ...] = ()


SiteKey = tuple[str, str]  # (site, side)
_Record = TypeVar("_Record")


def in_canonical_order(items: Iterable[_Record]) -> tuple[_Record, ...]:
    """Sort records by every field, in field order, so input order never matters."""
    return tuple(sorted(items, key=_sort_key))


def _sort_key(record: Any) -> tuple[tuple[int, str], ...]:
    values = (getattr(record, f.name) for f in fields(record))
    return tuple(
        (0, "")
        if value is None
        else (1, value.isoformat() if isinstance(value, date) else str(value))
        for value in values
    )


def as_of_cut(records: PatientRecords, as_of: date) -> PatientRecords:
    """The records dated on or before as_of, each tuple in canonical order.

    Records dated after as_of never count anywhere (model-spec section 3); a course
    counts from its start date.
    """
    return PatientRecords(
        mrn=records.mrn,
        injuries=in_canonical_order(i for i in records.injuries if i.date <= as_of),
        findings=in_canonical_order(f for f in records.findings if f.date <= as_of),
        bone_scans=in_canonical_order(s for s in records.bone_scans if s.date <= as_of),
        courses=in_canonical_order(c for c in records.courses if c.start_date <= as_of),
        procedures=in_canonical_order(p for p in records.procedures if p.date <= as_of),
        labs=in_canonical_order(lab for lab in records.labs if lab.date <= as_of),
        range_of_motion=in_canonical_order(m for m in records.range_of_motion if m.date <= as_of),
        exams=in_canonical_order(e for e in records.exams if e.date <= as_of),
    )


def site_keys(records: PatientRecords) -> tuple[SiteKey, ...]:
    """Every (site, side) with a finding or bone-scan measurement, sorted.

    A site whose only evidence predates a resection still appears: it has a history,
    and after the resection it restarts at stage none.
    """
    keys = {(f.site, f.side) for f in records.findings}
    keys |= {(s.site, s.side) for s in records.bone_scans}
    return tuple(sorted(keys, key=lambda key: (str(key[0]), str(key[1]))))


@dataclass(frozen=True, slots=True)
class SiteEvidence:
    """What counts for one site: its findings and bone-scan measurements after its
    latest resection (model-spec section 3), in canonical (date) order."""

    site: str
    side: str
    resected_on: date | None
    findings: tuple[Finding, ...]
    bone_scans: tuple[BoneScan, ...]
    # the site's range of motion after its latest resection (model-spec v2, section 6)
    range_of_motion: tuple[RangeOfMotion, ...] = ()

    @property
    def delayed_scans(self) -> tuple[BoneScan, ...]:
        return tuple(s for s in self.bone_scans if s.phase == Phase.delayed and s.ratio is not None)

    @property
    def first_date(self) -> date | None:
        dates = [f.date for f in self.findings] + [s.date for s in self.bone_scans]
        return min(dates) if dates else None

    @property
    def since(self) -> str:
        """Words for evidence texts: where the site's story restarts, if it does."""
        return f" since resection {self.resected_on.isoformat()}" if self.resected_on else ""


def site_evidence(records: PatientRecords, key: SiteKey) -> SiteEvidence:
    """The evidence of one site in records already cut at as_of (see `as_of_cut`)."""
    site, side = key
    resections = [
        p.date
        for p in records.procedures
        if p.kind == ProcedureKind.resection and p.site == site and p.side == side
    ]
    resected_on = max(resections) if resections else None

    def counts(record: Finding | BoneScan | RangeOfMotion) -> bool:
        after = resected_on is None or record.date > resected_on
        return record.site == site and record.side == side and after

    return SiteEvidence(
        site=site,
        side=side,
        resected_on=resected_on,
        findings=tuple(f for f in records.findings if counts(f)),
        bone_scans=tuple(s for s in records.bone_scans if counts(s)),
        range_of_motion=tuple(m for m in records.range_of_motion if counts(m)),
    )
