"""Synthetic cohorts and the demo: valid interchange CSV, reproducible, clinically plausible."""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tracker import vocab
from tracker.interchange import csv_format as fmt
from tracker.interchange.demo import build_demo
from tracker.interchange.synth import row_order, write_cohort
from tracker.interchange.validate import check_columns, check_duplicates, check_rules, read_csv

REPO = Path(__file__).resolve().parents[2]
UNTIL = dt.date(2026, 10, 31)

# Model-spec section 2, copied by hand so the test does not trust csv_format.py.
SPEC_HEADERS = {
    "patients.csv": "mrn,birth_date,sex,family_name,given_name,team",
    "injuries.csv": "mrn,kind,date,notes",
    "imaging.csv": "mrn,date,modality,site,side,ho,soft_tissue,calcification,cortex,"
    "trabeculae,vascularity,uptake,brooker,della_valle,size_mm,accession,indication,notes",
    "bone_scans.csv": "mrn,date,site,side,phase,ratio,lesion_counts,reference_counts,"
    "reference_region",
    "treatments.csv": "mrn,agent,intent,start_date,end_date,planned_weeks,dose,dose_unit,site,side",
    "procedures.csv": "mrn,kind,date,site,side,notes",
    "labs.csv": "mrn,date,analyte,value,unit,ref_low,ref_high",
    "exams.csv": "mrn,date,site,side,swelling,warmth,erythema,pain,notes",
    "rom.csv": "mrn,date,site,side,movement,degrees",
}
# One row per natural key (bone scans: with the ratio, computed from the counts when
# only they are given, so that a same-day repeat with another ratio is another row).
NATURAL_KEYS = {
    "patients.csv": ("mrn",),
    "injuries.csv": ("mrn", "kind", "date"),
    "imaging.csv": ("mrn", "date", "modality", "accession", "site", "side"),
    "bone_scans.csv": ("mrn", "date", "site", "side", "phase", "ratio"),
    "treatments.csv": ("mrn", "agent", "intent", "start_date"),
    "procedures.csv": ("mrn", "kind", "date", "site", "side"),
    "labs.csv": ("mrn", "date", "analyte"),
    "exams.csv": ("mrn", "date", "site", "side"),
    "rom.csv": ("mrn", "date", "site", "side", "movement"),
}
ENUMS = {
    ("patients.csv", "sex"): vocab.Sex,
    ("injuries.csv", "kind"): vocab.InjuryKind,
    ("imaging.csv", "modality"): vocab.Modality,
    ("imaging.csv", "site"): vocab.Site,
    ("imaging.csv", "side"): vocab.Side,
    ("imaging.csv", "ho"): vocab.HoPresence,
    ("imaging.csv", "soft_tissue"): vocab.SoftTissue,
    ("imaging.csv", "calcification"): vocab.Calcification,
    ("imaging.csv", "cortex"): vocab.Cortex,
    ("imaging.csv", "trabeculae"): vocab.Trabeculae,
    ("imaging.csv", "vascularity"): vocab.Vascularity,
    ("imaging.csv", "uptake"): vocab.Uptake,
    ("imaging.csv", "della_valle"): vocab.DellaValle,
    ("bone_scans.csv", "site"): vocab.Site,
    ("bone_scans.csv", "side"): vocab.Side,
    ("bone_scans.csv", "phase"): vocab.Phase,
    ("treatments.csv", "agent"): vocab.Agent,
    ("treatments.csv", "intent"): vocab.Intent,
    ("treatments.csv", "site"): vocab.Site,
    ("treatments.csv", "side"): vocab.Side,
    ("procedures.csv", "kind"): vocab.ProcedureKind,
    ("procedures.csv", "site"): vocab.Site,
    ("procedures.csv", "side"): vocab.Side,
    ("labs.csv", "analyte"): vocab.Analyte,
    ("imaging.csv", "indication"): vocab.Indication,
    ("exams.csv", "site"): vocab.Site,
    ("exams.csv", "side"): vocab.Side,
    ("exams.csv", "swelling"): vocab.Sign,
    ("exams.csv", "warmth"): vocab.Sign,
    ("exams.csv", "erythema"): vocab.Sign,
    ("rom.csv", "site"): vocab.Site,
    ("rom.csv", "side"): vocab.Side,
    ("rom.csv", "movement"): vocab.Movement,
}
REQUIRED_ENUMS = {"kind", "modality", "ho", "phase", "agent", "intent", "analyte"}
DATE_COLUMNS = ("birth_date", "date", "start_date", "end_date")


def read(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in SPEC_HEADERS}


def problems_in(folder: Path, until: dt.date) -> list[str]:
    """Every way the folder breaks model-spec sections 1-2 or the brief's extra rules."""
    found: list[str] = []
    tables = {name: read(folder, name) for name in SPEC_HEADERS}
    births = {row["mrn"]: row["birth_date"] for row in tables["patients.csv"]}
    for name, rows in tables.items():
        seen: set[tuple[str, ...]] = set()
        for line, row in enumerate(rows, start=2):
            where = f"{name}:{line}"
            for (file, column), enum in ENUMS.items():
                value = row[column] if file == name else ""
                if value and value not in vocab.values(enum):
                    found.append(f"{where} {column}={value!r}")
                if file == name and column in REQUIRED_ENUMS and not value:
                    found.append(f"{where} {column} is blank")
            if row["mrn"] not in births:
                found.append(f"{where} unknown mrn {row['mrn']}")
            if name == "patients.csv" and not row["birth_date"]:
                found.append(f"{where} no birth date")
            for column in DATE_COLUMNS:
                value = row.get(column) or ""
                if value and value > until.isoformat():
                    found.append(f"{where} {column} {value} after {until}")
                if value and column != "birth_date" and value <= births.get(row["mrn"], ""):
                    found.append(f"{where} {column} {value} not after birth")
            key = tuple(row[c] for c in NATURAL_KEYS[name] if c != "ratio")
            if name == "bone_scans.csv":
                key = (*key, str(round(ratio_of(row), 6)))
            if key in seen:
                found.append(f"{where} duplicate key {key}")
            seen.add(key)
    for line, row in enumerate(tables["bone_scans.csv"], start=2):
        numbers = [float(row[c]) for c in ("ratio", "lesion_counts", "reference_counts") if row[c]]
        if not (row["ratio"] or (row["lesion_counts"] and row["reference_counts"])):
            found.append(f"bone_scans.csv:{line} neither ratio nor counts")
        if any(n <= 0 for n in numbers):
            found.append(f"bone_scans.csv:{line} ratio or counts not > 0")
    studies: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for line, row in enumerate(tables["imaging.csv"], start=2):
        if row["uptake"] and row["modality"] not in vocab.UPTAKE_MODALITIES:
            found.append(f"imaging.csv:{line} uptake on {row['modality']}")
        if row["brooker"] and not 0 <= int(row["brooker"]) <= 4:
            found.append(f"imaging.csv:{line} brooker {row['brooker']}")
        if row["size_mm"] and float(row["size_mm"]) <= 0:
            found.append(f"imaging.csv:{line} size_mm {row['size_mm']}")
        if row["accession"]:
            studies[row["accession"]].add((row["mrn"], row["date"], row["modality"]))
        elif row["modality"] != "ultrasound":
            found.append(f"imaging.csv:{line} {row['modality']} study without accession")
    found += [f"accession {a} names {len(s)} studies" for a, s in studies.items() if len(s) > 1]
    for line, row in enumerate(tables["treatments.csv"], start=2):
        if row["end_date"] and row["end_date"] < row["start_date"]:
            found.append(f"treatments.csv:{line} ends before it starts")
        if bool(row["site"]) != bool(row["side"]):
            found.append(f"treatments.csv:{line} site without side")
        if not row["end_date"] and not row["planned_weeks"] and row["start_date"] < "2026":
            found.append(f"treatments.csv:{line} open-ended course")
    for line, row in enumerate(tables["labs.csv"], start=2):
        if float(row["value"]) <= 0 or float(row["ref_low"]) > float(row["ref_high"]):
            found.append(f"labs.csv:{line} bad value or reference range")
    return found


def validator_problems(folder: Path, until: dt.date) -> list[str]:
    """What the importer's own column-wise validation says about the folder."""
    problems: list[str] = []
    for file in fmt.FORMATS:
        frame, read_problems = read_csv(folder / file.name, file)
        problems += [str(p) for p in read_problems]
        if frame is not None:
            check = check_columns(frame, file, until)
            check_rules(check)
            check_duplicates(check)
            problems += [str(p) for p in check.problem_list()]
    return problems


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    write_cohort(folder, patients=2000, seed=11, until=UNTIL)
    return folder


@pytest.fixture(scope="module")
def large_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("large")
    write_cohort(folder, patients=10_000, seed=5, until=UNTIL)
    return folder


def ratio_of(row: dict[str, str]) -> float:
    """A bone-scan row's ratio, given directly or as lesion over reference counts."""
    if row["ratio"]:
        return float(row["ratio"])
    return float(row["lesion_counts"]) / float(row["reference_counts"])


def patients_with_ho(folder: Path) -> set[str]:
    seen = ("present", "indeterminate")
    positive = {row["mrn"] for row in read(folder, "imaging.csv") if row["ho"] in seen}
    return positive | {row["mrn"] for row in read(folder, "bone_scans.csv")}


def test_same_seed_and_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    first = write_cohort(tmp_path / "a", patients=300, seed=3, until=UNTIL)
    second = write_cohort(tmp_path / "b", patients=300, seed=3, until=UNTIL)
    assert first == second
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_another_seed_gives_another_cohort(tmp_path: Path) -> None:
    write_cohort(tmp_path / "a", patients=300, seed=3, until=UNTIL)
    write_cohort(tmp_path / "b", patients=300, seed=4, until=UNTIL)
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert all(a[name] != b[name] for name in ("patients.csv", "injuries.csv", "imaging.csv"))


def test_row_counts_are_returned_and_progress_reports_every_patient(tmp_path: Path) -> None:
    reported: list[int] = []
    counts = write_cohort(tmp_path, patients=2500, seed=1, until=UNTIL, progress=reported.append)
    assert sum(reported) == 2500 and len(reported) >= 3
    assert set(counts) == set(SPEC_HEADERS)
    for name, count in counts.items():
        assert count == len(read(tmp_path, name))
    assert counts["patients.csv"] == 2500
    assert read(tmp_path, "patients.csv")[0]["mrn"] == "S000001"


def test_every_file_has_exactly_the_spec_header(cohort: Path) -> None:
    for name, header in SPEC_HEADERS.items():
        first_line = (cohort / name).read_bytes().split(b"\n", 1)[0]
        assert first_line.decode("utf-8") == header


def test_every_row_is_valid_by_the_spec(cohort: Path) -> None:
    assert problems_in(cohort, UNTIL) == []


def test_the_importer_accepts_every_row(cohort: Path) -> None:
    assert validator_problems(cohort, UNTIL) == []


def test_nothing_is_dated_after_until(tmp_path: Path) -> None:
    until = dt.date(2024, 3, 15)
    write_cohort(tmp_path, patients=500, seed=9, until=until)
    assert problems_in(tmp_path, until) == []
    dates = [row["date"] for row in read(tmp_path, "imaging.csv")]
    assert max(dates) <= "2024-03-15"


def test_rows_are_sorted_by_mrn_then_date_then_key(cohort: Path) -> None:
    for file in fmt.FORMATS:
        with (cohort / file.name).open(encoding="utf-8", newline="") as handle:
            rows = [tuple(row) for row in csv.reader(handle)][1:]
        assert rows == sorted(rows, key=row_order(file)), file.name


def test_every_patient_has_birth_sex_team_and_injury(cohort: Path) -> None:
    patients = read(cohort, "patients.csv")
    assert all(p["birth_date"] and p["sex"] and p["team"] and p["family_name"] for p in patients)
    injured = {row["mrn"] for row in read(cohort, "injuries.csv")}
    assert injured == {p["mrn"] for p in patients}
    births = {p["mrn"]: dt.date.fromisoformat(p["birth_date"]) for p in patients}
    for injury in read(cohort, "injuries.csv"):
        age = (dt.date.fromisoformat(injury["date"]) - births[injury["mrn"]]).days / 365.25
        assert 16 <= age <= 85.01


def test_ho_incidence_follows_the_injury_kind(cohort: Path) -> None:
    with_ho = patients_with_ho(cohort)
    kinds: dict[str, list[bool]] = defaultdict(list)
    for injury in read(cohort, "injuries.csv"):
        kinds[injury["kind"]].append(injury["mrn"] in with_ho)

    def share(kind: str) -> float:
        return sum(kinds[kind]) / len(kinds[kind])

    assert 0.1 <= share("spinal_cord_injury") <= 0.4
    assert 0.05 <= share("traumatic_brain_injury") <= 0.3
    assert 0.15 <= share("hip_arthroplasty") <= 0.45
    assert share("amputation") >= 0.4
    assert share("other_surgery") <= 0.1


def test_neurogenic_ho_is_mostly_at_the_hips(cohort: Path) -> None:
    neuro = {
        row["mrn"]
        for row in read(cohort, "injuries.csv")
        if row["kind"] in ("spinal_cord_injury", "traumatic_brain_injury")
    }
    sites = Counter(
        row["site"]
        for row in read(cohort, "imaging.csv")
        if row["mrn"] in neuro and row["ho"] == "present"
    )
    assert sites.most_common(1)[0][0] == "hip"


def test_delayed_phase_ratios_fall_towards_a_plateau(cohort: Path) -> None:
    series: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in read(cohort, "bone_scans.csv"):
        if row["phase"] == "delayed":
            series[(row["mrn"], row["site"], row["side"])].append(ratio_of(row))
    long = [values for values in series.values() if len(values) >= 4]
    assert len(long) > 20
    falling = sum(values[-1] < max(values) for values in long)
    assert falling / len(long) > 0.9
    assert min(min(v) for v in long) > 1.0
    assert max(max(v) for v in long) < 10


def delayed_days(folder: Path) -> dict[tuple[str, str, str, str], list[float]]:
    """Each (mrn, site, side, date)'s delayed-phase ratios."""
    days: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for row in read(folder, "bone_scans.csv"):
        if row["phase"] == "delayed":
            days[(row["mrn"], row["site"], row["side"], row["date"])].append(ratio_of(row))
    return days


def test_some_delayed_phase_scans_are_repeated_the_same_day(cohort: Path) -> None:
    repeats = [ratios for ratios in delayed_days(cohort).values() if len(ratios) > 1]
    assert 10 <= len(repeats) <= 0.15 * len(delayed_days(cohort))
    for ratios in repeats:
        assert len(set(ratios)) == len(ratios)  # another reading, not a copy
        assert max(ratios) / min(ratios) < 1.25  # of the same uptake


def test_some_ratios_are_recorded_exactly_on_a_threshold(cohort: Path) -> None:
    ratios = [r for values in delayed_days(cohort).values() for r in values]
    for line in (5.0, 3.0, 2.0, 1.2):
        assert ratios.count(line) >= 3, line
    series: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (mrn, site, side, _), values in sorted(delayed_days(cohort).items()):
        if len(values) == 1:
            series[(mrn, site, side)].append(values[0])
    steps = sum(
        any(abs(b - a * step) < 1e-9 for step in (0.9, 1.1))
        for values in series.values()
        for a, b in zip(values, values[1:], strict=False)
    )
    assert steps >= 3  # a change of exactly the 10% tolerance


def test_the_unaffected_hip_is_sometimes_measured_for_comparison(cohort: Path) -> None:
    hip_ho = {
        (row["mrn"], row["side"])
        for row in read(cohort, "imaging.csv")
        if row["site"] == "hip" and row["ho"] in ("present", "indeterminate")
    }
    normal = [
        (mrn, side, ratios)
        for (mrn, site, side, _), ratios in delayed_days(cohort).items()
        if site == "hip" and max(ratios) <= 1.2
    ]
    assert len(normal) >= 10
    for mrn, side, ratios in normal:
        other = "left" if side == "right" else "right"
        assert (mrn, other) in hip_ho  # measured beside a hip with HO
        assert all(1.0 <= r <= 1.2 for r in ratios)


def test_brooker_grade_never_falls_before_a_resection(cohort: Path) -> None:
    resected = {(r["mrn"], r["site"], r["side"]) for r in read(cohort, "procedures.csv")}
    grades: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row in read(cohort, "imaging.csv"):
        key = (row["mrn"], row["site"], row["side"])
        if row["brooker"] and key not in resected:
            grades[key].append(int(row["brooker"]))
    assert grades
    assert all(values == sorted(values) for values in grades.values())


def test_a_resected_site_is_mature_first_and_sometimes_recurs(large_cohort: Path) -> None:
    imaging = read(large_cohort, "imaging.csv")
    resections = [r for r in read(large_cohort, "procedures.csv") if r["kind"] == "resection"]
    assert len(resections) > 50
    by_site: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in imaging:
        by_site[(row["mrn"], row["site"], row["side"])].append(row)
    recurred = 0
    for resection in resections:
        site = by_site[(resection["mrn"], resection["site"], resection["side"])]
        before = [row for row in site if row["date"] < resection["date"]]
        after = [row for row in site if row["date"] > resection["date"]]
        assert any(row["cortex"] in ("partial", "well_defined") for row in before)
        recurred += any(row["ho"] == "present" for row in after)
    assert 0 < recurred < len(resections) * 0.4


def test_fop_occurs_in_a_large_cohort_and_is_never_resected(large_cohort: Path) -> None:
    fop = {r["mrn"] for r in read(large_cohort, "injuries.csv") if r["kind"] == "fop"}
    assert 5 <= len(fop) <= 50
    assert not fop & {r["mrn"] for r in read(large_cohort, "procedures.csv")}


def test_courses_include_prophylaxis_treatment_and_radiotherapy(large_cohort: Path) -> None:
    courses = read(large_cohort, "treatments.csv")
    kinds = Counter((c["agent"], c["intent"]) for c in courses)
    for wanted in [
        ("indomethacin", "prophylaxis"),
        ("etidronate", "treatment"),
        ("physiotherapy", "treatment"),
        ("radiotherapy", "post_resection"),
    ]:
        assert kinds[wanted] > 0, wanted
    ongoing = [c for c in courses if not c["end_date"]]
    assert ongoing and all(c["planned_weeks"] for c in ongoing)
    for course in courses:
        if course["agent"] == "radiotherapy":
            assert course["start_date"] == course["end_date"] and course["dose_unit"] == "Gy"


def test_demo_in_the_repository_equals_a_fresh_build(tmp_path: Path) -> None:
    counts = build_demo(tmp_path)
    assert snapshot(REPO / "data" / "demo") == snapshot(tmp_path)
    handwritten = {r["mrn"] for r in read(REPO / "data" / "demo_handwritten", "patients.csv")}
    assert counts["patients.csv"] == 40 + len(handwritten)


def test_demo_is_valid_and_holds_every_showcase_patient() -> None:
    demo = REPO / "data" / "demo"
    assert problems_in(demo, UNTIL) == []
    assert validator_problems(demo, UNTIL) == []
    mrns = {row["mrn"] for row in read(demo, "patients.csv")}
    showcase = {"H-NONE", "H-EARLY", "H-MINERAL", "H-MATURE", "H-READY", "H-RESECTED", "H-FOP"}
    assert showcase <= mrns


def test_ready_showcase_patient_has_a_plateau_of_delayed_ratios() -> None:
    rows = read(REPO / "data" / "demo", "bone_scans.csv")
    ratios = [
        round(ratio_of(r), 2) for r in rows if r["mrn"] == "H-READY" and r["phase"] == "delayed"
    ]
    assert ratios == [6.1, 3.9, 2.8, 2.6, 2.55]


def test_exams_and_range_of_motion_follow_the_course_of_ho(large_cohort: Path) -> None:
    """Signs come before or around the first imaging evidence of HO at a site, range
    of motion falls before a resection and comes back after it, all values in range."""
    exams = read(large_cohort, "exams.csv")
    rom = read(large_cohort, "rom.csv")
    assert exams and rom
    for row in exams:
        assert vocab.PAIN_MIN <= int(row["pain"]) <= vocab.PAIN_MAX
    for row in rom:
        assert vocab.DEGREES_MIN <= float(row["degrees"]) <= vocab.DEGREES_MAX
    first_ho: dict[tuple[str, str, str], str] = {}
    for row in read(large_cohort, "imaging.csv"):
        key = (row["mrn"], row["site"], row["side"])
        if row["ho"] == "present" and (key not in first_ho or row["date"] < first_ho[key]):
            first_ho[key] = row["date"]
    signs: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for row in exams:
        if "yes" in (row["swelling"], row["warmth"]):
            assert 3 <= int(row["pain"]) <= 7
            signs[(row["mrn"], row["site"], row["side"])].append(row["date"])
        else:
            assert int(row["pain"]) <= 4
    early = 0
    for key, first in first_ho.items():
        soon = (dt.date.fromisoformat(first) + dt.timedelta(days=14)).isoformat()
        early += any(day <= soon for day in signs[key])
    assert early > 0.9 * len(first_ho)
    # joints never showing HO nor signs of it: normal range (hip flexion about 110 degrees)
    touched = first_ho.keys() | signs.keys()
    normal = [float(r["degrees"]) for r in rom if r["site"] == "hip" and r["movement"] == "flexion"
              and (r["mrn"], r["site"], r["side"]) not in touched]  # fmt: skip
    assert normal and all(100 <= d <= 120 for d in normal)
    arcs: dict[tuple[str, str, str, str], list[tuple[str, float]]] = defaultdict(list)
    for row in rom:
        key = (row["mrn"], row["site"], row["side"], row["movement"])
        arcs[key].append((row["date"], float(row["degrees"])))
    resections = [r for r in read(large_cohort, "procedures.csv") if r["kind"] == "resection"]
    compared = 0
    for resection in resections:
        for (mrn, site, side, _), measured in arcs.items():
            if (mrn, site, side) != (resection["mrn"], resection["site"], resection["side"]):
                continue
            before = [d for day, d in measured if day < resection["date"]]
            after = [d for day, d in measured if day > resection["date"]]
            if before and after:
                compared += 1
                assert max(after) > min(before)
    assert compared > 20
