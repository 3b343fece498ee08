"""The patient report shows exactly what `assess --json` says, site by site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reports.report_support import (  # noqa: F401  (fixture)
    AS_OF,
    assess_json,
    read_report,
    report_db,
    shown_value,
)
from tracker.cli import run

SHOWCASE = ["H-NONE", "H-EARLY", "H-MINERAL", "H-MATURE", "H-READY", "H-RESECTED", "H-FOP"]


def report_html(base: list[str], mrn: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert run([*base, "report", mrn, "--as-of", AS_OF, "--out", str(out)]) == 0
    assert "Wrote the report" in capsys.readouterr().out
    return (out / f"{mrn}_{AS_OF}.html").read_text(encoding="utf-8")


def as_assessed(site: dict[str, Any]) -> dict[str, Any]:
    """A site as the report shows it, put back in the shape of `assess --json`."""
    shown = site["shown"]
    parts = site.get("forecast_parts")
    return {
        "site": site["site"],
        "side": site["side"],
        "stage": shown["stage"],
        "brooker": shown_value(shown["brooker"]),
        "della_valle": shown_value(shown["della_valle"]),
        "activity": shown["activity"],
        "latest_ratio": shown_value(shown["latest_ratio"]),
        "readiness": site["readiness"],
        "criteria": site["criteria"],
        "flags": site["flags"],
        "forecast": {k: parts[k] for k in ("date", "low", "high")} | {"passed": "passed" in parts}
        if parts
        else None,
    }


@pytest.mark.parametrize("mrn", SHOWCASE)
def test_report_shows_every_criterion_and_value_that_assess_json_gives(
    report_db: list[str],  # noqa: F811
    mrn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = assess_json(report_db, mrn, capsys)
    report = read_report(report_html(report_db, mrn, tmp_path, capsys))
    assert [as_assessed(site) for site in report.sites] == expected["sites"]


def test_a_forecast_site_shows_its_date_and_interval_as_assess_does(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = assess_json(report_db, "H-MATURE", capsys)
    forecasts = [s["forecast"] for s in expected["sites"] if s["forecast"]]
    assert forecasts, "H-MATURE's right hip is forecast (data/demo_handwritten/README.md)"
    report = read_report(report_html(report_db, "H-MATURE", tmp_path, capsys))
    assert [as_assessed(s)["forecast"] for s in report.sites if s.get("forecast_parts")] == (
        forecasts
    )


def test_report_carries_header_as_of_disclaimer_figure_timeline_and_reminders(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    html = report_html(report_db, "H-RESECTED", tmp_path, capsys)
    report = read_report(html)
    assert {"patient", "disclaimer", "summary", "timeline"} <= report.ids
    assert "supports a surgical decision; it does not make one" in html
    assert "spinal cord injury 2023-05-20" in html  # injuries with dates
    assert f"<strong>{AS_OF}</strong>" in html
    assert "Report made" in html
    assert report.images and all(src.startswith("data:image/png;base64,") for src in report.images)
    # reminders: the table exists but nothing was planned yet
    assert "reminders-none" in report.ids
    assert "resection right hip" in html  # the timeline, in words


def test_planned_reminders_appear_in_the_report_and_the_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.reports.report_support import DEMO

    base = ["--database-url", f"sqlite:///{tmp_path / 'r.db'}"]
    assert run([*base, "import", str(DEMO)]) == 0
    assert run([*base, "reminders", "plan", "--as-of", "2026-11-01"]) == 0
    capsys.readouterr()
    html = report_html(base, "H-MINERAL", tmp_path, capsys)
    assert 'id="reminders"' in html
    assert run([*base, "report", "--board", "--as-of", "2027-06-01", "--out", str(tmp_path)]) == 0
    board = (tmp_path / "board_2027-06-01.html").read_text(encoding="utf-8")
    assert 'id="reminders"' in board  # reminders due before 2027-06-01 are overdue
