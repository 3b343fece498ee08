"""One truth: the cohort run gives every site exactly what the one-patient path gives,
field by field and word for word (model-spec section 8: "results for a patient must
be identical whichever way they are asked for")."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_safety_properties import cases

from tracker.cli import run
from tracker.errors import TrackerError
from tracker.interchange import synth
from tracker.interchange.csv_import import import_folder
from tracker.protocol import (
    ActivityRules,
    CriterionLevels,
    DefaultUpperLimits,
    FlagRules,
    ForecastRules,
    Level,
    Protocol,
    ReadinessRules,
    StageRules,
    UnitLimits,
)
from tracker.services.assessment import assess_all, write_cohort_assessment
from tracker.staging import (
    BoneScan,
    Course,
    Finding,
    Injury,
    Lab,
    PatientRecords,
    Procedure,
    RangeOfMotion,
    assess_patient,
    to_json,
)
from tracker.staging.cohort import (
    COLUMNS,
    assess_cohort,
    cohort_as_json_sites,
    cohort_frames,
)
from tracker.store import database
from tracker.store.loaders import patient_records, read_cohort
from tracker.vocab import (
    Agent,
    Analyte,
    Calcification,
    Cortex,
    DellaValle,
    HoPresence,
    InjuryKind,
    Intent,
    Phase,
    ProcedureKind,
    Uptake,
    values,
)

UNTIL = date(2025, 6, 30)  # the synthetic cohort's last day (import refuses future dates)
one_truth = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


DEFAULTS = Protocol()


def assert_one_truth(
    patients: Sequence[PatientRecords], as_of: date, protocol: Protocol = DEFAULTS
) -> pd.DataFrame:
    """Both paths over the same records: identical sites for every patient."""
    frame = assess_cohort(cohort_frames(patients), as_of, protocol)
    cohort = cohort_as_json_sites(frame)
    for records in patients:
        alone = to_json(assess_patient(records, as_of, protocol))
        assert cohort.get(records.mrn, []) == alone["sites"], records.mrn
    provenance = ["as_of", "model_version", "protocol_fingerprint"]
    assert frame[provenance].drop_duplicates().to_dict("records") in (
        [],
        [
            {
                "as_of": as_of.isoformat(),
                "model_version": 2,
                "protocol_fingerprint": protocol.fingerprint,
            }
        ],
    )
    return frame


# --- generated records, no database -----------------------------------------------------


@one_truth
@given(st.lists(cases(), min_size=1, max_size=4), st.data())
def test_generated_patients_get_the_same_sites_from_the_cohort_run(
    drawn: list[tuple[PatientRecords, date]], data: st.DataObject
) -> None:
    patients = [replace(records, mrn=f"P{i}") for i, (records, _) in enumerate(drawn)]
    as_of = data.draw(st.sampled_from([when for _, when in drawn]))
    assert_one_truth(patients, as_of)


# Few days, few sites: same-day studies, same-day ratios, resections on evidence days,
# several labs on the latest day, injuries on the day of first evidence...
FEW_DAYS = [date(2024, 1, 1) + timedelta(days=d) for d in (0, 1, 30, 31, 60, 200, 380, 400)]
few_days = st.sampled_from(FEW_DAYS)
few_sites = st.sampled_from([("hip", "right"), ("hip", "left"), ("elbow", "right")])


def maybe(options: list[str]) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(options)


@st.composite
def crowded_patients(draw: st.DrawFn, mrn: str) -> PatientRecords:
    def finding() -> Finding:
        site, side = draw(few_sites)
        return Finding(
            date=draw(few_days),
            modality=draw(st.sampled_from(["radiograph", "ct", "mri", "ultrasound", "bone_scan"])),
            site=site,
            side=side,
            ho=draw(st.sampled_from(values(HoPresence))),
            calcification=draw(maybe(values(Calcification))),
            cortex=draw(maybe(values(Cortex))),
            uptake=draw(maybe(values(Uptake))),
            brooker=draw(st.none() | st.integers(0, 4)),
            della_valle=draw(maybe(values(DellaValle))),
            soft_tissue=draw(maybe(["none", "swelling", "mass"])),
        )

    def scan() -> BoneScan:
        site, side = draw(few_sites)
        ratio = draw(
            st.none()
            | st.sampled_from(
                [1.0, 1.2, 1.21, 1.95, 2.0, 2.05, 2.2, 2.7, 3.0, 3.3, 4.5, 5.0, 5.01, 6.1]
            )
        )
        return BoneScan(draw(few_days), site, side, draw(st.sampled_from(values(Phase))), ratio)

    def lab() -> Lab:
        return Lab(
            draw(few_days),
            draw(st.sampled_from(values(Analyte))),
            draw(st.sampled_from([95.0, 130.0, 130.5, 1000.0, 24.6, 7.25, 2.17, 2.2])),
            draw(st.none() | st.sampled_from([24.6, 130.0])),
            draw(st.sampled_from([None, "", "U/L", "ug/L", "ukat/L"])),
        )

    def course() -> Course:
        start = draw(few_days)
        end = draw(st.none() | st.sampled_from([d for d in FEW_DAYS if d >= start]))
        agent, intent = draw(st.sampled_from(values(Agent))), draw(st.sampled_from(values(Intent)))
        return Course(agent, intent, start, end, None)

    def procedure() -> Procedure:
        site, side = draw(few_sites)
        kind = draw(st.sampled_from(values(ProcedureKind)))
        return Procedure(kind, draw(few_days), site, side)

    def arc() -> RangeOfMotion:
        site, side = draw(st.sampled_from([("hip", "right"), ("hip", "left"), ("knee", "left")]))
        movement = draw(st.sampled_from(["flexion", "extension"]))
        degrees = draw(st.sampled_from([0.0, 70.0, 80.0, 88.0, 100.0, 110.0, 100.5]))
        return RangeOfMotion(draw(few_days), site, side, movement, degrees)

    def injury() -> Injury:
        when = draw(st.sampled_from([date(2022, 1, 31), date(2023, 2, 28), *FEW_DAYS[:3]]))
        return Injury(draw(st.sampled_from(values(InjuryKind))), when)

    def some(make: Any, most: int) -> tuple[Any, ...]:
        return tuple(make() for _ in range(draw(st.integers(0, most))))

    return PatientRecords(
        mrn=mrn,
        injuries=some(injury, 3),
        findings=some(finding, 8),
        bone_scans=some(scan, 10),
        courses=some(course, 2),
        procedures=some(procedure, 2),
        labs=some(lab, 4),
        range_of_motion=some(arc, 8),
    )


@one_truth
@given(st.data(), st.integers(1, 4), st.sampled_from([*FEW_DAYS, date(2026, 12, 31)]))
def test_ties_on_one_day_are_broken_the_same_way_in_both_paths(
    data: st.DataObject, count: int, as_of: date
) -> None:
    patients = [data.draw(crowded_patients(f"C{i}")) for i in range(count)]
    assert_one_truth(patients, as_of)


STRICT = Protocol(
    stage=StageRules(normal_uptake_ratio=1.95),
    activity=ActivityRules(tolerance=0.05),
    readiness=ReadinessRules(
        scan_recency_days=30,
        alp_window_days=400,
        levels=CriterionLevels(time_since_injury=Level.required, alp_normal=Level.required),
        default_upper_limits=DefaultUpperLimits(
            alp=UnitLimits((("U/L", 95.0),)), bone_alp=UnitLimits((("ug/L", 24.6),))
        ),
    ),
    flags=FlagRules(progression_window_days=0, new_site_gap_days=0, rom_loss_fraction=0.12),
    forecast=ForecastRules(horizon_years=1, bootstrap_samples=50, interval=0.5),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(1, 3), st.sampled_from(FEW_DAYS[3:]))
def test_a_clinic_protocol_changes_both_paths_alike(
    data: st.DataObject, count: int, as_of: date
) -> None:
    patients = [data.draw(crowded_patients(f"K{i}")) for i in range(count)]
    assert_one_truth(patients, as_of, STRICT)


def test_nothing_recorded_by_as_of_gives_an_empty_frame_with_every_column() -> None:
    records = PatientRecords(
        "A1", findings=(Finding(date(2025, 1, 1), "radiograph", "hip", "left", "present"),)
    )
    frame = assert_one_truth([records], date(2024, 1, 1))
    assert list(frame.columns) == COLUMNS and frame.empty
    assert COLUMNS[:5] == ["mrn", "as_of", "model_version", "protocol_fingerprint", "site"]
    assert COLUMNS[-4:] == ["forecast_date", "forecast_low", "forecast_high", "forecast_passed"]
    assert assess_cohort(cohort_frames([]), date(2024, 1, 1)).empty


# --- a synthetic cohort through the store --------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("synthetic")
    synth.write_cohort(folder / "csv", patients=500, seed=3, until=UNTIL)
    engine = database.make_engine(f"sqlite:///{folder / 'tracker.db'}")
    database.upgrade(engine)
    import_folder(engine, folder / "csv", today=UNTIL)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def stored(synthetic: Engine) -> list[PatientRecords]:
    with synthetic.connect() as conn:
        mrns = read_cohort(conn).patients["mrn"].tolist()
    with Session(synthetic) as session:
        return [patient_records(session, mrn) for mrn in mrns]


def resection_days(patients: Sequence[PatientRecords]) -> list[date]:
    days = sorted({p.date for r in patients for p in r.procedures if p.kind == "resection"})
    assert days, "the synthetic cohort should include resections"
    return days


def test_a_synthetic_cohort_read_from_the_store_agrees_with_each_patient_on_many_days(
    synthetic: Engine, stored: list[PatientRecords]
) -> None:
    resected = resection_days(stored)
    middle = [UNTIL - timedelta(days=d) for d in (1200, 700, 365, 120)]
    at_resections = [resected[0], resected[len(resected) // 2], resected[-1]]
    around = [resected[len(resected) // 3] + timedelta(days=d) for d in (-1, 1)]
    with synthetic.connect() as conn:
        frames = read_cohort(conn)
    forecasts = ready = 0
    for as_of in [*middle, *at_resections, *around, UNTIL]:
        frame = assess_cohort(frames, as_of)
        cohort = cohort_as_json_sites(frame)
        for records in stored:
            alone = to_json(assess_patient(records, as_of))["sites"]
            assert cohort.get(records.mrn, []) == alone, (records.mrn, as_of)
        forecasts += int(frame["forecast_date"].notna().sum())
        ready += int((frame["readiness"] == "ready").sum())
    # the comparison must have covered the interesting cases
    assert forecasts > 0 and ready > 0


def test_both_backends_read_the_same_cohort_as_each_patient_is_read(
    engine: Engine, tmp_path: Path
) -> None:
    synth.write_cohort(tmp_path / "csv", patients=80, seed=5, until=UNTIL)
    import_folder(engine, tmp_path / "csv", today=UNTIL)
    with engine.connect() as conn:
        frames = read_cohort(conn)
    with Session(engine) as session:
        patients = [patient_records(session, mrn) for mrn in frames.patients["mrn"]]
    assert frames.findings["date"].dtype.kind == "M" and frames.findings["brooker"].dtype == "Int64"
    for as_of in (UNTIL - timedelta(days=400), UNTIL):
        cohort = cohort_as_json_sites(assess_cohort(frames, as_of))
        for records in patients:
            assert cohort.get(records.mrn, []) == to_json(assess_patient(records, as_of))["sites"]


def test_the_cohort_service_reads_the_store_and_refuses_a_day_before_every_record(
    synthetic: Engine, stored: list[PatientRecords]
) -> None:
    frame = assess_all(engine=synthetic, as_of=UNTIL)
    alone = {r.mrn: to_json(assess_patient(r, UNTIL))["sites"] for r in stored}
    assert cohort_as_json_sites(frame) == {mrn: sites for mrn, sites in alone.items() if sites}
    with pytest.raises(TrackerError, match="before every record"):
        assess_all(engine=synthetic, as_of=date(2000, 1, 1))


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli_db(synthetic: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    url = synthetic.url.render_as_string(hide_password=False)
    monkeypatch.setenv("HO_TRACKER_DATABASE_URL", url)
    return url


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_assess_all_writes_one_row_per_site_and_prints_counts_by_readiness(
    cli_db: str, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"sites{suffix}"
    assert run(["assess", "--all", "--as-of", UNTIL.isoformat(), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(written.columns) == COLUMNS
    expected = assess_all(engine=database.make_engine(cli_db), as_of=UNTIL)
    assert len(written) == len(expected) > 0
    assert cohort_as_json_sites(written) == cohort_as_json_sites(expected)
    assert set(written["model_version"]) == {2}
    assert set(written["protocol_fingerprint"]) == {Protocol().fingerprint}
    assert set(written["as_of"]) == {UNTIL.isoformat()}
    given = written["forecast_date"].notna()
    assert given.any() and written.loc[given, "forecast_passed"].isin([True, False]).all()
    assert written.loc[~given, "forecast_passed"].isna().all()
    ready = int((expected["readiness"] == "ready").sum())
    no_ho = int((expected["readiness"] == "not_applicable").sum())
    assert f"Assessed {len(expected)} sites" in printed and f"{ready} ready" in printed
    assert f"{no_ho} without HO (not applicable)" in printed
    assert f"model 2, protocol {Protocol().fingerprint}" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--all", "--out", "sites.xlsx"], "'.xlsx' is not a format"),
        (["--all"], "--all needs --out"),
        (["S000001", "--all", "--out", "sites.csv"], "not both"),
        (["--out", "sites.csv"], "add --all"),
    ],
)
def test_assess_all_refuses_unclear_requests_with_exit_2(
    cli_db: str,
    tmp_path: Path,
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["assess", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_writing_refuses_a_suffix_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(TrackerError, match="'.json'"):
        write_cohort_assessment(pd.DataFrame(columns=COLUMNS), tmp_path / "sites.json")
