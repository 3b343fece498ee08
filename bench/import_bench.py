"""Import benchmark: our validated import against the raw floor, in one run.

floor = pandas.read_csv of every file + a bare bulk insert of the same rows into
an empty database (no validation, no checks against stored rows);
ours  = `import_folder` (column-wise validation, cross-file checks, natural-key
matching, all-or-nothing write) into another empty database.
Target: ours / floor <= 2.0 at 100,000 patients (about a million rows).

    python bench/import_bench.py                 # 100,000 patients, SQLite
    python bench/import_bench.py --patients 20000 --database-url postgresql+psycopg://...
    python bench/import_bench.py --smoke         # CI: 300 patients
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.interchange import csv_format as fmt  # noqa: E402
from tracker.interchange import synth, tables  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.store import database  # noqa: E402


def fresh_engine(url: str | None, folder: Path, name: str) -> sa.Engine:
    if url is None:
        engine = database.make_engine(f"sqlite:///{folder / name}")
    else:
        engine = database.make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    database.upgrade(engine)
    return engine


def floor(engine: sa.Engine, folder: Path) -> None:
    """read_csv + bare bulk insert of the same rows: the least any import must do."""
    frames = {f.name: pd.read_csv(folder / f.name) for f in fmt.FORMATS}
    frames = {n: f.astype(object).where(f.notna(), None) for n, f in frames.items()}
    with engine.begin() as conn:
        # patient.team references team.name: the teams a cohort names go in first
        teams = frames["patients.csv"]["team"].dropna().drop_duplicates()
        tables.bulk_insert(conn, tables.team, pd.DataFrame({"name": teams}))
        tables.bulk_insert(conn, tables.patient, frames["patients.csv"])
        ids = dict(conn.execute(sa.select(tables.patient.c.mrn, tables.patient.c.id)).all())
        for name, table in tables.SIMPLE_TABLES.items():
            frame = frames[name]
            if name == fmt.BONE_SCANS.name:
                counted = frame["lesion_counts"].astype(float) / frame["reference_counts"].astype(
                    float
                )
                frame["ratio"] = frame["ratio"].astype(float).fillna(counted)
            frame = frame.assign(patient_id=frame["mrn"].map(ids)).drop(columns="mrn")
            tables.bulk_insert(conn, table, frame)
        imaging = frames["imaging.csv"]
        imaging = imaging.assign(patient_id=imaging["mrn"].map(ids)).drop(columns="mrn")
        key = ["patient_id", *tables.STUDY_COLUMNS]
        studies = imaging[[*key, "indication"]].drop_duplicates(key)  # indication: the study's
        tables.bulk_insert(conn, tables.study, studies)
        study_ids = tables.study_index(conn, list(ids.values()))
        placed = imaging.merge(study_ids, on=key, how="left")
        columns = ["study_id", *[c for c in imaging.columns if c not in (*key, "indication")]]
        tables.bulk_insert(conn, tables.finding, placed[columns])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--database-url", help="PostgreSQL URL (its public schema is reset!)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    patients = 300 if args.smoke else args.patients

    work = Path(tempfile.mkdtemp(prefix="import-bench-"))
    try:
        started = time.perf_counter()
        counts = synth.write_cohort(work / "csv", patients=patients, seed=args.seed)
        generated = time.perf_counter() - started
        rows = sum(counts.values())
        print(f"cohort: {patients:,} patients, {rows:,} rows (generated in {generated:.1f} s)")

        engine = fresh_engine(args.database_url, work, "floor.db")
        started = time.perf_counter()
        floor(engine, work / "csv")
        floor_s = time.perf_counter() - started
        engine.dispose()

        engine = fresh_engine(args.database_url, work, "ours.db")
        started = time.perf_counter()
        summary = import_folder(engine, work / "csv")
        ours_s = time.perf_counter() - started
        assert summary.total_added == rows, (summary.total_added, rows)
        engine.dispose()

        backend = "postgresql" if args.database_url else "sqlite"
        print(f"backend: {backend}")
        print(f"floor (read_csv + bare bulk insert): {floor_s:8.2f} s")
        print(f"ours  (validated import):            {ours_s:8.2f} s")
        print(f"ratio ours/floor: {ours_s / floor_s:.2f} (target <= 2.0)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
