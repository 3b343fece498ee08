"""The demo is always current (issue 13): every date moves by one whole-day shift at
load, so the latest records are a few days old whatever day the demo is run."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.interchange import csv_format as fmt
from tracker.interchange.demo import (
    LEAD_DAYS,
    demo_shift,
    latest_date,
    load_demo,
    read_tables,
    shift_tables,
)

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
TODAY = dt.date(2027, 3, 15)  # any day: the demo follows it


def _dates(tables, name, column):  # type: ignore[no-untyped-def]
    header, rows = tables[name]
    i = header.index(column)
    return [row[i] for row in rows]


def _date_columns() -> list[tuple[str, str]]:
    return [(f.name, c.name) for f in fmt.FORMATS for c in f.columns if c.kind == "date"]


def test_demo_latest_records_are_days_before_today() -> None:
    tables = read_tables(DEMO)
    days = demo_shift(latest_date(tables), TODAY)  # type: ignore[arg-type]
    assert latest_date(shift_tables(tables, days)) == TODAY - dt.timedelta(days=LEAD_DAYS)
    assert LEAD_DAYS == 3


def test_demo_shift_counts_whole_days_either_way() -> None:
    latest = dt.date(2026, 10, 26)
    assert demo_shift(latest, dt.date(2026, 12, 1)) == 33
    assert demo_shift(latest, dt.date(2026, 10, 29)) == 0
    assert demo_shift(latest, dt.date(2026, 10, 1)) == -28  # files newer than that move back
    assert demo_shift(latest, dt.date(2026, 12, 1), lead_days=10) == 26


def test_every_date_of_every_patient_moves_by_the_same_days_so_intervals_stay_exact() -> None:
    tables = read_tables(DEMO)
    shifted = shift_tables(tables, 400)
    moved_columns = 0
    for name, column in _date_columns():
        before, after = _dates(tables, name, column), _dates(shifted, name, column)
        assert [b == "" for b in before] == [a == "" for a in after]  # blanks stay blank
        steps = {
            (dt.date.fromisoformat(a) - dt.date.fromisoformat(b)).days
            for b, a in zip(before, after, strict=True)
            if b
        }
        assert steps == {400}, (name, column)
        moved_columns += 1
    assert ("patients.csv", "birth_date") in _date_columns()  # ages stay as they were
    assert moved_columns == len(_date_columns()) == 10  # exams.csv, rom.csv too (issue 16)
    for name, (header, rows) in tables.items():  # nothing but dates changes
        dates = {c for f, c in _date_columns() if f == name}
        keep = [i for i, column in enumerate(header) if column not in dates]
        assert [[r[i] for i in keep] for r in shifted[name][1]] == [
            [r[i] for i in keep] for r in rows
        ]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _latest_stored(engine: Engine) -> dt.date:
    queries = [
        "SELECT max(date) FROM injury",
        "SELECT max(date) FROM imaging_study",
        "SELECT max(date) FROM bone_scan_measurement",
        "SELECT max(date) FROM lab_result",
        "SELECT max(date) FROM procedure",
        "SELECT max(start_date) FROM treatment_course",
        "SELECT max(end_date) FROM treatment_course",
        "SELECT max(date) FROM clinical_exam",
        "SELECT max(date) FROM range_of_motion",
    ]
    with engine.connect() as conn:
        found = [conn.execute(sa.text(q)).scalar_one() for q in queries]
    return max(dt.date.fromisoformat(str(d)) for d in found if d)


def test_the_loaded_demo_is_current_and_a_second_load_adds_nothing(
    sqlite_engine: Engine,
) -> None:
    on_disk = _digest(DEMO)
    first = load_demo(sqlite_engine, DEMO, today=TODAY)
    assert not first.already_loaded
    assert first.latest == _latest_stored(sqlite_engine) == TODAY - dt.timedelta(days=3)
    with sqlite_engine.connect() as conn:
        born = conn.execute(
            sa.text("SELECT birth_date FROM patient WHERE mrn = 'H-READY'")
        ).scalar_one()
    original = dict(
        zip(
            _dates(read_tables(DEMO), "patients.csv", "mrn"),
            _dates(read_tables(DEMO), "patients.csv", "birth_date"),
            strict=True,
        )
    )["H-READY"]
    shifted_birth = dt.date.fromisoformat(original) + dt.timedelta(days=first.shift_days)
    assert dt.date.fromisoformat(str(born)) == shifted_birth

    # a week later: the stored cohort keeps its dates, nothing is added twice
    again = load_demo(sqlite_engine, DEMO, today=TODAY + dt.timedelta(days=7))
    assert again.already_loaded
    assert (again.shift_days, again.summary.total_added) == (first.shift_days, 0)
    assert _digest(DEMO) == on_disk  # the files on disk are never rewritten


def test_demo_first_worklist_holds_nothing_from_years_ago(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from tracker.cli import run
    from tracker.services.worklist import every_row

    monkeypatch.setenv(
        "HO_TRACKER_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False)
    )
    assert run(["demo", "--no-serve"]) == 0
    printed = capsys.readouterr().out
    today = dt.date.today()
    assert f"latest record {(today - dt.timedelta(days=3)).isoformat()}" in printed
    assert f"Worklist as of {today.isoformat()}:" in printed
    rows = list(every_row(engine=sqlite_engine, today=dt.date.today()))
    assert rows, "the demo's worklist is empty"
    # reminders long past when first planned are lapsed (model-spec v2, section 9)
    assert min(r["due"] for r in rows) >= today - dt.timedelta(days=30)
    with sqlite_engine.connect() as conn:
        lapsed = conn.execute(
            sa.text("SELECT count(*) FROM reminder WHERE status = 'lapsed'")
        ).scalar_one()
    assert lapsed > 0


def test_the_loaded_demo_shows_the_bedside_rules_open_and_a_joint_losing_range(
    sqlite_engine: Engine,
) -> None:
    """Issue 16: the demo shows each bedside rule at least once, open on the first
    worklist, and a site whose range of motion fell enough for rom_loss (model-spec v2,
    sections 6 and 9), as the planner and the assessment find them in the loaded data."""
    from tracker.protocol import Protocol
    from tracker.reminders.planner import plan
    from tracker.services.assessment import assess_all

    load_demo(sqlite_engine, DEMO, today=TODAY)
    plan(engine=sqlite_engine, as_of=TODAY, protocol=Protocol())
    with sqlite_engine.connect() as conn:
        open_rules = conn.execute(
            sa.text(
                "SELECT r.rule, r.site, r.side, r.detail FROM reminder r"
                " WHERE r.status IN ('pending', 'due', 'sent')"
                " AND r.rule IN ('suspected_ho_imaging', 'dvt_query_hip_ultrasound')"
            )
        ).all()
    rules = {rule for rule, *_ in open_rules}
    assert rules == {"suspected_ho_imaging", "dvt_query_hip_ultrasound"}, open_rules
    for rule, site, side, detail in open_rules:
        assert "_" not in detail, detail  # said in words, not vocabulary tokens
        if rule == "suspected_ho_imaging":
            assert f"image the {side} {site}" in detail
        else:
            assert site is None and "image both hips" in detail
    frame = assess_all(engine=sqlite_engine, as_of=TODAY)
    losing = frame[frame["flags"].str.split(";").map(lambda flags: "rom_loss" in flags)]
    assert len(losing) >= 1
