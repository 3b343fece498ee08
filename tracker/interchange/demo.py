"""The demo cohort: a small synthetic population plus hand-written showcase patients.

The hand-written patients (MRNs starting "H-", described in
`data/demo_handwritten/README.md`) each show one stage or readiness outcome of
model-spec sections 3-5 as of 2026-10-31, so a demo can walk from "screened
negative" to "ready for resection" and "genetic HO: never resect". The synthetic
patients around them make the worklists and cohort views look like a real unit.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import date
from pathlib import Path

from tracker.interchange import csv_format as fmt
from tracker.interchange.synth import Row, sort_rows, write_cohort, write_rows

HANDWRITTEN_DIR = Path(__file__).resolve().parents[2] / "data" / "demo_handwritten"
DEMO_AS_OF = date(2026, 10, 31)
DEMO_PATIENTS = 40
DEMO_SEED = 2026


def read_rows(path: Path, file: fmt.FileFormat) -> list[Row]:
    """The rows of one interchange file, which must have exactly the spec's columns."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header != file.column_names:
            raise ValueError(
                f"{path}: the header must be exactly {','.join(file.column_names)} "
                f"(found {','.join(header)})"
            )
        return [tuple(row) for row in reader if row]


def build_demo(out_dir: Path) -> dict[str, int]:
    """Write the demo cohort into `out_dir`; return rows written per file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        synthetic = Path(scratch)
        write_cohort(synthetic, patients=DEMO_PATIENTS, seed=DEMO_SEED, until=DEMO_AS_OF)
        for file in fmt.FORMATS:
            rows = read_rows(synthetic / file.name, file)
            handwritten = HANDWRITTEN_DIR / file.name
            if handwritten.is_file():
                rows += read_rows(handwritten, file)
            sort_rows(file, rows)
            counts[file.name] = write_rows(out_dir / file.name, file, rows)
    return counts
