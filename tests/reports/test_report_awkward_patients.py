"""Bad input gives a sensible figure and report: no imaging, one scan, 30 sites; and
the command's mistakes get one clear sentence."""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reports.report_support import (  # noqa: F401  (fixture)
    AS_OF,
    MANY_SITES,
    assess_json,
    ink,
    read_report,
    report_db,
)
from tracker.cli import run
from tracker.reports.figures import artists_with_gid, figure_bytes, trend_figure
from tracker.services.reports import patient_report, stored_reminders
from tracker.store import database


def engine_of(base: list[str]) -> sa.Engine:
    return database.make_engine(base[1])


def images_of(html: str) -> list[bytes]:
    return [base64.b64decode(src.split(",", 1)[1]) for src in read_report(html).images]


def write_report(base: list[str], mrn: str, out: Path, *extra: str) -> Path:
    assert run([*base, "report", mrn, "--as-of", AS_OF, "--out", str(out), *extra]) == 0
    return out


def test_a_patient_without_imaging_gets_a_timeline_figure_and_a_report_without_sites(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    html = (write_report(report_db, "X-NOIMG", tmp_path) / f"X-NOIMG_{AS_OF}.html").read_text()
    report = read_report(html)
    assert report.sites == [] and "no-sites" in report.ids
    (png,) = images_of(html)
    assert ink(png) > 0.01
    trend = patient_report(
        engine=engine_of(report_db), mrn="X-NOIMG", as_of=date.fromisoformat(AS_OF)
    ).trend
    fig = trend_figure(trend)
    assert artists_with_gid(fig, "timeline") and artists_with_gid(fig, "course")
    assert artists_with_gid(fig, "injury")


def test_a_site_with_one_scan_shows_the_point_and_no_curve(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = assess_json(report_db, "X-ONE", capsys)
    assert expected["sites"][0]["activity"] == "single_scan"
    report = patient_report(engine=engine_of(report_db), mrn="X-ONE", as_of=date(2026, 10, 31))
    fig = trend_figure(report.trend)
    (points,) = artists_with_gid(fig, "delayed/0")
    assert list(points.get_ydata()) == [4.2]  # type: ignore[attr-defined]
    assert not artists_with_gid(fig, "curve") and not artists_with_gid(fig, "forecast")
    assert ink(figure_bytes(fig, "png", dpi=60)) > 0.01
    html = (write_report(report_db, "X-ONE", tmp_path) / f"X-ONE_{AS_OF}.html").read_text()
    assert [s["site"] for s in read_report(html).sites] == ["knee"]


def test_thirty_sites_give_thirty_sections_and_paged_figures(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert len(MANY_SITES) == 30
    html = (write_report(report_db, "X-MANY", tmp_path) / f"X-MANY_{AS_OF}.html").read_text()
    report = read_report(html)
    assert len(report.sites) == 30
    pngs = images_of(html)
    assert len(pngs) == 10  # three panels to a page
    assert all(ink(png) > 0.01 for png in pngs)


def test_trend_figure_alone_as_svg_and_png(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    write_report(report_db, "H-READY", tmp_path, "--format", "svg")
    svg = (tmp_path / f"H-READY_{AS_OF}.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "delayed-phase ratio" in svg
    write_report(report_db, "H-READY", tmp_path, "--format", "png")
    assert ink((tmp_path / f"H-READY_{AS_OF}.png").read_bytes()) > 0.01


def test_reminders_are_not_available_without_the_reminder_table(tmp_path: Path) -> None:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    assert stored_reminders(engine=engine) is None  # no schema at all: no reminder table


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report"], "Name a patient"),
        (["report", "H-READY", "--board"], "not both"),
        (["report", "H-READY", "--format", "docx"], "not a report format"),
        (["report", "NOPE"], "No patient with mrn 'NOPE'"),
        (["report", "H-READY", "--as-of", "31/10/2026"], "not a date"),
        (["report", "H-READY", "--as-of", "1990-01-01"], "before the first record"),
    ],
)
def test_report_mistakes_get_one_sentence_and_exit_code_2(
    report_db: list[str],  # noqa: F811
    args: list[str],
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run([*report_db, *args, "--out", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
