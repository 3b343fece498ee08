"""Whole synthetic cohorts through import and export; validation as a property."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tracker.errors import ValidationFailed
from tracker.interchange import synth
from tracker.interchange.csv_export import export_folder
from tracker.interchange.csv_import import import_folder
from tracker.store import database


def test_synthetic_cohort_imports_cleanly_and_round_trips(
    engine: Engine, sqlite_engine: Engine, tmp_path: Path
) -> None:
    counts = synth.write_cohort(tmp_path / "synth", patients=150, seed=11)
    summary = import_folder(engine, tmp_path / "synth")
    assert summary.added == {name: n for name, n in counts.items()}
    export_folder(engine, tmp_path / "a")
    import_folder(sqlite_engine, tmp_path / "a")
    export_folder(sqlite_engine, tmp_path / "b")
    for exported in sorted((tmp_path / "a").iterdir()):
        assert exported.read_bytes() == (tmp_path / "b" / exported.name).read_bytes()
    assert import_folder(sqlite_engine, tmp_path / "synth").total_added == 0


def test_demo_cohort_imports_cleanly(sqlite_engine: Engine) -> None:
    demo = Path(__file__).resolve().parents[2] / "data" / "demo"
    summary = import_folder(sqlite_engine, demo)
    assert summary.added["patients.csv"] >= 40
    assert count_rows(sqlite_engine)["site_finding"] > 0


VALID = st.one_of(
    st.integers(min_value=1, max_value=2000).map(str),
    st.floats(min_value=0.01, max_value=1e4, allow_nan=False).map(lambda v: f"{v:.3f}"),
)
JUNK = st.sampled_from(["", "abc", "1,5", "nan", "inf", "--1", "12mg", "1e400"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.tuples(st.booleans(), VALID, JUNK), min_size=1, max_size=40))
def test_exactly_the_rows_with_bad_values_are_reported(
    tmp_path_factory, values: list[tuple[bool, str, str]]
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("labs")
    engine = database.make_engine(f"sqlite:///{folder / 't.db'}")
    database.upgrade(engine)
    write_csv(folder, "patients.csv", [{"mrn": "P1"}])
    start = dt.date(2020, 1, 1)
    rows = [
        {
            "mrn": "P1",
            "date": (start + dt.timedelta(days=i)).isoformat(),
            "analyte": "crp",
            "value": good if ok else bad,
            "unit": "mg/L",
        }
        for i, (ok, good, bad) in enumerate(values)
    ]
    write_csv(folder, "labs.csv", rows)
    expected = {i + 2 for i, (ok, _, _) in enumerate(values) if not ok}
    try:
        import_folder(engine, folder)
        reported: set[int] = set()
    except ValidationFailed as failed:
        reported = {p.line for p in failed.problems if p.line is not None}
        assert count_rows(engine)["lab_result"] == 0
    assert reported == expected
    engine.dispose()
