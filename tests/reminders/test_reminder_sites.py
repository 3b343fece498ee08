"""Stage, readiness and the day a site became ready, for the whole cohort at once,
must be what the one-patient path finds, site by site."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import lite  # noqa: F401  (fixture)
from tracker.interchange import synth
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Level, Protocol
from tracker.reminders import planner, rules, sites
from tracker.staging.cohort import assess_cohort
from tracker.store.loaders import read_cohort

UNTIL = date(2026, 10, 31)


@pytest.fixture
def cohort(lite: Engine, tmp_path: Path) -> Engine:  # noqa: F811
    synth.write_cohort(tmp_path / "csv", patients=1500, seed=11, until=UNTIL)
    import_folder(lite, tmp_path / "csv", today=UNTIL)
    return lite


def one_site_at_a_time(frames, site_frame, as_of, protocol):  # type: ignore[no-untyped-def]
    ready = site_frame[site_frame["readiness"] == "ready"]
    records = planner.records_of(frames, set(ready["mrn"]))
    return [
        rules.ready_since(records[r.mrn], r.site, r.side, as_of, protocol, ready_now=True)
        for r in ready.itertuples()
    ]


@pytest.mark.parametrize("as_of", [date(2026, 1, 15), date(2026, 6, 1), UNTIL])
def test_cohort_ready_since_is_the_one_site_answer_for_every_ready_site(
    cohort: Engine, as_of: date
) -> None:
    protocol = Protocol()
    assert sites.shift_safe(protocol)  # the default protocol takes the cohort path
    with cohort.connect() as conn:
        frames = read_cohort(conn)
    found = planner.cohort_sites(frames, as_of, protocol)
    assessed = assess_cohort(frames, as_of, protocol)
    columns = ["mrn", "site", "side", "stage", "readiness"]
    assert found[columns].equals(assessed[columns].reset_index(drop=True))
    ready = found[found["readiness"] == "ready"]
    assert len(ready) >= 10, "the cohort should hold ready sites on this day"
    expected = one_site_at_a_time(frames, found, as_of, protocol)
    assert ready["ready_since"].tolist() == expected
    assert all(d <= as_of for d in expected) and len(set(expected)) > 1
    assert found.loc[found["readiness"] != "ready", "ready_since"].isna().all()


def test_waiting_months_that_count_for_readiness_take_the_one_site_path(cohort: Engine) -> None:
    base = Protocol()
    levels = replace(base.readiness.levels, time_since_injury=Level.required_if_known)
    protocol = replace(base, readiness=replace(base.readiness, levels=levels))
    assert not sites.shift_safe(protocol)
    with cohort.connect() as conn:
        frames = read_cohort(conn)
    found = planner.cohort_sites(frames, UNTIL, protocol)
    assert found["readiness"].eq("ready").sum() >= 1
    expected = one_site_at_a_time(frames, found, UNTIL, protocol)
    assert found.loc[found["readiness"] == "ready", "ready_since"].tolist() == expected
