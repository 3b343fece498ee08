"""The stored site assessments (issue 14): the calls the surgeons' board and the patient
search read are the cohort path's calls, a save refreshes its patient's calls and no
one else's, a whole refresh keeps a patient's newer calls, and the store says plainly
when its calls are not today's or not under the protocol in use."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO
from tracker.errors import TrackerError
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol, load_protocol
from tracker.services import site_assessments
from tracker.services.assessment import assess_all, assess_one
from tracker.services.imaging_records import add_imaging_study
from tracker.services.records import void_record
from tracker.services.site_assessments import (
    assessment_state,
    patients_with_sites,
    refresh_all,
    refresh_if_stale,
    refresh_patient,
    site_filters,
)
from tracker.staging import to_json
from tracker.store.models import Patient, SiteAssessment, table_of

DAY = dt.date(2026, 11, 2)  # a few days after the demo's latest records
CALL = ("stage", "activity", "readiness", "flags", "forecast_date", "forecast_low",
        "forecast_high", "forecast_passed")  # fmt: skip


@pytest.fixture
def demo(engine: Engine) -> Engine:
    import_folder(engine, DEMO)
    return engine


def stored(engine: Engine, mrn: str | None = None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The stored rows by (mrn, site, side), dates as ISO text."""
    t = table_of(SiteAssessment)
    query = sa.select(t)
    if mrn is not None:
        query = query.where(t.c.mrn == mrn)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        for name in ("forecast_date", "forecast_low", "forecast_high", "as_of", "rank_date"):
            if row[name] is not None:
                row[name] = str(row[name])[:10]
    keys = [(r["mrn"], r["site"], r["side"]) for r in rows]
    assert len(set(keys)) == len(keys), "one stored row per site"
    return dict(zip(keys, rows, strict=True))


def one_patient_calls(engine: Engine, mrn: str, as_of: dt.date) -> dict[tuple[str, str], dict]:
    """What `ho-tracker assess MRN` says of each site (the one-patient path)."""
    doc = to_json(assess_one(engine=engine, mrn=mrn, as_of=as_of))
    return {(s["site"], s["side"]): s for s in doc["sites"]}


def same_call(row: dict[str, Any], site: dict[str, Any]) -> bool:
    forecast = site["forecast"] or {}
    return (
        row["stage"] == site["stage"]
        and row["activity"] == site["activity"]
        and row["readiness"] == site["readiness"]
        and row["flags"] == ";".join(site["flags"])
        and row["forecast_date"] == forecast.get("date")
        and row["forecast_low"] == forecast.get("low")
        and row["forecast_high"] == forecast.get("high")
        and row["forecast_passed"] == forecast.get("passed")
    )


def test_stored_calls_are_the_calls_of_a_fresh_cohort_assessment(demo: Engine) -> None:
    done = refresh_all(engine=demo, as_of=DAY)
    rows = stored(demo)
    frame = assess_all(engine=demo, as_of=DAY)
    assert len(rows) == len(frame) == done.sites
    assert done.patients == frame["mrn"].nunique()
    for site in frame.to_dict("records"):
        row = rows[(site["mrn"], site["site"], site["side"])]
        passed = None if site["forecast_date"] is None else bool(site["forecast_passed"])
        assert [row[c] for c in CALL[:-1]] == [site[c] for c in CALL[:-1]]
        assert row["forecast_passed"] is passed
        assert row["as_of"] == DAY.isoformat()
        assert row["protocol_fingerprint"] == Protocol().fingerprint
        assert row["model_version"] == site["model_version"]


def test_stored_calls_agree_with_the_one_patient_assessment(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=DAY)
    rows = stored(demo)
    for mrn in ("H-READY", "H-MATURE", "H-FOP", "S000033"):
        calls = one_patient_calls(demo, mrn, DAY)
        mine = {(s, d): r for (m, s, d), r in rows.items() if m == mrn}
        assert set(mine) == set(calls)
        assert all(same_call(mine[key], calls[key]) for key in calls), mrn


def test_board_groups_put_ready_then_soon_then_rescan_then_other_then_no_ho(
    demo: Engine,
) -> None:
    refresh_all(engine=demo, as_of=DAY)
    rows = stored(demo)
    assert rows[("H-READY", "hip", "left")]["priority"] == 0  # ready
    assert rows[("H-MATURE", "hip", "right")]["priority"] == 1  # forecast 2026-12-27
    assert rows[("S000033", "knee", "left")]["priority"] == 2  # forecast 2026-10-23 passed
    assert rows[("H-FOP", "shoulder", "right")]["priority"] == 3  # HO, no forecast
    assert rows[("H-NONE", "hip", "left")]["priority"] == 4  # no HO
    assert rows[("H-MATURE", "hip", "right")]["rank_date"] == "2026-12-27"
    assert rows[("H-FOP", "shoulder", "right")]["rank_date"] == "9999-12-31"


def test_a_saved_finding_refreshes_that_patients_calls_and_no_one_elses(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=DAY)
    before = stored(demo)
    saved = add_imaging_study(
        engine=demo, actor="clinician", mrn="H-EARLY", date=DAY.isoformat(),
        modality="radiograph", findings=[{"site": "knee", "side": "right", "ho": "present",
                                          "calcification": "peripheral"}],
        today=DAY, protocol=Protocol(),
    )  # fmt: skip
    after = stored(demo)
    mine = {key: row for key, row in after.items() if key[0] == "H-EARLY"}
    calls = one_patient_calls(demo, "H-EARLY", DAY)
    assert {(s, d) for _, s, d in mine} == set(calls) == {("hip", "left"), ("hip", "right"),
                                                          ("knee", "right")}  # fmt: skip
    assert all(same_call(mine[("H-EARLY", *key)], calls[key]) for key in calls)
    assert mine[("H-EARLY", "knee", "right")]["stage"] != "none"
    others = {key: row for key, row in after.items() if key[0] != "H-EARLY"}
    assert others == {key: row for key, row in before.items() if key[0] != "H-EARLY"}
    void_record(
        engine=demo, actor="clinician", entity="imaging_study", record_id=saved.id,
        expected_version=saved.version, reason="entered on the wrong patient",
        protocol=Protocol(),
    )  # fmt: skip
    assert ("H-EARLY", "knee", "right") not in stored(demo, "H-EARLY")


def test_a_voided_patient_leaves_the_stored_calls(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=DAY)
    patient = table_of(Patient)
    with demo.begin() as conn:
        conn.execute(
            sa.update(patient)
            .where(patient.c.mrn == "H-MATURE")
            .values(voided_at=dt.datetime.now(dt.UTC), voided_reason="duplicate record")
        )
    assert stored(demo, "H-MATURE")
    assert refresh_patient(engine=demo, mrn="H-MATURE", as_of=DAY) == 0
    assert stored(demo, "H-MATURE") == {}


def test_one_patients_refresh_waits_for_the_first_whole_refresh(demo: Engine) -> None:
    assert refresh_patient(engine=demo, mrn="H-READY", as_of=DAY) == 0
    assert assessment_state(engine=demo).empty  # never a board of one patient
    refresh_all(engine=demo, as_of=DAY)
    with pytest.raises(TrackerError, match="No patient with mrn 'NOBODY'"):
        refresh_patient(engine=demo, mrn="NOBODY", as_of=DAY)


def test_a_whole_refresh_keeps_the_calls_a_save_made_while_it_ran(
    demo: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(site_assessments, "utcnow", lambda: start)
    refresh_all(engine=demo, as_of=DAY)
    # a save read H-READY's records after the next whole refresh read the cohort
    monkeypatch.setattr(site_assessments, "utcnow", lambda: start + dt.timedelta(minutes=10))
    refresh_patient(engine=demo, mrn="H-READY", as_of=DAY)
    monkeypatch.setattr(site_assessments, "utcnow", lambda: start + dt.timedelta(minutes=5))
    done = refresh_all(engine=demo, as_of=DAY)
    rows = stored(demo)

    def stamp(row: dict[str, Any]) -> dt.datetime:
        at = row["assessed_at"]
        return at if at.tzinfo else at.replace(tzinfo=dt.UTC)

    kept = {stamp(r) for (m, _, _), r in rows.items() if m == "H-READY"}
    fresh = {stamp(r) for (m, _, _), r in rows.items() if m != "H-READY"}
    assert kept == {start + dt.timedelta(minutes=10)}
    assert fresh == {start + dt.timedelta(minutes=5)}
    assert done.sites == len(rows) - 2  # H-READY's two sites were not written again


def test_the_store_says_plainly_when_its_calls_are_not_todays(demo: Engine, tmp_path: Path) -> None:
    fingerprint = Protocol().fingerprint
    assert assessment_state(engine=demo).problem(DAY, fingerprint) == (
        "Not assessed yet: no site's assessment is stored."
    )
    refresh_all(engine=demo, as_of=DAY)
    state = assessment_state(engine=demo)
    assert state.current(DAY, fingerprint) and state.problem(DAY, fingerprint) is None
    tomorrow = DAY + dt.timedelta(days=1)
    assert state.problem(tomorrow, fingerprint) == "Assessed as of 2 Nov 2026; refresh."
    clinic = tmp_path / "clinic.toml"
    clinic.write_text("[reminders]\nsend_hour = 23\n")
    other = load_protocol(clinic).fingerprint
    assert other != fingerprint
    assert state.problem(DAY, other) == (
        f"Under another protocol than the one in use ({other}); refresh."
    )
    # one patient refreshed today: the rest are still yesterday's
    refresh_patient(engine=demo, mrn="H-READY", as_of=tomorrow)
    mixed = assessment_state(engine=demo)
    assert (mixed.oldest and mixed.oldest.as_of, mixed.newest and mixed.newest.as_of) == (
        DAY, tomorrow
    )  # fmt: skip
    assert mixed.problem(tomorrow, fingerprint) == "Assessed as of 2 Nov 2026; refresh."


def test_the_daily_refresh_does_nothing_when_todays_calls_are_stored(demo: Engine) -> None:
    assert refresh_if_stale(engine=demo, as_of=DAY) is not None
    assert refresh_if_stale(engine=demo, as_of=DAY) is None
    later = refresh_if_stale(engine=demo, as_of=DAY + dt.timedelta(days=1))
    assert later is not None and later.as_of == DAY + dt.timedelta(days=1)
    assert assessment_state(engine=demo).current(later.as_of, Protocol().fingerprint)


def test_patient_search_keeps_patients_with_a_site_matching_every_filter(demo: Engine) -> None:
    refresh_all(engine=demo, as_of=DAY)
    patient = table_of(Patient)

    def found(**chosen: str) -> set[str]:
        where = patients_with_sites(site_filters(**chosen))
        assert where is not None
        with demo.connect() as conn:
            return set(conn.execute(sa.select(patient.c.mrn).where(where)).scalars())

    assert found(readiness="ready") == {"H-READY"}
    assert found(flag="recurrence") == {"H-RESECTED"}
    assert found(flag="genetic_ho", stage="mature") == {"H-FOP"}
    frame = assess_all(engine=demo, as_of=DAY)
    mineralising = set(frame.loc[frame["stage"] == "mineralising", "mrn"])
    assert found(stage="mineralising") == mineralising
    # one site must meet every filter: H-FOP's mature spine has genetic HO but no new site
    assert found(flag="new_site", stage="mature") == {
        m for m, f, s in frame[["mrn", "flags", "stage"]].itertuples(index=False)
        if "new_site" in f.split(";") and s == "mature"
    }  # fmt: skip
    assert patients_with_sites(site_filters(stage="", readiness=None, flag=" ")) is None


def test_filters_refuse_a_value_not_in_their_list_with_the_choices_in_words() -> None:
    with pytest.raises(TrackerError) as refused:
        site_filters(readiness="not-ready")
    assert str(refused.value) == (
        "Readiness 'not-ready' is not a readiness verdict; choose one of ready, not ready, "
        "insufficient data, no HO, or leave it empty for any."
    )
    with pytest.raises(TrackerError, match="^Flag 'rising' is not a flag; choose one of "):
        site_filters(flag="rising")
    assert site_filters(stage="", readiness="", flag="").any is False
