"""Report benchmark: how long a surgeon waits for a report (issue 5).

(a) patient report: the report's data (assessment, story, trend, reminders) and its
    HTML with the trend figure embedded, for a patient with five years of history
    (two hips and a knee: three-monthly three-phase bone scans, six-monthly
    radiographs, ultrasounds, ALP, courses, a resection and a recurrence);
(b) the same as PDF (WeasyPrint), for information;
(c) the cohort board (HTML with its small multiples) for the 47-patient demo.
Each is the median of --repeat runs after one warm-up run (imports and font caches
warm; the cold first run is printed too). Targets: (a) well under a second, (c) a
few seconds.

    python bench/report_bench.py             # 5 repeats
    python bench/report_bench.py --smoke     # CI: one run each, no PDF
    python bench/report_bench.py --out /tmp/look   # and keep the reports
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.reports.render import (  # noqa: E402
    html_to_pdf,
    render_board_html,
    render_patient_html,
)
from tracker.services.reports import (  # noqa: E402
    board_report,
    patient_report,
    write_board_report,
    write_patient_report,
)
from tracker.store import database  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
AS_OF = date(2026, 10, 31)
MRN = "B-5YEARS"
INJURED = AS_OF - timedelta(days=5 * 365)


def write(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    with (folder / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def five_year_patient(folder: Path) -> Path:
    """One patient followed for five years, in interchange CSV v1."""
    folder.mkdir(parents=True, exist_ok=True)
    write(folder, "patients.csv", [{"mrn": MRN, "birth_date": "1970-03-01", "sex": "male",
          "family_name": "Bench", "given_name": "Five", "team": ""}])  # fmt: skip
    write(folder, "injuries.csv", [{"mrn": MRN, "kind": "spinal_cord_injury",
          "date": INJURED.isoformat(), "notes": "bench"}])  # fmt: skip
    imaging, scans, labs = [], [], []
    resected = INJURED + timedelta(days=900)
    for month in range(0, 60, 3):
        day = INJURED + timedelta(days=30 * month + 20)
        for site, side, scale in (
            ("hip", "left", 1.0),
            ("hip", "right", 0.8),
            ("knee", "left", 0.6),
        ):
            restart = site == "hip" and side == "right" and day > resected
            age = (day - resected).days if restart else (day - INJURED).days
            ratio = 1.8 + 5.0 * scale * 0.5 ** (age / 240)
            for phase, factor in (("flow", 0.45), ("blood_pool", 0.6), ("delayed", 1.0)):
                scans.append({"mrn": MRN, "date": day.isoformat(), "site": site, "side": side,
                              "phase": phase, "ratio": round(ratio * factor, 2)})  # fmt: skip
            imaging.append({"mrn": MRN, "date": day.isoformat(), "modality": "bone_scan",
                            "site": site, "side": side, "ho": "present",
                            "uptake": "increased"})  # fmt: skip
            if month % 6 == 0:
                mature = age > 600
                imaging.append({"mrn": MRN, "date": (day + timedelta(days=5)).isoformat(),
                                "modality": "radiograph", "site": site, "side": side,
                                "ho": "present", "calcification": "zonal",
                                "cortex": "well_defined" if mature else "partial",
                                "brooker": 3 if site == "hip" else None})  # fmt: skip
        if month < 6:
            imaging.append({"mrn": MRN, "date": (day - timedelta(days=3)).isoformat(),
                            "modality": "ultrasound", "site": "hip", "side": "left",
                            "ho": "present", "vascularity": "increased"})  # fmt: skip
        labs.append({"mrn": MRN, "date": day.isoformat(), "analyte": "alp",
                     "value": round(90 + 150 * 0.5 ** (month / 8)), "unit": "U/L",
                     "ref_low": 30, "ref_high": 130})  # fmt: skip
    header = ["mrn", "date", "modality", "site", "side", "ho", "soft_tissue", "calcification",
              "cortex", "trabeculae", "vascularity", "uptake", "brooker", "della_valle",
              "size_mm", "accession", "notes"]  # fmt: skip
    write(folder, "imaging.csv", [{k: row.get(k) for k in header} for row in imaging])
    write(folder, "bone_scans.csv", [{**s, "lesion_counts": None, "reference_counts": None,
          "reference_region": None} for s in scans])  # fmt: skip
    write(folder, "labs.csv", labs)
    write(folder, "procedures.csv", [{"mrn": MRN, "kind": "resection",
          "date": resected.isoformat(), "site": "hip", "side": "right", "notes": ""}])  # fmt: skip
    write(folder, "treatments.csv", [
        {"mrn": MRN, "agent": "etidronate", "intent": "treatment",
         "start_date": (INJURED + timedelta(days=40)).isoformat(),
         "end_date": (INJURED + timedelta(days=124)).isoformat(), "planned_weeks": 12,
         "dose": 20, "dose_unit": "mg/kg/day", "site": "", "side": ""},
        {"mrn": MRN, "agent": "radiotherapy", "intent": "post_resection",
         "start_date": (resected + timedelta(days=1)).isoformat(),
         "end_date": (resected + timedelta(days=1)).isoformat(), "planned_weeks": None,
         "dose": 7, "dose_unit": "Gy", "site": "hip", "side": "right"},
    ])  # fmt: skip
    return folder


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(cold first run, median of `repeat` warm runs) in seconds."""
    started = time.perf_counter()
    action()
    cold = time.perf_counter() - started
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return cold, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run each, no PDF (CI)")
    parser.add_argument("--out", type=Path, help="also write the reports here, to look at")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    work = Path(tempfile.mkdtemp(prefix="report-bench-"))
    engine = database.make_engine(f"sqlite:///{work / 'bench.db'}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    import_folder(engine, five_year_patient(work / "five_years"))

    def patient_html() -> str:
        report = patient_report(engine=engine, mrn=MRN, as_of=AS_OF)
        return render_patient_html(report)

    def patient_pdf() -> bytes:
        report = patient_report(engine=engine, mrn=MRN, as_of=AS_OF)
        return html_to_pdf(render_patient_html(report, "print"))

    def board_html() -> str:
        return render_board_html(board_report(engine=engine, as_of=AS_OF))

    report = patient_report(engine=engine, mrn=MRN, as_of=AS_OF)
    sites = report.assessment["sites"]
    points = sum(len(e.delayed) for s in report.trend.sites for e in s.episodes)
    print(
        f"patient {MRN}: {len(report.timeline)} timeline rows over five years, "
        f"{len(sites)} sites, {points} delayed-phase points"
    )
    cold, warm = timed(patient_html, repeat)
    print(f"(a) patient report, HTML with figure: {warm:.3f} s (first run {cold:.3f} s)")
    if not args.smoke:
        cold, warm = timed(patient_pdf, repeat)
        print(f"(b) patient report, PDF:              {warm:.3f} s (first run {cold:.3f} s)")
    cold, warm = timed(board_html, repeat)
    board = board_report(engine=engine, as_of=AS_OF)
    print(
        f"(c) cohort board, HTML ({board.patients} patients, {len(board.sites)} sites, "
        f"{len(board.panels)} small multiples): {warm:.3f} s (first run {cold:.3f} s)"
    )
    if args.out:
        write_patient_report(report, args.out, "html")
        write_patient_report(report, args.out, "png")
        write_board_report(board, args.out, "html")
        print(f"reports written to {args.out}")
    engine.dispose()


if __name__ == "__main__":
    main()
