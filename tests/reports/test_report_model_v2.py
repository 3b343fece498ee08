"""Model v2 in the reports (HTML and PDF): "no HO" for a site without HO, a passed
forecast asks for a new scan, lapsed reminders in their own part of the history and
never on the board's overdue list, and the model and protocol in every footer."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.reports.report_support import read_report
from tests.web.web_support import (
    DEMO,
    V2_AS_OF,
    V2_LATEST_SCAN,
    V2_MRN,
    add_v2_patient,
    plan_reminders,
)
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reports.render import render_board_html, render_patient_html
from tracker.services.assessment import assess_one
from tracker.services.reports import (
    board_report,
    patient_report,
    write_board_report,
    write_patient_report,
)
from tracker.staging import to_json


@pytest.fixture(scope="module")
def v2_store(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    from tracker.store import database

    engine = database.make_engine(f"sqlite:///{tmp_path_factory.mktemp('v2') / 'tracker.db'}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    add_v2_patient(engine)
    plan_reminders(engine)
    return engine


def _table(html: str, table_id: str) -> str:
    found = re.search(rf'<table[^>]* id="{table_id}".*?</table>', html, re.S)
    assert found, f"no table {table_id}"
    return found.group(0)


def pdf_pages(pdf: Path) -> list[str]:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: apt-get install -y poppler-utils (.ci/run does)"
    text = subprocess.run(
        [tool, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return [page for page in text.split("\f") if page.strip()]


def test_report_shows_a_site_without_ho_as_no_ho_and_a_passed_forecast_as_rescan_due(
    v2_store: Engine,
) -> None:
    expected = to_json(assess_one(engine=v2_store, mrn=V2_MRN, as_of=V2_AS_OF))
    html = render_patient_html(patient_report(engine=v2_store, mrn=V2_MRN, as_of=V2_AS_OF))
    sites = {(s["site"], s["side"]): s for s in read_report(html).sites}
    assert sites[("hip", "right")]["readiness"] == "not_applicable"
    assert (
        '<span class="verdict not_applicable" data-field="readiness" '
        'data-readiness="not_applicable">no HO</span>'
    ) in html
    knee = re.search(r'<section class="site" id="site-knee-left".*?</section>', html, re.S)
    assert knee
    forecast = expected["sites"][1]["forecast"]
    assert forecast["passed"] is True
    assert (
        '<strong class="passed" data-forecast="passed">forecast date already passed: '
        "a new scan is due</strong>"
    ) in knee.group(0)
    assert sites[("knee", "left")]["forecast_parts"]["date"] == forecast["date"]
    summary = _table(html, "summary")
    assert "forecast date already passed: a new scan is due" in summary
    assert forecast["date"] not in summary  # not presented as a date to come


def test_report_lists_lapsed_reminders_apart_from_the_outstanding_ones(
    v2_store: Engine,
) -> None:
    report = patient_report(engine=v2_store, mrn=V2_MRN, as_of=V2_AS_OF)
    assert report.lapsed and report.reminders == ()
    html = render_patient_html(report)
    assert '<p id="reminders-none">No outstanding reminders.</p>' in html
    lapsed = _table(html, "lapsed")
    rows = re.findall(r'<tr class="lapsed">(.*?)</tr>', lapsed, re.S)
    assert len(rows) == len(report.lapsed) == 3
    assert all("lapsed — long past when first planned, not sent" in row for row in rows)


def test_report_and_board_footers_name_the_model_and_protocol_as_assess_does(
    v2_store: Engine, tmp_path: Path
) -> None:
    clinic = Protocol(activity=type(Protocol().activity)(tolerance=0.12))
    expected = to_json(assess_one(engine=v2_store, mrn="H-MATURE", as_of=V2_AS_OF, protocol=clinic))
    assert expected["protocol_fingerprint"] != Protocol().fingerprint
    footer = (
        f'model version <span data-field="model_version">{expected["model_version"]}</span> '
        'with protocol fingerprint <span class="nowrap" data-field="protocol_fingerprint">'
        f"{expected['protocol_fingerprint']}</span>"
    )
    report = patient_report(engine=v2_store, mrn="H-MATURE", as_of=V2_AS_OF, protocol=clinic)
    board = board_report(engine=v2_store, as_of=V2_AS_OF, protocol=clinic, max_panels=2)
    for html in (render_patient_html(report), render_board_html(board)):
        assert footer in " ".join(html.split())
    running = f"model {expected['model_version']}, protocol {expected['protocol_fingerprint']}"
    for pdf in (
        write_patient_report(report, tmp_path, "pdf"),
        write_board_report(board, tmp_path, "pdf"),
    ):
        pages = pdf_pages(pdf)
        assert len(pages) >= 2
        assert all(running in " ".join(page.split()) for page in pages), pdf.name


def test_board_report_suggests_a_rescan_for_a_passed_forecast_and_keeps_it_off_soon(
    v2_store: Engine,
) -> None:
    board = board_report(engine=v2_store, as_of=V2_AS_OF, max_panels=0)
    assert all(not (x.site["forecast"] or {}).get("passed") for x in board.soon)
    mine = [x for x in board.rescan if x.mrn == V2_MRN]
    assert [(x.site["site"], x.site["side"], str(x.latest_scan)) for x in mine] == [
        ("knee", "left", V2_LATEST_SCAN)
    ]
    html = render_board_html(board)
    assert V2_MRN not in _table(html, "soon")
    rescan = _table(html, "rescan")
    assert f'<td class="nowrap" data-field="latest_scan">{V2_LATEST_SCAN}</td>' in rescan
    date = mine[0].site["forecast"]["date"]
    assert f'<span class="passed" data-field="forecast_date">{date}</span>' in rescan


def test_board_report_gives_sites_without_ho_their_own_row_not_a_verdict(
    v2_store: Engine,
) -> None:
    board = board_report(engine=v2_store, as_of=V2_AS_OF, max_panels=0)
    html = render_board_html(board)
    matrix = _table(html, "matrix")
    assert re.findall(r"<th>([^<]+)</th>", matrix.split("<tbody>")[0]) == [
        "Stage",
        "ready",
        "not ready",
        "insufficient data",
    ]
    no_ho = re.search(
        r'<td colspan="3" data-stage="none" data-readiness="not_applicable">(.*?)</td>',
        matrix,
        re.S,
    )
    assert no_ho
    without = [x for x in board.sites if x.site["readiness"] == "not_applicable"]
    assert without and all(x.site["stage"] == "none" for x in without)
    assert no_ho.group(1).startswith(f"no HO, nothing to resect: <strong>{len(without)}</strong>")
    assert f"{V2_MRN} right hip" in no_ho.group(1)
    assert 'data-readiness="not_applicable"' not in matrix.replace(no_ho.group(0), "")


def test_board_report_overdue_reminders_never_include_lapsed_ones(v2_store: Engine) -> None:
    board = board_report(engine=v2_store, as_of=V2_AS_OF, max_panels=0)
    assert board.reminders
    assert {m.status for m in board.reminders} <= {"pending", "due", "sent"}
    html = render_board_html(board)
    assert V2_MRN not in _table(html, "reminders")  # all of V-PASSED's reminders lapsed
