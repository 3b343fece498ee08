"""FHIR benchmark: the FHIR round trip against the CSV round trip, in one run.

csv  = `export_folder` + `import_folder` into an empty database;
fhir = `cohort_bundle` (read, build, validate with fhir.resources) + JSON text +
       `import_bundle` (read back, validate, the CSV import's checks) into another.
Prints both times and fhir / csv. FHIR is the slower path by design (every
resource is validated by pydantic models); this keeps the cost visible.

    python bench/fhir_bench.py                 # 2,000 patients, SQLite
    python bench/fhir_bench.py --smoke         # CI: 40 patients
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.interchange import synth  # noqa: E402
from tracker.interchange.csv_export import export_folder  # noqa: E402
from tracker.interchange.csv_import import import_folder  # noqa: E402
from tracker.interchange.fhir_export import cohort_bundle  # noqa: E402
from tracker.interchange.fhir_import import import_bundle  # noqa: E402
from tracker.store import database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI")
    args = parser.parse_args()
    patients = 40 if args.smoke else args.patients
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synth.write_cohort(folder / "cohort", patients=patients, seed=3)
        engines = {}
        for name in ("source", "csv", "fhir"):
            engines[name] = database.make_engine(f"sqlite:///{folder / name}.db")
            database.upgrade(engines[name])
        import_folder(engines["source"], folder / "cohort")

        start = time.perf_counter()
        export_folder(engines["source"], folder / "out")
        import_folder(engines["csv"], folder / "out")
        csv_seconds = time.perf_counter() - start

        start = time.perf_counter()
        text = json.dumps(cohort_bundle(engine=engines["source"]))
        summary = import_bundle(engines["fhir"], json.loads(text))
        fhir_seconds = time.perf_counter() - start

    print(
        f"patients: {patients}, resources: {text.count('resourceType') - 1}, "
        f"rows stored: {summary.total_added}"
    )
    print(f"csv round trip:  {csv_seconds:.2f} s")
    print(f"fhir round trip: {fhir_seconds:.2f} s")
    print(f"ratio fhir / csv: {fhir_seconds / csv_seconds:.1f}")


if __name__ == "__main__":
    main()
