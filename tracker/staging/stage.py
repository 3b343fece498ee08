"""Stage of a site: none < early < mineralising < mature (model-spec section 3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from tracker.protocol import StageRules
from tracker.staging.activity import above
from tracker.staging.records import BoneScan, Finding, SiteEvidence
from tracker.vocab import (
    CORTEX_MODALITIES,
    Calcification,
    Cortex,
    DellaValle,
    HoPresence,
    Uptake,
)


class Stage(StrEnum):
    none = "none"
    early = "early"
    mineralising = "mineralising"
    mature = "mature"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {stage: rank for rank, stage in enumerate(Stage)}
_DELLA_VALLE_RANK = {grade.value: rank for rank, grade in enumerate(DellaValle)}


def finding_stage(finding: Finding) -> Stage:
    """The stage one finding shows: the first of the spec's four rules that matches."""
    if finding.cortex == Cortex.well_defined and finding.modality in CORTEX_MODALITIES:
        return Stage.mature
    if (
        finding.calcification not in (None, Calcification.none)
        or (finding.brooker is not None and finding.brooker >= 1)
        or finding.della_valle in (DellaValle.b, DellaValle.c)
        or finding.cortex in (Cortex.partial, Cortex.well_defined)
    ):
        return Stage.mineralising
    if finding.ho in (HoPresence.present, HoPresence.indeterminate) or (
        finding.uptake == Uptake.increased
    ):
        return Stage.early
    return Stage.none


def scan_stage(scan: BoneScan, rules: StageRules) -> Stage:
    """Model-spec section 3 (v2): a bone-scan measurement (any phase) shows early HO
    when its ratio is above `normal_uptake_ratio`, and none at or below it (normal
    bone uptake: teams record the unaffected side for comparison). "At" allows
    floating-point noise (`activity.RATIO_SLACK`), so a recorded 1.2 is at 1.2.

    A measurement without a ratio (neither a ratio nor counts recorded) shows none:
    the spec makes a measurement early only when its ratio is above normal uptake,
    and nothing here shows uptake above normal. It still makes the site appear
    (section 8) but dates no HO evidence."""
    if scan.ratio is not None and above(float(scan.ratio), rules.normal_uptake_ratio):
        return Stage.early
    return Stage.none


def evidence_stage(record: Finding | BoneScan, rules: StageRules) -> Stage:
    """The stage one piece of evidence shows (a finding, or a bone-scan measurement)."""
    return scan_stage(record, rules) if isinstance(record, BoneScan) else finding_stage(record)


def most_advanced(stages: Iterable[Stage]) -> Stage:
    return max(stages, key=lambda stage: stage.rank, default=Stage.none)


def site_stage(evidence: SiteEvidence, rules: StageRules) -> Stage:
    """The most advanced stage any evidence shows: lesions do not un-mature, and a
    later modality that cannot see the cortex does not demote the site."""
    records: list[Finding | BoneScan] = [*evidence.findings, *evidence.bone_scans]
    return most_advanced(evidence_stage(record, rules) for record in records)


def dated_stages(evidence: SiteEvidence, rules: StageRules) -> list[tuple[date, Stage]]:
    """The stage shown by each piece of evidence, in date order."""
    records: list[Finding | BoneScan] = [*evidence.findings, *evidence.bone_scans]
    return sorted(
        ((r.date, evidence_stage(r, rules)) for r in records), key=lambda p: (p[0], p[1].rank)
    )


def della_valle_rank(grade: str) -> int:
    return _DELLA_VALLE_RANK[str(grade)]


@dataclass(frozen=True, slots=True)
class Grades:
    """The latest Brooker and Della Valle grades recorded at a site (null if none).

    Two different grades on the same latest day (say a radiograph and a CT) resolve
    to the higher one, so the answer never depends on the order records arrive in.
    """

    brooker: int | None
    della_valle: str | None


def latest_grades(evidence: SiteEvidence) -> Grades:
    brookers = [(f.date, f.brooker) for f in evidence.findings if f.brooker is not None]
    valles = [
        (f.date, della_valle_rank(f.della_valle))
        for f in evidence.findings
        if f.della_valle is not None
    ]
    brooker = max(brookers)[1] if brookers else None
    valle = list(DellaValle)[max(valles)[1]].value if valles else None
    return Grades(brooker=brooker, della_valle=valle)
