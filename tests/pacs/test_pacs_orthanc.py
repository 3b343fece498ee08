"""The PACS feed against a real PACS (issue 17): Orthanc with its DICOMweb plugin.
A poll creates the studies and pending sites of tracked patients and only those,
never repeats one (from a file or an earlier poll), pages through a capped server,
and survives a restart or the PACS stopping midway with nothing missed or repeated."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.orthanc import OrthancServer, make_study, rewrite_testdata
from tracker.interchange.csv_import import import_folder
from tracker.pacs import PacsFault, PacsSettings, poll, read_state
from tracker.services.audit import audit_trail
from tracker.services.interop import import_dicom_files, pending_sites

TODAY = dt.date(2026, 11, 20)
SINCE = dt.date(2026, 11, 1)


def tracked(engine: Engine, tmp_path: Path, *mrns: str) -> None:
    write_csv(tmp_path / "patients", "patients.csv", [{"mrn": mrn} for mrn in mrns])
    import_folder(engine, tmp_path / "patients")


def settings_for(pacs: OrthancServer, **extra: str) -> PacsSettings:
    settings = PacsSettings.from_environ({"HO_TRACKER_PACS_URL": pacs.dicomweb_url, **extra})
    assert settings is not None
    return settings


def studies(engine: Engine) -> list[tuple[str, str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.mrn, s.date, s.modality, s.accession FROM imaging_study s "
                "JOIN patient p ON p.id = s.patient_id ORDER BY p.mrn, s.date, s.accession"
            )
        )
        return [(m, str(d), mod, acc) for m, d, mod, acc in rows]


def sites(engine: Engine) -> list[tuple[str, str | None, str | None, str]]:
    return sorted((s.mrn, s.site, s.side, s.source_file[:5]) for s in pending_sites(engine=engine))


def test_a_poll_creates_studies_and_pending_sites_of_tracked_patients_only(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1", "H-2")
    orthanc.load(make_study("H-1", dt.date(2026, 11, 3), accession="ACC-1"))
    orthanc.load(make_study("H-2", dt.date(2026, 11, 4), "DX", "KNEE", "L", accession="ACC-2"))
    orthanc.load(rewrite_testdata("CT_small.dcm", "H-2", "20261105", "ACC-3", "PELVIS", None))
    orthanc.load(make_study("STRANGER", dt.date(2026, 11, 4), accession="ACC-9"))
    orthanc.load(make_study("H-1", dt.date(2026, 11, 6), "SR", None, None))  # a report

    report = poll(engine=engine, settings=settings_for(orthanc), since=SINCE, today=TODAY)

    assert studies(engine) == [
        ("H-1", "2026-11-03", "radiograph", "ACC-1"),
        ("H-2", "2026-11-04", "radiograph", "ACC-2"),
        ("H-2", "2026-11-05", "ct", "ACC-3"),
    ]
    assert sites(engine) == [
        ("H-1", "hip", "right", "pacs:"),
        ("H-2", "knee", "left", "pacs:"),
        ("H-2", "pelvis", "midline", "pacs:"),
    ]
    assert (report.created, report.sites_added, report.unknown_patient) == (3, 3, 1)
    assert report.studies_seen == 5 and sum(report.skipped.values()) == 1
    assert "'SR' is not followed" in next(iter(report.skipped))
    assert read_state(engine=engine).complete_through == TODAY - dt.timedelta(days=1)
    assert read_state(engine=engine).last_success_at is not None

    # the trail says where each patient's studies came from, as for a file import
    imported = [e for e in audit_trail(engine=engine, mrn="H-2") if e.action == "import"]
    assert [e.after for e in imported] == [
        {
            "source": f"PACS {orthanc.dicomweb_url}",
            "rows_added": {"imaging studies": 2, "pending sites": 2},
        }
    ]
    assert audit_trail(engine=engine, mrn="STRANGER") == []

    again = poll(engine=engine, settings=settings_for(orthanc), since=SINCE, today=TODAY)
    assert (again.created, again.sites_added, again.already_known) == (0, 0, 3)
    assert len(studies(engine)) == 3
    assert len([e for e in audit_trail(engine=engine, mrn="H-2") if e.action == "import"]) == 1


def test_a_study_already_imported_from_its_file_is_one_study_with_one_pending_site(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1")
    header = make_study("H-1", dt.date(2026, 11, 3), accession="ACC-1")
    (tmp_path / "files").mkdir()
    header.save_as(tmp_path / "files" / "hip.dcm", enforce_file_format=True)
    import_dicom_files(engine=engine, paths=[tmp_path / "files"], today=TODAY)
    orthanc.load(header)

    report = poll(engine=engine, settings=settings_for(orthanc), since=SINCE, today=TODAY)

    assert (report.created, report.sites_added, report.already_known) == (0, 0, 1)
    assert studies(engine) == [("H-1", "2026-11-03", "radiograph", "ACC-1")]
    assert [(s.site, s.side) for s in pending_sites(engine=engine)] == [("hip", "right")]


def test_a_study_of_two_series_gives_a_pending_site_per_side(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1")
    left = make_study("H-1", dt.date(2026, 11, 3), laterality="L", accession="ACC-1")
    orthanc.load(left)
    orthanc.load(make_study("H-1", dt.date(2026, 11, 3), accession="ACC-1",
                            study_uid=str(left.StudyInstanceUID)))  # fmt: skip

    report = poll(engine=engine, settings=settings_for(orthanc), since=SINCE, today=TODAY)

    assert report.created == 1 and report.sites_added == 2
    assert sites(engine) == [("H-1", "hip", "left", "pacs:"), ("H-1", "hip", "right", "pacs:")]


def spread(mrns: list[str], count: int) -> list[tuple[str, dt.date, str]]:
    """`count` studies over the first 18 days of November, at most 3 a day."""
    return [
        (mrns[i % len(mrns)], SINCE + dt.timedelta(days=i % 18), f"ACC-{i:03d}")
        for i in range(count)
    ]


def test_paging_through_a_server_that_caps_its_answers_still_reads_every_study(
    engine: Engine, orthanc_factory: Callable[..., OrthancServer], tmp_path: Path
) -> None:
    capped = orthanc_factory(limit_find_results=4)
    mrns = ["H-1", "H-2", "H-3"]
    tracked(engine, tmp_path, *mrns)
    wanted = spread(mrns, 40)
    capped.load_many(make_study(m, d, accession=a) for m, d, a in wanted)
    settings = settings_for(capped, HO_TRACKER_PACS_PAGE_LIMIT="4")

    report = poll(engine=engine, settings=settings, since=SINCE, today=TODAY)

    assert report.created == 40 and report.studies_seen == 40
    assert report.pages > 10  # the window was narrowed many times
    assert sorted(a for *_, a in studies(engine)) == sorted(a for *_, a in wanted)


def test_a_day_fuller_than_a_page_is_read_with_offset_paging(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1")
    orthanc.load_many(
        make_study("H-1", dt.date(2026, 11, 3), accession=f"ACC-{i}") for i in range(7)
    )
    settings = settings_for(orthanc, HO_TRACKER_PACS_PAGE_LIMIT="3")  # Orthanc uncapped

    report = poll(engine=engine, settings=settings, since=SINCE, today=TODAY)

    assert report.created == 7 and len(studies(engine)) == 7


def test_a_restart_midway_neither_misses_nor_repeats_a_study(
    engine: Engine, orthanc_factory: Callable[..., OrthancServer], tmp_path: Path
) -> None:
    capped = orthanc_factory(limit_find_results=4)
    mrns = ["H-1", "H-2"]
    tracked(engine, tmp_path, *mrns)
    wanted = spread(mrns, 30)
    capped.load_many(make_study(m, d, accession=a) for m, d, a in wanted)
    settings = settings_for(capped, HO_TRACKER_PACS_PAGE_LIMIT="4")
    # the first poll is stopped after some windows, as a tracker killed midway
    import tracker.pacs.feed as feed

    written = 0
    store = feed._Poll.store

    def store_then_stop(self: feed._Poll, window: feed._Window, through: dt.date | None) -> None:
        nonlocal written
        store(self, window, through)
        written += 1
        if written == 3:
            capped.stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feed._Poll, "store", store_then_stop)
        with pytest.raises(PacsFault, match="PACS not reachable at"):
            poll(engine=engine, settings=settings, since=SINCE, today=TODAY)
    halfway = read_state(engine=engine)
    assert halfway.complete_through is not None and halfway.complete_through < TODAY
    stored_halfway = studies(engine)
    assert 0 < len(stored_halfway) < 30
    # every stored study lies within the position: nothing written past it
    assert all(dt.date.fromisoformat(d) <= halfway.complete_through for _, d, *_ in stored_halfway)
    assert halfway.failures == 1 and halfway.last_error is not None

    capped.start()
    report = poll(engine=engine, settings=settings, today=TODAY)  # from the position

    assert report.window_start == halfway.complete_through
    assert sorted(a for *_, a in studies(engine)) == sorted(a for *_, a in wanted)
    assert read_state(engine=engine).failures == 0


def test_the_pacs_stopped_in_the_middle_of_a_poll_is_recorded_and_the_next_poll_completes(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1")
    first = make_study("H-1", dt.date(2026, 11, 3), accession="ACC-1")
    two_series = make_study("H-1", dt.date(2026, 11, 4), laterality="L", accession="ACC-2")
    orthanc.load_many([first, two_series])
    orthanc.load(make_study("H-1", dt.date(2026, 11, 4), accession="ACC-2",
                            study_uid=str(two_series.StudyInstanceUID)))  # fmt: skip
    settings = settings_for(orthanc)
    import tracker.pacs.feed as feed

    series = feed._Pacs.series

    def stop_then_ask(self: feed._Pacs, study_uid: str) -> object:
        orthanc.stop()  # between the study query and the series query of one window
        return series(self, study_uid)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feed._Pacs, "series", stop_then_ask)
        with pytest.raises(PacsFault):
            poll(engine=engine, settings=settings, since=SINCE, today=TODAY)
    assert studies(engine) == []  # the window's studies were not half-written
    state = read_state(engine=engine)
    assert state.last_error == f"PACS not reachable at {orthanc.dicomweb_url}"
    assert state.complete_through is None and state.failures == 1

    orthanc.start()
    report = poll(engine=engine, settings=settings, since=SINCE, today=TODAY)
    assert report.created == 2 and report.sites_added == 3
    assert read_state(engine=engine).last_success_at is not None


def test_a_poll_for_one_patient_asks_by_patient_id_and_keeps_the_position(
    engine: Engine, orthanc: OrthancServer, tmp_path: Path
) -> None:
    tracked(engine, tmp_path, "H-1", "H-2")
    orthanc.load_many([
        make_study("H-1", dt.date(2026, 11, 3), accession="ACC-1"),
        make_study("H-2", dt.date(2026, 11, 3), accession="ACC-2"),
    ])  # fmt: skip

    report = poll(engine=engine, settings=settings_for(orthanc), since=SINCE, today=TODAY,
                  mrn="H-2")  # fmt: skip

    assert report.studies_seen == 1 and studies(engine) == [
        ("H-2", "2026-11-03", "radiograph", "ACC-2")
    ]
    assert read_state(engine=engine).complete_through is None
