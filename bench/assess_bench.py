"""Assessment benchmark: the vectorised cohort run against its floor and against
asking patient by patient, in one run.

(a) floor = `read_cohort`: the rows assessment needs, read into pandas;
(b) cohort = `read_cohort` + `assess_cohort` of every site, forecasts included;
(c) one at a time = `patient_records` + `assess_patient` per patient (a session
    each, as `assess_one` does), timed on a random sample and extrapolated to the
    whole cohort.
(a) and (b) are the best of --repeat runs, after a warm-up read.
Targets at 100,000 patients: (b)/(a) <= 1.3 and (c)/(b) >= 50. The sample's answers
(model version and protocol fingerprint included) are also checked against the
cohort's, so the run proves one truth as it goes.

The SQLite database is built once per size and seed (synthetic cohort + validated
import) and kept in bench/out/, which git ignores; later runs reuse it.

    python bench/assess_bench.py                 # 100,000 patients
    python bench/assess_bench.py --patients 20000 --sample 500
    python bench/assess_bench.py --smoke         # CI: 300 patients, a few seconds
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.interchange import synth  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.staging import PatientAssessment, assess_patient, to_json  # noqa: E402
from tracker.staging.cohort import (  # noqa: E402
    CohortFrames,
    assess_cohort,
    cohort_as_json_sites,
    readiness_counts,
)
from tracker.store import database  # noqa: E402
from tracker.store.loaders import patient_records, read_cohort  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
UNTIL = date(2026, 10, 31)  # the cohort's last day, and the day it is assessed


def cohort_database(patients: int, seed: int) -> sa.Engine:
    """The cached benchmark database for this size and seed, built if missing."""
    path = OUT / f"assess-{patients}-seed{seed}.db"
    if not path.exists():
        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="assess-bench-"))
        partial = path.with_suffix(".partial")
        try:
            synth.write_cohort(work / "csv", patients=patients, seed=seed, until=UNTIL)
            partial.unlink(missing_ok=True)
            engine = database.make_engine(f"sqlite:///{partial}")
            database.upgrade(engine)
            import_folder(engine, work / "csv", today=UNTIL)
            engine.dispose()
            partial.rename(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            partial.unlink(missing_ok=True)
        print(f"built {path.name} in {time.perf_counter() - started:.1f} s")
    engine = database.make_engine(f"sqlite:///{path}")
    database.upgrade(engine)  # a cache built by an older schema is brought up to date
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample", type=int, default=500, help="patients timed one by one")
    parser.add_argument("--repeat", type=int, default=5, help="runs of (a) and (b); best")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    patients = 300 if args.smoke else args.patients
    engine = cohort_database(patients, args.seed)

    def timed_read() -> tuple[float, CohortFrames]:
        started = time.perf_counter()
        with engine.connect() as conn:
            frames = read_cohort(conn)
        return time.perf_counter() - started, frames

    # Best of a few runs each, (a) and (b) taking turns so that both meet the same
    # conditions: other work on the machine only ever adds time.
    timed_read()  # warms the file cache and the libraries
    floor_s = cohort_s = read_s = math.inf
    for _ in range(args.repeat):
        floor_s = min(floor_s, timed_read()[0])
        started = time.perf_counter()
        read, frames = timed_read()
        frame = assess_cohort(frames, UNTIL)
        elapsed = time.perf_counter() - started
        if elapsed < cohort_s:
            cohort_s, read_s = elapsed, read

    mrns = frames.patients["mrn"].tolist()
    rng = random.Random(args.seed)
    sample = rng.sample(mrns, min(args.sample, len(mrns)))

    def one_by_one(mrns: list[str]) -> dict[str, PatientAssessment]:
        answers = {}
        for mrn in mrns:  # as `assess_one` asks: a session per patient
            with Session(engine) as session:
                records = patient_records(session, mrn)
            answers[mrn] = assess_patient(records, UNTIL)
        return answers

    one_by_one(rng.sample(mrns, min(20, len(mrns))))  # warms statement caches
    started = time.perf_counter()
    answers = one_by_one(sample)
    one_s = (time.perf_counter() - started) / len(sample) * len(mrns)

    cohort = cohort_as_json_sites(frame)
    differ = [m for m, a in answers.items() if to_json(a)["sites"] != cohort.get(m, [])]
    if differ:
        sys.exit(f"the cohort run disagrees with the one-patient path for {differ[:5]}")
    provenance = {(a.model_version, a.protocol_fingerprint) for a in answers.values()}
    written = set(zip(frame["model_version"], frame["protocol_fingerprint"], strict=True))
    if len(frame) and written != provenance:
        sys.exit(f"the cohort run names other rules ({written}) than each patient ({provenance})")
    engine.dispose()

    counts = readiness_counts(frame)
    forecasts = int(frame["forecast_date"].notna().sum())
    passed = int(frame["forecast_passed"].fillna(False).astype(bool).sum())
    print(
        f"cohort: {len(mrns):,} patients, {len(frame):,} sites on {UNTIL.isoformat()} "
        f"({counts['ready']:,} ready, {counts['not_ready']:,} not ready, "
        f"{counts['insufficient_data']:,} insufficient data, "
        f"{counts['not_applicable']:,} not applicable; {forecasts:,} forecasts, "
        f"{passed:,} already passed)"
    )
    print(f"(a) floor: read_cohort:                     {floor_s:8.2f} s")
    print(
        f"(b) read_cohort + assess_cohort:            {cohort_s:8.2f} s"
        f"  (read {read_s:.2f} s, assess {cohort_s - read_s:.2f} s)"
    )
    print(
        f"(c) one patient at a time (extrapolated):   {one_s:8.2f} s"
        f"  ({len(sample)} sampled, same answers)"
    )
    at = "" if len(mrns) >= 100_000 else " at 100,000 patients"
    print(f"ratio (b)/(a): {cohort_s / floor_s:.2f} (target <= 1.3{at})")
    print(f"ratio (c)/(b): {one_s / cohort_s:.1f} (target >= 50{at})")


if __name__ == "__main__":
    main()
