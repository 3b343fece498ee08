"""The demo cohort: a small synthetic population plus hand-written showcase patients.

The hand-written patients (MRNs starting "H-", described in
`data/demo_handwritten/README.md`) each show one stage or readiness outcome of
model-spec sections 3-5 as of 2026-10-31, so a demo can walk from "screened
negative" to "ready for resection" and "genetic HO: never resect". The synthetic
patients around them make the worklists and cohort views look like a real unit.

`ho-tracker demo` keeps the demo current (issue 13): the files on disk stay as they
are, and at load every date of every file, birth dates included, moves by the same
whole number of days, so that the latest record falls `LEAD_DAYS` before today.
Intervals, ages and every outcome above are unchanged; they hold as of today.
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.interchange import csv_format as fmt
from tracker.interchange.csv_import import ImportSummary, import_folder
from tracker.interchange.synth import Row, sort_rows, write_cohort, write_rows
from tracker.progress import Progress

HANDWRITTEN_DIR = Path(__file__).resolve().parents[2] / "data" / "demo_handwritten"
DEMO_AS_OF = date(2026, 10, 31)
DEMO_PATIENTS = 40
DEMO_SEED = 2026
LEAD_DAYS = 3  # the latest demo record, this many days before today

Table = tuple[list[str], list[list[str]]]  # a CSV file: header and rows


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
        write_cohort(
            synthetic, patients=DEMO_PATIENTS, seed=DEMO_SEED, until=DEMO_AS_OF, bedside=False
        )
        for file in fmt.FORMATS:
            rows = read_rows(synthetic / file.name, file)
            handwritten = HANDWRITTEN_DIR / file.name
            if handwritten.is_file():
                rows += read_rows(handwritten, file)
            sort_rows(file, rows)
            counts[file.name] = write_rows(out_dir / file.name, file, rows)
    return counts


# --- keeping the demo current -------------------------------------------------------------


def _date_columns(name: str, header: Sequence[str]) -> list[int]:
    """Positions of the date columns (model-spec section 2) in a file's header."""
    file = fmt.FORMAT_BY_NAME.get(name)
    if file is None:
        return []
    dates = {c.name for c in file.columns if c.kind == "date"}
    return [i for i, column in enumerate(header) if column in dates]


def latest_date(tables: Mapping[str, Table]) -> date | None:
    """The latest clinical date in the tables (birth dates are not records)."""
    found: list[date] = []
    for name, (header, rows) in tables.items():
        columns = [i for i in _date_columns(name, header) if header[i] != "birth_date"]
        found += [date.fromisoformat(row[i]) for row in rows for i in columns if row[i]]
    return max(found, default=None)


def demo_shift(latest: date, today: date, lead_days: int = LEAD_DAYS) -> int:
    """Whole days to add to every demo date so that `latest` lands `lead_days` before
    `today` (negative when the files are newer than that)."""
    return (today - timedelta(days=lead_days) - latest).days


def shift_tables(tables: Mapping[str, Table], days: int) -> dict[str, Table]:
    """Every date of every interchange file moved by `days`, the same for every
    patient, birth dates included (ages stay as they were); blanks stay blank and
    every other value is untouched. Files that are not interchange files are copied."""
    step = timedelta(days=days)
    shifted: dict[str, Table] = {}
    for name, (header, rows) in tables.items():
        columns = _date_columns(name, header)
        out = []
        for row in rows:
            moved = list(row)
            for i in columns:
                if i < len(moved) and moved[i]:
                    moved[i] = (date.fromisoformat(moved[i]) + step).isoformat()
            out.append(moved)
        shifted[name] = (list(header), out)
    return shifted


def read_tables(folder: Path) -> dict[str, Table]:
    """Every `.csv` file of a folder as text (an unknown one is kept, so the import
    refuses it by name as it would the folder itself)."""
    tables: dict[str, Table] = {}
    for path in sorted(folder.glob("*")):
        if path.suffix.lower() != ".csv" or not path.is_file():
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        tables[path.name] = (rows[0] if rows else [], [r for r in rows[1:] if r])
    return tables


def write_tables(folder: Path, tables: Mapping[str, Table]) -> None:
    for name, (header, rows) in tables.items():
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def stored_shift(engine: Engine, tables: Mapping[str, Table]) -> int | None:
    """The shift the demo was loaded with before, if its patients are stored: their
    stored birth dates minus those in the files (the most common difference). Using
    it again makes a second `demo` add nothing instead of a second, moved cohort."""
    header, rows = tables.get(fmt.PATIENTS.name, ([], []))
    if "mrn" not in header or "birth_date" not in header:
        return None
    mrn, born = header.index("mrn"), header.index("birth_date")
    in_files = {row[mrn]: date.fromisoformat(row[born]) for row in rows if row[born]}
    if not in_files:
        return None
    patient = sa.table("patient", sa.column("mrn", sa.String), sa.column("birth_date", sa.Date))
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(patient.c.mrn, patient.c.birth_date).where(
                patient.c.mrn.in_(sorted(in_files)), patient.c.birth_date.is_not(None)
            )
        ).all()
    differences = Counter(
        (birth - in_files[mrn]).days for mrn, birth in stored if isinstance(birth, date)
    )
    return differences.most_common(1)[0][0] if differences else None


@dataclass(frozen=True)
class DemoLoad:
    """What `load_demo` did: rows added, the days every date moved, the latest record."""

    summary: ImportSummary
    shift_days: int
    latest: date | None
    already_loaded: bool


def load_demo(
    engine: Engine,
    folder: Path,
    *,
    today: date | None = None,
    progress: Progress | None = None,
    importer: Callable[[Path], ImportSummary] | None = None,
) -> DemoLoad:
    """Import the demo folder with its dates moved so that its latest record is
    `LEAD_DAYS` before `today` (a database that already holds the demo keeps the
    shift it was loaded with). The files on disk are not changed. `importer` imports
    the moved folder (`ho-tracker demo` passes `services.imports.import_records`, which
    audits each patient, issue 15); by default the bare `import_folder`."""
    today = today or date.today()
    tables = read_tables(folder)
    latest = latest_date(tables)
    before = stored_shift(engine, tables)
    fresh = demo_shift(latest, today) if latest is not None else 0
    days = fresh if before is None else before
    with tempfile.TemporaryDirectory(prefix="ho-demo-") as scratch:
        write_tables(Path(scratch), shift_tables(tables, days))
        if importer is not None:
            summary = importer(Path(scratch))
        else:
            summary = import_folder(engine, Path(scratch), today=today, progress=progress)
    moved = latest + timedelta(days=days) if latest is not None else None
    return DemoLoad(summary, days, moved, already_loaded=before is not None)
