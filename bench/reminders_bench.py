"""Reminder planning benchmark: plan a whole cohort against reading its rows raw.

raw  = `read_cohort`: every stored row assessment needs, SQL -> pandas, no work;
plan = `reminders.planner.plan`: the same read, the cohort assessment, every rule,
       the comparison with stored reminders and the writes.
Target: plan / raw <= 2.0 at 100,000 patients. A second plan on the same day must
write 0 rows (planning is idempotent).

The imported cohort is cached under bench/out/ (synthetic CSVs + SQLite import take
minutes at 100,000 patients); each run plans on a fresh copy of it.

    python bench/reminders_bench.py              # 100,000 patients, SQLite
    python bench/reminders_bench.py --smoke      # CI: 500 patients, a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.interchange import synth  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.protocol import Protocol  # noqa: E402
from tracker.reminders.planner import plan  # noqa: E402
from tracker.store import database  # noqa: E402
from tracker.store.loaders import read_cohort  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
UNTIL = dt.date(2026, 10, 31)


def cached_cohort(patients: int, seed: int) -> Path:
    """An SQLite file with the imported synthetic cohort (built once, then reused)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"reminders-cohort-{patients}-{seed}.db"
    if path.exists():
        return path
    work = Path(tempfile.mkdtemp(prefix="reminders-bench-"))
    try:
        started = time.perf_counter()
        synth.write_cohort(work / "csv", patients=patients, seed=seed, until=UNTIL)
        building = work / "cohort.db"
        engine = database.make_engine(f"sqlite:///{building}")
        database.upgrade(engine)
        import_folder(engine, work / "csv", today=UNTIL)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        shutil.move(building, path)
        print(f"built cohort cache {path.name} in {time.perf_counter() - started:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    patients = 500 if args.smoke else args.patients

    source = cached_cohort(patients, args.seed)
    target = OUT / f"reminders-plan-{patients}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    engine = database.make_engine(f"sqlite:///{target}")
    protocol = Protocol()

    # warm the file cache once, so raw and plan both read from memory
    with engine.connect() as conn:
        read_cohort(conn)
    started = time.perf_counter()
    with engine.connect() as conn:
        frames = read_cohort(conn)
    raw_s = time.perf_counter() - started
    rows = sum(
        len(getattr(frames, n))
        for n in ("patients", "injuries", "findings", "bone_scans", "courses", "procedures", "labs")
    )

    started = time.perf_counter()
    first = plan(engine=engine, as_of=UNTIL, protocol=protocol)
    first_s = time.perf_counter() - started
    # the second plan also reads the stored reminders: time reading them raw too
    started = time.perf_counter()
    with engine.connect() as conn:
        stored = len(conn.exec_driver_sql("SELECT * FROM reminder").fetchall())
    stored_s = time.perf_counter() - started
    started = time.perf_counter()
    second = plan(engine=engine, as_of=UNTIL, protocol=protocol)
    second_s = time.perf_counter() - started
    engine.dispose()

    print(f"cohort: {patients:,} patients, {rows:,} rows read by each plan (SQLite)")
    print(f"raw  (read_cohort):                   {raw_s:8.2f} s")
    print(
        f"plan (first, creates reminders):      {first_s:8.2f} s  "
        f"{first.rows_written:,} rows written ({len(first.created):,} reminders created)"
    )
    print(
        f"plan (second, same day):              {second_s:8.2f} s  "
        f"{second.rows_written:,} rows written"
    )
    print(f"raw  (SELECT * FROM reminder, {stored:,} rows): {stored_s:8.2f} s")
    print(f"ratio first plan / raw:  {first_s / raw_s:.2f} (target <= 2.0)")
    print(
        f"ratio second plan / raw (cohort + stored reminders): "
        f"{second_s / (raw_s + stored_s):.2f} (target <= 2.0)"
    )
    if second.rows_written:
        raise SystemExit("a second plan on the same day wrote rows: planning is not idempotent")


if __name__ == "__main__":
    main()
