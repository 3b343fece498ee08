"""Web benchmark: the pages a team opens all day, on a small and a large cohort, side
by side in one run, through the real app signed in (issue 14, item 9).

Pages: the worklist (first page, and overdue only), patient search by name, the
surgeons' board and the patient page. For each: p50 and p95 of the request time in
both cohorts, the p95 ratio large/small (target <= 1.5), and the SQL queries per
request (counted with a `before_cursor_execute` listener), which must be the same in
both cohorts. Last, the worklist's first page against a full-table read of the
reminders of the large cohort (target < 5%).

Each cohort is synthetic (`synth.write_cohort`, records up to 2026-10-31), imported
once into an SQLite file cached under bench/out/ at migration 0008 (the import takes
a minute at 100,000 patients); every run copies it, migrates the copy to head, plans
the reminders and stores every site's assessment (both timed and printed), then
serves the app in process (FastAPI's TestClient) with the clinic's today on the last
record day, so the figures are the app's own time.

    python bench/web_bench.py               # 1,000 and 100,000 patients
    python bench/web_bench.py --smoke       # CI: 100 and 1,000 patients, seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.config import Settings  # noqa: E402
from tracker.interchange import synth  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.protocol import Protocol  # noqa: E402
from tracker.reminders.planner import plan  # noqa: E402
from tracker.services.site_assessments import refresh_all  # noqa: E402
from tracker.services.users import add_user  # noqa: E402
from tracker.store import database  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
UNTIL = dt.date(2026, 10, 31)  # the synthetic records' last day: the clinic's today
IMPORTED_AT = "0008"  # the cache's revision (the import writes its columns); a run migrates
# its copy to head
PASSWORD = "bench-password"
PAGES = ("worklist", "worklist overdue", "search by name", "board", "patient page")


def cached_cohort(patients: int, seed: int) -> Path:
    """An SQLite file with the imported synthetic cohort (built once, then reused)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"web-cohort-{patients}-{seed}-{IMPORTED_AT}.db"
    if path.exists():
        return path
    started = time.perf_counter()
    building = OUT / f"{path.name}.building"
    building.unlink(missing_ok=True)
    engine = database.make_engine(f"sqlite:///{building}")
    database.upgrade(engine, IMPORTED_AT)
    work = Path(tempfile.mkdtemp(prefix="web-bench-"))
    try:
        synth.write_cohort(work / "csv", patients=patients, seed=seed, until=UNTIL)
        import_folder(engine, work / "csv", today=UNTIL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    shutil.move(building, path)
    print(f"built cohort cache {path.name} in {time.perf_counter() - started:.0f} s")
    return path


def prepared(patients: int, seed: int, scratch: Path) -> tuple[sa.Engine, dict[str, float]]:
    """A fresh copy of the cohort, migrated, planned and assessed; how long each took."""
    target = scratch / f"web-{patients}.db"
    shutil.copyfile(cached_cohort(patients, seed), target)
    engine = database.make_engine(f"sqlite:///{target}")
    database.upgrade(engine)
    took = {}
    started = time.perf_counter()
    plan(engine=engine, as_of=UNTIL, protocol=Protocol())
    took["plan"] = time.perf_counter() - started
    started = time.perf_counter()
    refresh_all(engine=engine, as_of=UNTIL, protocol=Protocol())
    took["assessments"] = time.perf_counter() - started
    add_user(engine=engine, username="bench", role="surgeon", password=PASSWORD)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return engine, took


def urls(engine: sa.Engine, sample: int, seed: int) -> dict[str, list[str]]:
    """The URLs requested for each page: the same ones every round."""
    with engine.connect() as conn:
        people = conn.exec_driver_sql(
            "SELECT mrn, family_name FROM patient WHERE family_name IS NOT NULL ORDER BY mrn"
        ).all()
    chosen = random.Random(seed).sample(people, min(sample, len(people)))
    return {
        "worklist": ["/worklist"],
        "worklist overdue": ["/worklist?window=overdue"],
        "search by name": [f"/patients?q={quote(name)}" for _, name in chosen],
        "board": ["/board"],
        "patient page": [f"/patients/{quote(mrn)}" for mrn, _ in chosen],
    }


def measure(
    engines: dict[int, sa.Engine], sample: int, rounds: int, seed: int
) -> dict[int, dict[str, dict[str, Any]]]:
    """Every page in both cohorts, the two requests of each pair one after the other
    (small, then large), so that whatever else the machine does falls on both."""
    from fastapi.testclient import TestClient

    from tracker.web.app import create_app

    current = {size: [0] for size in engines}
    clients, listeners = {}, {}
    for size, engine in engines.items():
        app = create_app(Settings(database_url=str(engine.url)), engine, secret="b" * 48)
        app.state.today = lambda: UNTIL
        clients[size] = TestClient(app, follow_redirects=False).__enter__()
        sign_in(clients[size])

        def count(*_args: Any, seen: list[int] = current[size]) -> None:
            seen[0] += 1

        listeners[size] = count
        sa.event.listen(engine, "before_cursor_execute", count)
    addresses = {size: urls(engine, sample, seed) for size, engine in engines.items()}
    results: dict[int, dict[str, dict[str, Any]]] = {size: {} for size in engines}
    try:
        for page in PAGES:
            for size in engines:  # warm caches and templates
                for url in addresses[size][page][:3]:
                    clients[size].get(url)
            timings: dict[int, list[float]] = {size: [] for size in engines}
            queries: dict[int, Counter[int]] = {size: Counter() for size in engines}
            failed: dict[int, Counter[int]] = {size: Counter() for size in engines}
            pairs = max(len(addresses[size][page]) for size in engines)
            for _ in range(rounds * max(1, sample // pairs)):
                for i in range(pairs):
                    for size in engines:
                        listed = addresses[size][page]
                        url = listed[i % len(listed)]
                        current[size][0] = 0
                        started = time.perf_counter()
                        response = clients[size].get(url)
                        timings[size].append(time.perf_counter() - started)
                        queries[size][current[size][0]] += 1
                        if response.status_code != 200:
                            failed[size][response.status_code] += 1
            for size in engines:
                results[size][page] = summary(timings[size]) | {
                    "queries": queries[size],
                    "failed": failed[size],
                }
    finally:
        for size, engine in engines.items():
            sa.event.remove(engine, "before_cursor_execute", listeners[size])
            clients[size].__exit__(None, None, None)
    return results


def sign_in(client: Any) -> None:
    page = client.get("/signin")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/signin", data={"username": "bench", "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303, signed.text


def summary(timings: list[float]) -> dict[str, Any]:
    timings = sorted(timings)
    return {
        "p50": statistics.median(timings) * 1000,
        "p95": timings[int(0.95 * (len(timings) - 1))] * 1000,
        "requests": len(timings),
    }


def full_reminder_read(engine: sa.Engine, repeat: int = 3) -> tuple[float, int]:
    """Milliseconds to read every reminder row, all columns (best of `repeat`)."""
    best, rows = float("inf"), 0

    def read() -> int:
        with engine.connect() as conn:
            return len(conn.exec_driver_sql("SELECT * FROM reminder").fetchall())

    for _ in range(repeat):
        rows, seconds = timed(read)
        best = min(best, seconds)
    return best * 1000, rows


def timed(work: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    value = work()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=40, help="patients and names requested")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.small, args.large, args.sample, args.rounds = 100, 1_000, 10, 1
    sizes = (args.small, args.large)
    with tempfile.TemporaryDirectory() as scratch:
        engines = {}
        for size in sizes:
            engines[size], took = prepared(size, args.seed, Path(scratch))
            print(
                f"{size:>7,} patients: reminders planned in {took['plan']:.1f} s, every "
                f"site's assessment stored in {took['assessments']:.1f} s"
            )
        results = measure(engines, args.sample, args.rounds, args.seed)
        full = full_reminder_read(engines[args.large])
        for engine in engines.values():
            engine.dispose()
    report(results, sizes, full)


def report(
    results: dict[int, dict[str, dict[str, Any]]], sizes: tuple[int, int], full: tuple[float, int]
) -> None:
    small, large = sizes
    at_small, at_large = f"p50/p95 ms at {small:,}", f"p50/p95 ms at {large:,}"
    print(
        f"\n{'page':<18} {at_small:>24} {at_large:>26} {'p95 ratio':>10}  "
        f"queries per request ({small:,} | {large:,})"
    )
    missed = []
    for page in PAGES:
        a, b = results[small][page], results[large][page]
        ratio = b["p95"] / a["p95"]
        same = set(a["queries"]) == set(b["queries"])
        failed = a["failed"] + b["failed"]
        print(
            f"{page:<18} {a['p50']:>11.1f} / {a['p95']:>8.1f} {b['p50']:>13.1f} / {b['p95']:>8.1f}"
            f" {ratio:>10.2f}  {sorted(a['queries'])} | {sorted(b['queries'])}"
            f"{'' if same else '  NOT the same'}"
            f"{'' if not failed else f'  answered {dict(failed)} (page not ready?)'}"
        )
        if ratio > 1.5:
            missed.append(f"{page}: p95 ratio {ratio:.2f} > 1.5")
        if not same:
            missed.append(f"{page}: queries differ between the cohorts")
    read_ms, rows = full
    first = results[large]["worklist"]["p50"]
    share = first / read_ms if read_ms else float("nan")
    print(
        f"\nworklist first page (p50 {first:.1f} ms) / full read of the {rows:,} reminders "
        f"({read_ms:.1f} ms) at {large:,} patients: {share:.1%} (target < 5%)"
    )
    if share >= 0.05:
        missed.append(f"worklist first page {share:.1%} of a full reminder read")
    print("targets: " + ("all met" if not missed else "NOT met: " + "; ".join(missed)))


if __name__ == "__main__":
    main()
