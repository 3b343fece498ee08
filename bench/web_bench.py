"""Patient-page benchmark: latency and SQL queries of GET /patients/{mrn} on a small
and a large cohort, side by side in one run.

Each cohort is synthetic (`synth.write_cohort`), imported with `import_folder`,
served in process (FastAPI's TestClient, signed in as a clinician) so the figures
are the app's own time. Queries are counted with a `before_cursor_execute`
listener. Targets: p95(large) / p95(small) <= 1.2, and the same number of queries
per page for both (the story loads in a fixed number of queries).

    python bench/web_bench.py                  # 1,000 and 100,000 patients, SQLite
    python bench/web_bench.py --smoke          # CI: 100 and 1,000 patients
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.config import Settings  # noqa: E402
from tracker.interchange import synth  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.services.users import add_user  # noqa: E402
from tracker.store import database  # noqa: E402

PASSWORD = "bench-password"


def build(folder: Path, patients: int, seed: int) -> sa.Engine:
    csvs = folder / f"csv_{patients}"
    synth.write_cohort(csvs, patients=patients, seed=seed)
    engine = database.make_engine(f"sqlite:///{folder / f'web_{patients}.db'}")
    database.upgrade(engine)
    import_folder(engine, csvs)
    add_user(engine=engine, username="bench", role="clinician", password=PASSWORD)
    return engine


def measure(engine: sa.Engine, sample: int, rounds: int, seed: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from tracker.web.app import create_app

    with engine.connect() as conn:
        mrns = [row[0] for row in conn.execute(sa.text("SELECT mrn FROM patient ORDER BY mrn"))]
    chosen = random.Random(seed).sample(mrns, min(sample, len(mrns)))
    app = create_app(Settings(database_url=str(engine.url)), engine, secret="b" * 48)
    counts: Counter[int] = Counter()
    current = [0]

    def count(*_args: Any) -> None:
        current[0] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    timings: list[float] = []
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/signin")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed = client.post(
            "/signin", data={"username": "bench", "password": PASSWORD, "csrf_token": token}
        )
        assert signed.status_code == 303, signed.text
        for mrn in chosen[:5]:  # warm caches and templates
            client.get(f"/patients/{mrn}")
        for _ in range(rounds):
            for mrn in chosen:
                current[0] = 0
                start = time.perf_counter()
                response = client.get(f"/patients/{mrn}")
                timings.append(time.perf_counter() - start)
                assert response.status_code == 200, (mrn, response.status_code)
                counts[current[0]] += 1
    sa.event.remove(engine, "before_cursor_execute", count)
    timings.sort()
    return {
        "p50": statistics.median(timings) * 1000,
        "p95": timings[int(0.95 * (len(timings) - 1))] * 1000,
        "requests": len(timings),
        "queries": dict(counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=100, help="patients requested")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.small, args.large, args.sample, args.rounds = 100, 1_000, 20, 1
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in (args.small, args.large):
            started = time.perf_counter()
            engine = build(Path(scratch), size, args.seed)
            built = time.perf_counter() - started
            results[size] = measure(engine, args.sample, args.rounds, args.seed)
            engine.dispose()
            r = results[size]
            print(
                f"{size:>7} patients (built in {built:.0f} s): p50 {r['p50']:.1f} ms, "
                f"p95 {r['p95']:.1f} ms over {r['requests']} requests; "
                f"queries per page {sorted(r['queries'])}"
            )
    small, large = results[args.small], results[args.large]
    ratio = large["p95"] / small["p95"]
    same = set(small["queries"]) == set(large["queries"]) and len(small["queries"]) == 1
    print(
        f"p95 ratio {args.large}/{args.small}: {ratio:.2f} (target <= 1.2: "
        f"{'met' if ratio <= 1.2 else 'NOT met'}); same query count on every page of "
        f"both cohorts: {'yes' if same else 'NO'}"
    )
    if not same:
        sys.exit("the patient page's query count depends on the cohort or the patient")


if __name__ == "__main__":
    main()
