"""Synthetic cohorts in interchange CSV v1 (model-spec section 2).

`write_cohort` makes a realistic, reproducible population of patients at risk of
heterotopic ossification (HO): the injury mix, incidence, timelines, imaging
stages, bone-scan decay, courses and labs follow `clinical-reference.md`. It
serves demos, load tests and benchmarks; nothing in it is real patient data.

Each patient is one story built from a few hidden truths (when HO starts at which
site, when it mineralises and matures, its peak and plateau bone-scan ratio);
every recorded row is an observation of that truth on some date, so the records
agree with each other the way real notes do. One seeded `random.Random` drives
everything, rows are sorted, and numbers are written in canonical form, so the
same arguments always give byte-identical files.

A second seeded stream adds the quirks of real bone-scan reporting that the rules
of model-spec v2 turn on (sections 3-5): a repeat acquisition on the same day
(same-day ratios are averaged), ratios recorded exactly on a Kim threshold or
exactly one tolerance step (10%) from the previous one, and the unaffected hip
measured for comparison (a normal ratio, 1.2 or below: no HO there). Drawing them
from their own stream leaves every other row as the main stream makes it.
"""

from __future__ import annotations

import csv
import math
import random
from bisect import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import TextIO

from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_format import format_number
from tracker.vocab import InjuryKind as K

Row = tuple[str, ...]
# imaging.csv columns ho .. size_mm of one site finding (model-spec section 1)
Finding = tuple[str, str, str, str, str, str, str, str, str, str]

BATCH = 1000  # patients generated between writes and progress calls
ONE_YEAR = 365


def sort_columns(file: fmt.FileFormat) -> list[int]:
    """Column positions rows are ordered by: mrn, then the date, then the other key columns."""
    names = file.column_names
    dated = [n for n in ("date", "start_date") if n in names]
    order = ["mrn", *dated, *[n for n in file.key if n not in ("mrn", *dated)]]
    return [names.index(n) for n in order]


def row_order(file: fmt.FileFormat) -> Callable[[Row], tuple[Row, Row]]:
    """The sort key of the canonical row order (whole row as the final tie-break)."""
    positions = sort_columns(file)

    def key(row: Row) -> tuple[Row, Row]:
        return tuple(row[i] for i in positions), row

    return key


def sort_rows(file: fmt.FileFormat, rows: list[Row]) -> None:
    """Sort rows in place in the canonical order."""
    rows.sort(key=row_order(file))


def write_rows(path: Path, file: fmt.FileFormat, rows: Iterable[Row]) -> int:
    """Write one interchange file (header row, UTF-8, `\\n` line ends); return rows written."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(file.column_names)
        count = 0
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


# --- the clinic: injury mix and what follows each kind (clinical-reference.md) ---


@dataclass(frozen=True)
class InjuryProfile:
    kind: K
    share: float  # of all patients
    team: str
    male: float  # share of men
    age: tuple[float, float, float]  # low, high, mode at injury
    incidence: float  # HO risk without prophylaxis
    joints: tuple[tuple[str, float], ...]  # where HO forms, with weights
    bilateral: float  # chance that a joint is affected on both sides
    wait_months: int  # classic waiting time before resection (model-spec section 5)


_NEURO_JOINTS = (("hip", 0.62), ("knee", 0.2), ("elbow", 0.12), ("shoulder", 0.06))
_PARAPLEGIC_JOINTS = (("hip", 0.78), ("knee", 0.22))
PROFILES: tuple[InjuryProfile, ...] = (
    InjuryProfile(K.spinal_cord_injury, 0.15, "spinal_unit", 0.8, (16, 80, 35), 0.26,
                  _NEURO_JOINTS, 0.3, 12),
    InjuryProfile(K.traumatic_brain_injury, 0.12, "brain_injury_unit", 0.7, (16, 85, 30), 0.17,
                  (("hip", 0.45), ("elbow", 0.25), ("shoulder", 0.15), ("knee", 0.15)), 0.25, 18),
    InjuryProfile(K.acquired_brain_injury, 0.06, "brain_injury_unit", 0.55, (18, 85, 60), 0.12,
                  (("hip", 0.5), ("elbow", 0.2), ("shoulder", 0.15), ("knee", 0.15)), 0.2, 18),
    InjuryProfile(K.burn, 0.06, "burns_unit", 0.65, (16, 80, 40), 0.05,
                  (("elbow", 0.6), ("shoulder", 0.2), ("hip", 0.1), ("knee", 0.1)), 0.3, 6),
    InjuryProfile(K.musculoskeletal_trauma, 0.18, "trauma_ward", 0.62, (16, 85, 40), 0.12,
                  (("hip", 0.35), ("elbow", 0.3), ("thigh", 0.2), ("knee", 0.1),
                   ("shoulder", 0.05)), 0.0, 6),
    InjuryProfile(K.amputation, 0.04, "trauma_ward", 0.78, (16, 80, 35), 0.6,
                  (("thigh", 0.6), ("knee", 0.2), ("elbow", 0.1), ("shoulder", 0.1)), 0.1, 6),
    InjuryProfile(K.hip_arthroplasty, 0.19, "orthopaedics", 0.42, (45, 85, 70), 0.3,
                  (("hip", 1.0),), 0.0, 6),
    InjuryProfile(K.knee_arthroplasty, 0.11, "orthopaedics", 0.4, (45, 85, 69), 0.12,
                  (("knee", 1.0),), 0.0, 6),
    InjuryProfile(K.other_surgery, 0.07, "orthopaedics", 0.5, (16, 85, 55), 0.03,
                  (("hip", 0.3), ("elbow", 0.2), ("thigh", 0.2), ("knee", 0.2),
                   ("shoulder", 0.1)), 0.0, 6),
    InjuryProfile(K.other, 0.018, "trauma_ward", 0.5, (16, 85, 45), 0.03,
                  (("thigh", 0.4), ("hip", 0.3), ("elbow", 0.3)), 0.0, 6),
    # FOP: about 1 in 500 here (far above its population prevalence, as in a referral unit).
    InjuryProfile(K.fop, 0.002, "metabolic_bone_clinic", 0.5, (16, 35, 20), 1.0,
                  (("spine", 0.25), ("shoulder", 0.25), ("hip", 0.15), ("jaw", 0.1),
                   ("elbow", 0.15), ("thigh", 0.1)), 0.2, 6),
)  # fmt: skip
_CUMULATIVE = list(accumulate(p.share for p in PROFILES))
NEURO = (K.spinal_cord_injury, K.traumatic_brain_injury, K.acquired_brain_injury)
MIDLINE = ("spine", "pelvis", "jaw")
PROPHYLAXIS_RISK = 0.6  # relative HO risk with prophylaxis (indomethacin trial: 25% vs 65%)
BROOKER_WEIGHTS = {True: (0.15, 0.4, 0.7, 1.0), False: (0.3, 0.6, 0.85, 1.0)}  # neuro: grades 1-4
REFERENCE_REGION = {"hip": "contralateral femur", "thigh": "contralateral femur",
                    "knee": "contralateral tibia", "elbow": "contralateral humerus",
                    "shoulder": "contralateral humerus"}  # fmt: skip

FAMILY = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
          "Green", "Hall", "Wood", "Jackson", "Clarke", "Khan", "Murphy", "Nguyen", "Garcia",
          "Müller", "Kowalski", "O'Brien", "Okafor", "Lefèvre")  # fmt: skip
GIVEN = {
    "female": ("Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophia", "Grace", "Mia", "Poppy",
               "Ella", "Aisha", "Zoe", "Hannah", "Chloé", "Freya", "Maria"),
    "male": ("Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Muhammad", "Oscar",
             "Charlie", "Jacob", "Thomas", "Samuel", "Daniel", "Joseph", "José"),
    "other": ("Alex", "Sam", "Jordan", "Robin", "Charlie", "Morgan"),
}  # fmt: skip
GIVEN["unknown"] = GIVEN["other"]

ALP = ("alp", "U/L", "30", "130")
BONE_ALP = ("bone_alp", "ug/L", "5.5", "24.6")
CRP = ("crp", "mg/L", "0", "5")
CK = ("ck", "U/L", "25", "200")
D_DIMER = ("d_dimer", "mg/L FEU", "0", "0.5")

KIM_LINES = (5.0, 3.0, 2.0)  # Kim thresholds (model-spec section 5), as recorded
TOLERANCE_STEPS = (0.9, 1.1)  # a change of exactly the activity tolerance, 10%
NORMAL_UPTAKE = 1.2  # at or below: normal bone (model-spec section 3)
SNAP_CHANCE = 0.5  # a ratio near a line is recorded exactly on it this often
SNAP_NEAR = 0.06
REPEAT_CHANCE = 0.06  # a repeat delayed-phase acquisition on the same day
CONTRALATERAL_CHANCE = 0.35  # the unaffected hip measured at the first scan
# The bedside examination (v2): each joint's movements and normal arc in degrees.
NORMAL_ROM: dict[str, tuple[tuple[str, float], ...]] = {
    "hip": (("flexion", 110.0), ("abduction", 40.0), ("internal_rotation", 35.0)),
    "knee": (("flexion", 135.0),),
    "elbow": (("flexion", 140.0), ("pronation", 80.0), ("supination", 85.0)),
    "shoulder": (("flexion", 170.0), ("abduction", 160.0), ("external_rotation", 60.0)),
}
NORMAL_EXAM_CHANCE = 0.15  # a joint without HO examined once, all normal
DVT_QUERY_CHANCE = 0.25  # a leg ultrasound with a D-dimer sent as a DVT query

_ISO: dict[int, str] = {}


def _iso(day: int) -> str:
    text = _ISO.get(day)
    if text is None:
        text = _ISO[day] = date.fromordinal(day).isoformat()
    return text


def _num(value: float, places: int) -> str:
    return format_number(round(value, places))


@dataclass(slots=True)
class Lesion:
    """The hidden truth of one HO process at one site (all dates are ordinals)."""

    onset: int  # HO begins (ALP rises, vascularity increases)
    detect: int  # first day someone looks for it
    peak: int  # delayed-phase bone-scan uptake peaks
    mineral: int  # first radiographic calcification
    mature: int  # cortex well defined, trabeculae visible
    follow_end: int  # imaging follow-up stops after this day
    peak_ratio: float
    plateau: float
    decay: float  # per day
    brooker: int  # final grade, 1-4
    size_mm: float
    central: bool  # FOP pattern: calcifies centre-out, disorganised

    def activity(self, day: int) -> float:
        """0..1: how far the bone-scan uptake is above its plateau."""
        if day < self.onset:
            return 0.0
        if day < self.peak:
            return 0.55 + 0.45 * (day - self.onset) / (self.peak - self.onset)
        return math.exp(-self.decay * (day - self.peak))


@dataclass(slots=True)
class WatchedSite:
    """A (site, side) the clinic looks at; `lesion` is None when HO never forms there."""

    site: str
    side: str
    lesion: Lesion | None = None
    resection: int | None = None
    recurrence: Lesion | None = None
    graded: bool = False  # radiologist gives Brooker (hips only)
    della_valle: bool = False

    def lesion_at(self, day: int) -> Lesion | None:
        """The lesion present on `day` (a resection removes it; a recurrence may follow)."""
        lesion = self.lesion
        if self.resection is not None and day > self.resection:
            lesion = self.recurrence
        return lesion if lesion is not None and day >= lesion.onset else None


_ABSENT_US: Finding = ("absent", "none", "", "", "", "none", "", "", "", "")
_ABSENT_XR: Finding = ("absent", "none", "none", "none", "", "", "", "", "", "")


class _Cohort:
    """Generates patients one at a time from one random stream."""

    def __init__(self, seed: int, until: date, width: int, bedside: bool = True) -> None:
        self.bedside = bedside  # write examinations, range of motion and indications (v2)
        self.rng = random.Random(seed)
        # the reporting quirks' own stream (see the module docstring)
        self.quirks = random.Random(f"ho-tracker synth quirks {seed}")
        # examinations, range of motion and indications: a stream of their own too
        self.exams = random.Random(f"ho-tracker synth exams {seed}")
        self.until = until.toordinal()
        self.width = width
        self.accessions = 0

    # small random helpers (inlined maths is the hot path for 100k patients)
    def days(self, low: int, high: int) -> int:
        return low + int(self.rng.random() * (high - low + 1))

    def pick(self, weighted: Sequence[tuple[str, float]]) -> str:
        total = sum(w for _, w in weighted)
        x = self.rng.random() * total
        for value, weight in weighted:
            x -= weight
            if x < 0:
                return value
        return weighted[-1][0]

    def patient(self, number: int) -> tuple[list[Row], ...]:
        """Patient `number`'s rows for each file, in the order of csv_format.FORMATS."""
        rng, until = self.rng, self.until
        mrn = f"S{number:0{self.width}d}"
        profile = PROFILES[min(bisect(_CUMULATIVE, rng.random()), len(PROFILES) - 1)]
        injured = until - self.days(7, 5 * ONE_YEAR)
        age = rng.triangular(*profile.age)
        born = injured - int(age * 365.25)
        x = rng.random()
        sex = "male" if x < profile.male else "female" if x < 0.993 else "other"
        if rng.random() < 0.004:
            sex = "unknown"
        patients: list[Row] = [(mrn, _iso(born), sex, rng.choice(FAMILY),
                                rng.choice(GIVEN[sex]), profile.team)]  # fmt: skip
        story = _Story(self, mrn, profile, injured)
        story.injuries()
        risk = story.prophylaxis()
        story.lesions(profile.incidence * risk)
        story.screening()
        story.clinical_detection()
        story.resections()
        story.radiographs()
        story.bone_scans()
        story.courses()
        story.labs()
        exam_rows, rom_rows = story.examinations() if self.bedside else ([], [])
        return (patients, story.injury_rows, story.imaging_rows(), story.scan_rows,
                story.course_rows, story.procedure_rows, story.lab_rows,
                exam_rows, rom_rows)  # fmt: skip

    def accession(self) -> str:
        self.accessions += 1
        return f"A{self.accessions:08d}"


class _Story:
    """One patient's course from injury to `until`, recorded as interchange rows."""

    def __init__(self, cohort: _Cohort, mrn: str, profile: InjuryProfile, injured: int) -> None:
        self.c = cohort
        self.rng = cohort.rng
        self.quirks = cohort.quirks
        self.exams = cohort.exams
        self.until = cohort.until
        self.mrn = mrn
        self.profile = profile
        self.kind = profile.kind
        self.injured = injured
        self.neuro = profile.kind in NEURO
        self.sites: list[WatchedSite] = []
        # (day, modality) -> findings by (site, side): one study per modality a day
        self.studies: dict[tuple[int, str], dict[tuple[str, str], Finding]] = {}
        self.study_notes: dict[tuple[int, str], str] = {}
        self.indications: dict[tuple[int, str], str] = {}
        self.injury_rows: list[Row] = []
        self.scan_rows: list[Row] = []
        self.course_rows: list[Row] = []
        self.procedure_rows: list[Row] = []
        self.lab_rows: list[Row] = []
        self.course_keys: set[tuple[str, str, int]] = set()
        self.lab_keys: set[tuple[int, str]] = set()
        self.first_detect: int | None = None
        self.joint: WatchedSite | None = None  # the operated joint after arthroplasty
        self.cervical = False  # tetraplegia: HO may also form at elbows and shoulders

    # --- records -----------------------------------------------------------------

    def finding(
        self, day: int, modality: str, site: WatchedSite, found: Finding, indication: str = ""
    ) -> None:
        """Record one site's finding on the study of that modality that day (the first
        finding of a study gives its indication)."""
        if day > self.until:
            return
        self.indications.setdefault((day, modality), indication)
        study = self.studies.setdefault((day, modality), {})
        study.setdefault((site.site, site.side), found)

    def imaging_rows(self) -> list[Row]:
        """Findings as rows; accession numbers follow the order studies were done in."""
        mrn, rows = self.mrn, list[Row]()
        for day, modality in sorted(self.studies):
            findings = self.studies[(day, modality)]
            accession = "" if modality == "ultrasound" else self.c.accession()
            notes = self.study_notes.get((day, modality), "")
            indication = self.indications.get((day, modality), "") if self.c.bedside else ""
            for (site, side), found in findings.items():
                rows.append(
                    (mrn, _iso(day), modality, site, side, *found, accession, indication, notes)
                )
        return rows

    def course(
        self,
        agent: str,
        intent: str,
        start: int,
        weeks: float | None,
        dose: str,
        unit: str,
        site: WatchedSite | None = None,
        days: int | None = None,
    ) -> None:
        """Record a treatment course; one still running on `until` has no end date."""
        if start > self.until or (agent, intent, start) in self.course_keys:
            return
        self.course_keys.add((agent, intent, start))
        length = days if days is not None else round((weeks or 0) * 7)
        end = start + length
        if end > self.until and weeks is None:  # an open course must say how long it runs
            weeks = round(length / 7, 1)
        self.course_rows.append((
            self.mrn, agent, intent, _iso(start), "" if end > self.until else _iso(end),
            "" if weeks is None else format_number(weeks), dose, unit,
            site.site if site else "", site.side if site else "",
        ))  # fmt: skip

    def lab(self, day: int, test: tuple[str, str, str, str], value: float, places: int) -> None:
        if day > self.until or (day, test[0]) in self.lab_keys:
            return
        self.lab_keys.add((day, test[0]))
        analyte, unit, low, high = test
        self.lab_rows.append((self.mrn, _iso(day), analyte, _num(value, places), unit, low, high))

    # --- the story ------------------------------------------------------------------

    def injuries(self) -> None:
        rng, kind = self.rng, self.kind
        notes = ""
        if kind is K.spinal_cord_injury:
            level = rng.choice(("C4", "C5", "C6", "C7", "T4", "T6", "T8", "T10", "T12", "L1"))
            self.cervical = level.startswith("C")
            notes = f"{level} AIS {rng.choice('AAABBCD')}"
        elif kind is K.traumatic_brain_injury:
            notes = f"GCS {self.c.days(3, 12)} on admission"
        elif kind is K.burn:
            notes = f"{self.c.days(10, 70)}% TBSA"
        elif kind is K.fop:
            notes = "ACVR1 R206H"
        self.injury_rows.append((self.mrn, kind.value, _iso(self.injured), notes))
        # Polytrauma: a second diagnosis on the same day.
        second = None
        if kind is K.spinal_cord_injury and rng.random() < 0.1:
            second = K.traumatic_brain_injury
        elif kind in (K.musculoskeletal_trauma, K.burn) and rng.random() < 0.06:
            second = K.musculoskeletal_trauma if kind is K.burn else K.traumatic_brain_injury
        if second is not None:
            self.injury_rows.append((self.mrn, second.value, _iso(self.injured), ""))
            self.neuro = self.neuro or second in NEURO

    def prophylaxis(self) -> float:
        """Start prophylaxis for some patients at risk; return the relative HO risk."""
        rng, kind, day = self.rng, self.kind, self.injured
        if self.neuro and rng.random() < 0.3:
            start = day + self.c.days(7, 35)  # 21 +/- 14 days after SCI
            if rng.random() < 0.8:
                self.course("indomethacin", "prophylaxis", start, 3, "75", "mg/day")
            else:
                self.course("etidronate", "prophylaxis", start, 26, "20", "mg/kg/day")
            return PROPHYLAXIS_RISK
        if kind is K.hip_arthroplasty and rng.random() < 0.4:
            self.joint = self.pick_side("hip")
            x = rng.random()
            if x < 0.7:
                self.course("indomethacin", "prophylaxis", day + 1, 6, "75", "mg/day")
            elif x < 0.9:
                self.course("other_nsaid", "prophylaxis", day + 1, 2, "400", "mg/day")
            else:  # single 7 Gy within 4 h before surgery
                self.course("radiotherapy", "prophylaxis", day, None, "7", "Gy",
                            site=self.joint, days=0)  # fmt: skip
            return PROPHYLAXIS_RISK
        if kind is K.musculoskeletal_trauma and rng.random() < 0.15:
            self.course("indomethacin", "prophylaxis", day + self.c.days(1, 5), 6, "75", "mg/day")
            return PROPHYLAXIS_RISK
        return 1.0

    def pick_side(self, site: str) -> WatchedSite:
        """The watched site at `site` on a random side (midline sites have one side)."""
        side = "midline" if site in MIDLINE else self.rng.choice(("left", "right"))
        return self.watch(site, side)

    def watch(self, site: str, side: str) -> WatchedSite:
        for watched in self.sites:
            if watched.site == site and watched.side == side:
                return watched
        watched = WatchedSite(site, side, graded=site == "hip")
        watched.della_valle = watched.graded and self.rng.random() < 0.5
        self.sites.append(watched)
        return watched

    def new_lesion(self, onset: int, *, recurrence: bool = False) -> Lesion:
        rng, days = self.rng, self.c.days
        fop = self.kind is K.fop
        peak = onset + days(14, 35)
        mineral = onset + days(21, 49)
        months = min(48.0, max(3.0, rng.lognormvariate(math.log(9 if not recurrence else 7), 0.5)))
        mature = mineral + int(months * 30.4)
        peak_ratio = rng.triangular(3.0, 8.0, 4.5) if not recurrence else rng.uniform(2.6, 5.0)
        plateau = rng.uniform(1.3, 2.5)
        # Uptake is at 1/6 to 1/25 of its excess over plateau by radiographic maturity.
        decay = math.log(rng.uniform(6, 25)) / (mature - peak)
        weights = BROOKER_WEIGHTS[self.neuro] if not recurrence else (0.5, 0.9, 1.0, 1.0)
        brooker = 1 + bisect(weights, rng.random())
        size = rng.uniform(20, 90) if not recurrence else rng.uniform(10, 40)
        return Lesion(onset, onset + days(5, 30), peak, mineral, mature, mature + days(60, 240),
                      peak_ratio, plateau, decay, min(brooker, 4), size, fop)  # fmt: skip

    def lesions(self, risk: float) -> None:
        """Decide where HO forms and when (hidden truth); also the sites watched anyway."""
        rng, profile, kind = self.rng, self.profile, self.kind
        if kind in (K.hip_arthroplasty, K.knee_arthroplasty) and self.joint is None:
            self.joint = self.pick_side(profile.joints[0][0])
        if self.neuro:  # both hips are screened (model-spec section 9)
            self.watch("hip", "left")
            self.watch("hip", "right")
        if rng.random() >= risk:
            return
        # Onset 2 weeks to 10 months after injury, typically 7-9 weeks.
        onset = self.injured + int(min(300.0, max(14.0, rng.lognormvariate(math.log(55), 0.6))))
        if kind is K.fop:  # flare-ups at any time after diagnosis
            onset = self.injured + self.c.days(0, max(0, self.until - self.injured))
        if self.joint is not None:
            self.joint.lesion = self.new_lesion(onset)
            return
        joints = profile.joints
        if kind is K.spinal_cord_injury and not self.cervical:
            joints = _PARAPLEGIC_JOINTS  # below the level of the lesion
        x = rng.random()
        count = 1 if x < 0.6 or not (self.neuro or kind is K.fop) else 2 if x < 0.9 else 3
        chosen: list[str] = []
        for _ in range(count * 3):
            if len(chosen) == count:
                break
            joint = self.pick(joints)
            if joint not in chosen:
                chosen.append(joint)
        for n, joint in enumerate(chosen):
            start = onset if n == 0 else onset + self.c.days(0, 90)
            if kind is K.fop and n > 0:
                start = onset + self.c.days(0, 2 * ONE_YEAR)
            sides = [self.pick_side(joint)]
            if joint not in MIDLINE and rng.random() < profile.bilateral:
                other = "left" if sides[0].side == "right" else "right"
                sides.append(self.watch(joint, other))
            for m, site in enumerate(sides):
                site.lesion = self.new_lesion(start + (0 if m == 0 else self.c.days(0, 30)))

    def pick(self, weighted: Sequence[tuple[str, float]]) -> str:
        return self.c.pick(weighted)

    def ultrasound_finding(self, lesion: Lesion | None, day: int) -> Finding:
        if lesion is None:
            return _ABSENT_US
        size = _num(lesion.size_mm * min(1.0, 0.4 + (day - lesion.onset) / 200), 0)
        soft = "mass" if day - lesion.onset > 10 else "swelling"
        vascular = "increased" if day < lesion.mineral + 60 else "none"
        calcified = "present" if day >= lesion.mineral else "none"
        return ("present", soft, calcified, "", "", vascular, "", "", "", size)

    def radiograph_finding(self, site: WatchedSite, lesion: Lesion | None, day: int) -> Finding:
        if lesion is None:
            return _ABSENT_XR
        if day < lesion.mineral:  # soft-tissue swelling only (early)
            return ("indeterminate", "swelling", "none", "none", "", "", "", "", "", "")
        if day >= lesion.mature:
            grade, size = lesion.brooker, lesion.size_mm
            soft, calcified, cortex, trabeculae = "none", "", "well_defined", "yes"
        else:  # grade and size grow as the lesion mineralises (zonal: rim first)
            progress = (day - lesion.mineral) / (lesion.mature - lesion.mineral)
            grade = min(1 + int(progress * lesion.brooker), lesion.brooker)
            size = lesion.size_mm * (0.6 + 0.4 * progress)
            soft, trabeculae = "mass", "no"
            if lesion.central:
                calcified = "central" if progress < 0.5 else "disorganised"
            else:
                calcified = "peripheral" if progress < 0.5 else "zonal"
            cortex = "none" if progress < 0.35 else "partial"
        brooker = str(grade) if site.graded else ""
        della_valle = "abcc"[grade - 1] if site.della_valle else ""
        return ("present", soft, calcified, cortex, trabeculae, "", "", brooker, della_valle,
                _num(size, 0))  # fmt: skip

    def screening(self) -> None:
        """Hip ultrasound every 21 days to day 168 until HO is seen (model-spec section 9)."""
        if not self.neuro or self.rng.random() >= 0.85:
            return
        hips = [s for s in self.sites if s.site == "hip" and s.side in ("left", "right")]
        # HO found clinically elsewhere also ends screening.
        seen = min((s.lesion.detect for s in self.sites if s.lesion is not None), default=None)
        for visit in range(21, 169, 21):
            day = self.injured + visit + self.c.days(-3, 3)
            if day > self.until or (seen is not None and day > seen):
                return
            if self.rng.random() >= 0.9:
                continue  # missed appointment
            positive = False
            for hip in hips:
                lesion = hip.lesion_at(day)
                # Ultrasound misses about 1 in 9 (sensitivity 88.9%).
                if lesion is not None and (day < lesion.onset + 3 or self.rng.random() > 0.889):
                    lesion = None
                found = self.ultrasound_finding(lesion, day)
                self.finding(day, "ultrasound", hip, found, "screening")
                if lesion is not None:
                    positive = True
                    lesion.detect = min(lesion.detect, day)
            if positive:
                return

    def clinical_detection(self) -> None:
        """Swelling or lost range of motion: a diagnostic ultrasound, often a D-dimer."""
        for site in self.sites:
            lesion = site.lesion
            if lesion is None:
                continue
            if self.first_detect is None or lesion.detect < self.first_detect:
                self.first_detect = lesion.detect
            if lesion.detect > self.until:
                continue
            day = lesion.detect
            if (day, "ultrasound") in self.studies:
                continue  # found on a screening ultrasound
            if site.site in ("hip", "knee", "thigh") and self.rng.random() < 0.6:
                dimer = self.rng.random() < 0.6  # HO mimics deep vein thrombosis
                dvt = dimer and self.exams.random() < DVT_QUERY_CHANCE
                indication = "dvt_query" if dvt else "symptoms"
                self.finding(day, "ultrasound", site, self.ultrasound_finding(lesion, day),
                             indication)  # fmt: skip
                if dimer:
                    self.lab(day, D_DIMER, self.rng.uniform(0.6, 3.0), 2)

    def resections(self) -> None:
        """Some mature lesions are excised after the classic wait; a minority recur."""
        if self.kind is K.fop:
            return
        rng, days = self.rng, self.c.days
        taken: list[int] = []
        for site in self.sites:
            lesion = site.lesion
            if lesion is None or rng.random() >= (0.35 if site.site == "hip" else 0.2):
                continue
            wait = int(self.profile.wait_months * 30.4 * rng.uniform(0.7, 1.4))
            day = max(lesion.mature + days(14, 240), self.injured + wait)
            while any(abs(day - other) < 14 for other in taken):
                day += 28
            if day > self.until:
                continue
            taken.append(day)
            site.resection = day
            self.procedure_rows.append((self.mrn, "resection", _iso(day), site.site, site.side,
                                        rng.choice(("", "", "open excision"))))  # fmt: skip
            if rng.random() < 0.5:  # planning CT
                ct = day - days(7, 40)
                found = self.radiograph_finding(site, lesion, ct)
                self.finding(ct, "ct", site, found, "pre_operative")
                self.study_notes[(ct, "ct")] = "pre-operative planning"
            x = rng.random()
            radiotherapy = x < 0.65
            if radiotherapy:  # single 7-8 Gy within 72 h
                dose = "8" if rng.random() < 0.2 else "7"
                self.course("radiotherapy", "post_resection", day + days(0, 1), None, dose, "Gy",
                            site=site, days=0)  # fmt: skip
            elif x < 0.9:
                self.course("indomethacin", "post_resection", day + 1, 6, "75", "mg/day")
            if rng.random() < (0.1 if radiotherapy else 0.25):
                site.recurrence = self.new_lesion(day + days(14, 60), recurrence=True)
                site.recurrence.detect = site.recurrence.mineral
            # Recurrence radiographs at about 6 weeks, 3, 6 and 12 months (model-spec section 9).
            for after in (42, 91, 182, 365):
                if rng.random() < 0.85:
                    film = day + after + days(-7, 7)
                    found = self.radiograph_finding(site, site.lesion_at(film), film)
                    self.finding(film, "radiograph", site, found, "follow_up")
        for site in self.sites:
            lesion = site.lesion
            if (site.resection is None and lesion is not None and lesion.central is False
                    and site.site in ("elbow", "knee") and rng.random() < 0.05):  # fmt: skip
                day = lesion.mineral + days(0, 60)
                if day < lesion.mature and day <= self.until:
                    self.procedure_rows.append((self.mrn, "manipulation", _iso(day), site.site,
                                                site.side, "under anaesthesia"))  # fmt: skip

    def lesions_in_view(self, day: int) -> list[tuple[WatchedSite, Lesion]]:
        """Lesions found and still followed up on `day`."""
        seen = []
        for site in self.sites:
            lesion = site.lesion_at(day)
            if lesion is not None and lesion.detect <= day <= lesion.follow_end:
                seen.append((site, lesion))
        return seen

    def follow_up_until(self) -> int:
        ends = [lesion.follow_end for s in self.sites for lesion in (s.lesion, s.recurrence)
                if lesion is not None]  # fmt: skip
        return min(self.until, max(ends, default=0))

    def radiographs(self) -> None:
        """Routine post-arthroplasty films; HO films every 6-12 weeks until mature."""
        days = self.c.days
        if self.joint is not None and self.kind is not K.fop:
            for after, chance in ((42, 0.8), (ONE_YEAR, 0.5)):
                film = self.injured + after + days(-7, 7)
                if self.rng.random() < chance:
                    found = self.radiograph_finding(self.joint, self.joint.lesion_at(film), film)
                    self.finding(film, "radiograph", self.joint, found, "post_operative")
        if self.first_detect is None:
            return
        day, stop, films = self.first_detect + days(3, 28), self.follow_up_until(), 0
        while day <= stop and films < 16:
            seen = self.lesions_in_view(day)
            for site, lesion in seen:
                found = self.radiograph_finding(site, lesion, day)
                self.finding(day, "radiograph", site, found, "follow_up")
            films += bool(seen)
            active = any(day < lesion.mature for _, lesion in seen) or not seen
            day += days(35, 90) if active else days(120, 300)

    def bone_scans(self) -> None:
        """Three-phase scans every 2-4 months, delayed-phase ratio decaying to a plateau."""
        rng, days = self.rng, self.c.days
        if self.first_detect is None or rng.random() >= (0.8 if self.neuro else 0.5):
            return
        as_counts = rng.random() < 0.15  # this department reports ROI counts
        with_region = as_counts or rng.random() < 0.4
        day, stop, scans = self.first_detect + days(2, 14), self.follow_up_until(), 0
        last: dict[tuple[str, str], float] = {}  # each site's last delayed ratio written
        while day <= stop and scans < 10:
            seen = [(s, le) for s, le in self.lesions_in_view(day) if day >= le.onset + 7]
            phases: tuple[str, ...] = ("delayed",)
            if rng.random() < (0.7 if scans < 2 else 0.15):
                phases = ("flow", "blood_pool", "delayed")
            bilateral = {s.site for s, _ in seen if s.side == "left"} & {
                s.site for s, _ in seen if s.side == "right"
            }
            for site, lesion in seen:
                active = lesion.activity(day)
                ratio = lesion.plateau + (lesion.peak_ratio - lesion.plateau) * active
                ratio *= math.exp(rng.gauss(0.0, 0.04))
                uptake = "increased" if ratio >= 1.6 else "normal"
                found: Finding = ("present", "", "", "", "", "", uptake, "", "", "")
                self.finding(day, "bone_scan", site, found, "follow_up")
                region = ""
                if with_region:
                    region = REFERENCE_REGION.get(site.site, "lumbar spine")
                    if site.site in bilateral:
                        region = "lumbar spine"
                for phase in phases:
                    value = ratio
                    if phase != "delayed":  # flow and blood pool settle faster
                        value = 1.0 + (ratio - 1.0) * (0.35 if phase == "flow" else 0.5) * active
                        value = max(1.02, value * math.exp(rng.gauss(0.0, 0.05)))
                    if as_counts:
                        reference = days(600, 2500)
                        lesion_counts = round(value * reference)
                        row = (self.mrn, _iso(day), site.site, site.side, phase, "",
                               str(lesion_counts), str(reference), region)  # fmt: skip
                    else:
                        if phase == "delayed":
                            value = self.recorded_ratio(value, last.get((site.site, site.side)))
                        row = (self.mrn, _iso(day), site.site, site.side, phase,
                               _num(value, 2), "", "", region)  # fmt: skip
                    self.scan_rows.append(row)
                    if phase == "delayed":
                        last[(site.site, site.side)] = round(value, 2)
                        self.repeat_acquisition(day, site, value, as_counts, region)
            if seen and scans == 0:
                self.contralateral_hip(day, [s for s, _ in seen], as_counts, with_region)
            scans += bool(seen)
            day += days(60, 120)

    def recorded_ratio(self, value: float, previous: float | None) -> float:
        """A delayed-phase ratio as written (2 decimals): now and then exactly on a Kim
        threshold, or exactly one tolerance step (10%) from the site's previous ratio,
        where a rule read as < instead of <= would part from the spec."""
        quirks = self.quirks
        if quirks.random() >= SNAP_CHANCE:
            return value
        for line in KIM_LINES:
            if abs(value - line) <= SNAP_NEAR:
                return line
        if previous is not None:
            for step in TOLERANCE_STEPS:
                target = round(previous * step, 2)
                exact = abs(target - previous * step) < 1e-9
                if exact and abs(value - target) <= SNAP_NEAR:
                    return target
        return value

    def repeat_acquisition(
        self, day: int, site: WatchedSite, value: float, as_counts: bool, region: str
    ) -> None:
        """Now and then a second delayed-phase reading the same day (a repeat
        acquisition, a second reader): a slightly different ratio."""
        quirks = self.quirks
        if quirks.random() >= REPEAT_CHANCE:
            return
        again = round(value * math.exp(quirks.gauss(0.0, 0.03)), 2)
        if again == round(value, 2):
            again = round(again + 0.01, 2)
        self.scan_rows.append(self.measured(day, site, again, as_counts, region))

    def contralateral_hip(
        self, day: int, seen: list[WatchedSite], as_counts: bool, with_region: bool
    ) -> None:
        """At the first scan, the unaffected hip is sometimes measured for comparison:
        a normal ratio (1.2 or below), which shows no HO (model-spec section 3)."""
        quirks = self.quirks
        hips = {s.side for s in seen if s.site == "hip"}
        if len(hips) != 1 or quirks.random() >= CONTRALATERAL_CHANCE:
            return
        others = [s for s in self.sites if s.site == "hip" and s.side not in hips]
        other = others[0] if others else None
        if other is None or other.lesion_at(day) is not None:
            return
        value = NORMAL_UPTAKE if quirks.random() < 0.2 else round(quirks.uniform(1.0, 1.19), 2)
        region = "lumbar spine" if with_region else ""
        self.scan_rows.append(self.measured(day, other, value, as_counts, region))

    def measured(
        self, day: int, site: WatchedSite, value: float, as_counts: bool, region: str
    ) -> Row:
        """A delayed-phase row for a quirk (drawn from the quirks' stream)."""
        if as_counts:
            reference = 100 * (6 + int(self.quirks.random() * 20))
            return (self.mrn, _iso(day), site.site, site.side, "delayed", "",
                    str(round(value * reference)), str(reference), region)  # fmt: skip
        return (self.mrn, _iso(day), site.site, site.side, "delayed", _num(value, 2), "", "",
                region)  # fmt: skip

    def courses(self) -> None:
        """Etidronate, NSAIDs, physiotherapy and flare steroids once HO is diagnosed."""
        if self.first_detect is None or self.first_detect > self.until:
            return
        rng, days, start = self.rng, self.c.days, self.first_detect
        first = next(s for s in self.sites if s.lesion is not None and s.lesion.detect == start)
        if self.kind is K.fop:  # flare-up: short high-dose corticosteroid
            self.course("other", "treatment", start + days(0, 2), None, "2", "mg/kg/day", days=3)
            return
        if rng.random() < (0.45 if self.neuro else 0.2):
            begin = start + days(1, 21)
            self.course("etidronate", "treatment", begin, 12, "20", "mg/kg/day")
            if rng.random() < 0.3:  # step down to 10 mg/kg/day
                self.course("etidronate", "treatment", begin + 85, 12, "10", "mg/kg/day")
        elif rng.random() < 0.15:
            self.course("other_nsaid", "treatment", start + days(1, 14), 6, "1000", "mg/day")
        if rng.random() < 0.5:
            weeks = rng.choice((6, 8, 12))
            site = first if rng.random() < 0.7 else None
            self.course("physiotherapy", "treatment", start + days(0, 14), weeks, "", "", site)

    def labs(self) -> None:
        """ALP rises with active HO and normalises; CRP, CK, bone ALP now and then."""
        rng, days = self.rng, self.c.days
        baseline = rng.uniform(45, 105)
        lesions = [le for s in self.sites for le in (s.lesion, s.recurrence) if le is not None]
        if self.first_detect is None:
            if self.neuro or rng.random() < 0.2:
                for after in (30, 90):
                    if rng.random() < 0.5:
                        alp = min(128.0, baseline + rng.gauss(0, 8))
                        self.lab(self.injured + after + days(-7, 7), ALP, alp, 0)
            return
        amplitude = rng.uniform(80, 300)
        day, stop, tests = self.first_detect - days(0, 5), self.follow_up_until(), 0
        while day <= stop and tests < 14:
            active = max(lesion.activity(day) for lesion in lesions)
            self.lab(day, ALP, max(20.0, baseline + amplitude * active + rng.gauss(0, 8)), 0)
            if rng.random() < 0.4:
                self.lab(day, CRP, max(0.1, rng.gauss(0.9, 0.5) + 12 * active), 1)
            if rng.random() < 0.2:
                self.lab(day, BONE_ALP, max(2.0, baseline / 6 + amplitude / 5 * active), 1)
            if rng.random() < 0.15:
                self.lab(day, CK, max(20.0, rng.uniform(50, 150) + 400 * active), 0)
            tests += 1
            day += days(14, 42) if active > 0.15 else days(90, 180)

    def examinations(self) -> tuple[list[Row], list[Row]]:
        """Bedside examinations and range of motion (v2), from the exams' own stream.

        At a site that develops HO, swelling and warmth with pain 3-7 come in the days
        before and around the first imaging evidence; the joint's range falls as the
        lesion matures and comes back after resection. Joints without HO are now and
        then examined once: no signs, pain 0-2, a normal range with small noise.
        """
        er, injured, until = self.exams, self.injured, self.until
        visits: set[tuple[int, int]] = set()  # (day, index of the site)
        sites = list(self.sites)
        for n, site in enumerate(sites):
            lesion = site.lesion
            if lesion is None:
                if er.random() < NORMAL_EXAM_CHANCE:
                    visits.add((injured + 14 + int(er.random() * 107), n))
                continue
            stop = min(lesion.follow_end, until)
            if site.resection is not None:
                stop = min(stop, site.resection - 1)
                visits.add((site.resection - 1 - int(er.random() * 14), n))  # pre-operative
                for after in (42, 182):
                    visits.add((site.resection + after + int(er.random() * 15) - 7, n))
            visits.add((lesion.onset + int(er.random() * 4), n))
            visits.add((lesion.detect, n))
            day = lesion.mineral + int(er.random() * 15)
            for _ in range(4):
                if day > stop:
                    break
                visits.add((day, n))
                day += 60 + int(er.random() * 61)
            if site.recurrence is not None:
                visits.add((site.recurrence.onset + int(er.random() * 4), n))
                visits.add((site.recurrence.mineral + int(er.random() * 15), n))
        if not sites and er.random() < NORMAL_EXAM_CHANCE / 3:
            joint = self.profile.joints[0][0]
            side = "midline" if joint in MIDLINE else ("left", "right")[int(er.random() * 2)]
            sites.append(WatchedSite(joint, side))
            visits.add((injured + 14 + int(er.random() * 107), 0))
        exam_rows: list[Row] = []
        rom_rows: list[Row] = []
        for day, n in sorted(visits):
            if day < injured or day > until:
                continue
            site = sites[n]
            lesion = site.lesion_at(day)
            if lesion is not None and day <= lesion.mineral + 30:  # inflammatory phase
                swelling = "yes" if er.random() < 0.9 else "no"
                warmth = "yes" if er.random() < 0.75 or swelling == "no" else "no"
                erythema = "yes" if er.random() < 0.3 else "no"
                pain = 3 + int(er.random() * 5)
            else:
                swelling = warmth = erythema = "no"
                pain = int(er.random() * (5 if lesion is not None else 3))
            exam_rows.append((self.mrn, _iso(day), site.site, site.side, swelling, warmth,
                              erythema, str(pain), ""))  # fmt: skip
            retained = self.rom_retained(site, day)
            for movement, normal in NORMAL_ROM.get(site.site, ()):
                degrees = min(200.0, max(0.0, normal * retained + er.gauss(0.0, 2.0)))
                rom_rows.append((self.mrn, _iso(day), site.site, site.side, movement,
                                 _num(degrees, 0)))  # fmt: skip
        return exam_rows, rom_rows

    @staticmethod
    def rom_retained(site: WatchedSite, day: int) -> float:
        """The share of the normal arc left on `day`: it falls from onset to maturity
        (more for a higher grade) and mostly comes back after resection."""
        lesion = site.lesion
        if lesion is None:
            return 1.0

        def grown(le: Lesion) -> float:
            return min(1.0, max(0.0, (day - le.onset) / max(1, le.mature - le.onset)))

        full = 0.15 + 0.12 * lesion.brooker  # Brooker 1: -27%, Brooker 4: -63%
        if site.resection is not None and day > site.resection:
            loss = 0.25 * full
            if site.recurrence is not None:
                loss += 0.35 * full * grown(site.recurrence)
            return 1.0 - loss
        return 1.0 - full * grown(lesion)


def write_cohort(
    out_dir: Path,
    *,
    patients: int,
    seed: int,
    until: date = date(2026, 10, 31),
    progress: Callable[[int], None] | None = None,
    bedside: bool = True,
) -> dict[str, int]:
    """Write a synthetic cohort of `patients` as the interchange CSV files.

    Returns rows written per file name. The same arguments always give
    byte-identical files; nothing is dated after `until`. `progress(n)` is told
    every time n more patients are done. `bedside=False` leaves out the v2 bedside
    records (exams.csv, rom.csv, imaging indications), as the demo's v1 cohort has none.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cohort = _Cohort(seed, until, max(6, len(str(patients))), bedside)
    counts = {file.name: 0 for file in fmt.FORMATS}
    handles: list[TextIO] = []
    try:
        writers = []
        for file in fmt.FORMATS:
            handle = (out_dir / file.name).open("w", encoding="utf-8", newline="")
            handles.append(handle)
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(file.column_names)
            writers.append(writer)
        orders = [row_order(file) for file in fmt.FORMATS]
        batches: list[list[Row]] = [[] for _ in fmt.FORMATS]
        done = 0
        for number in range(1, patients + 1):
            for batch, rows, order in zip(batches, cohort.patient(number), orders, strict=True):
                if len(rows) > 1:  # patients come in MRN order: sorting each sorts the file
                    rows.sort(key=order)
                batch.extend(rows)
            if number % BATCH == 0 or number == patients:
                for file, writer, batch in zip(fmt.FORMATS, writers, batches, strict=True):
                    writer.writerows(batch)
                    counts[file.name] += len(batch)
                    batch.clear()
                if progress is not None:
                    progress(number - done)
                done = number
    finally:
        for opened in handles:
            opened.close()
    return counts
