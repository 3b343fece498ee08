"""The reports speak in words: no vocabulary token in the PDF or the HTML a person
reads, every printed page names the patient (name, birth date, MRN), and the web app
opens the reports in the browser instead of downloading them."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.reports.report_support import AS_OF, report_db  # noqa: F401  (fixture)
from tracker import labels
from tracker.cli import run

# Every token that has words: none of them may be shown as it is stored.
TOKENS = sorted(t for t in labels._ALL if "_" in t)
TOKEN = re.compile(r"\b(" + "|".join(map(re.escape, TOKENS)) + r")\b")
# Abbreviations stored in lower case, shown in capitals.
LOWER_ABBREVIATION = re.compile(r"\b(ct|mri|spect|pet|alp|crp|ck|fop)\b")
# The demo's patients as their header shows them (data/demo/patients.csv).
PATIENTS = {
    "H-RESECTED": ("NOVAK, Petra", "1981-09-30"),
    "H-FOP": ("SATO, Yuki", "2001-04-18"),
}


def pdf_pages(pdf: Path) -> list[str]:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: apt-get install -y poppler-utils (.ci/run does)"
    text = subprocess.run(
        [tool, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return [" ".join(page.split()) for page in text.split("\f") if page.strip()]


class ShownText(HTMLParser):
    """The text a reader sees: text nodes outside <style> and <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def shown_text(html: str) -> str:
    reader = ShownText()
    reader.feed(html)
    return " ".join(" ".join(reader.parts).split())


def assert_no_tokens(text: str, where: str) -> None:
    assert not TOKEN.findall(text), f"{where} shows tokens: {sorted(set(TOKEN.findall(text)))}"
    lower = LOWER_ABBREVIATION.findall(text)
    assert not lower, f"{where} shows abbreviations in lower case: {sorted(set(lower))}"


@pytest.mark.parametrize("mrn", sorted(PATIENTS))
def test_every_pdf_page_names_the_patient_and_shows_no_token(
    report_db: list[str],  # noqa: F811
    mrn: str,
    tmp_path: Path,
) -> None:
    assert run([*report_db, "report", mrn, "--as-of", AS_OF, "--format", "pdf",
                "--out", str(tmp_path)]) == 0  # fmt: skip
    pages = pdf_pages(tmp_path / f"{mrn}_{AS_OF}.pdf")
    assert len(pages) >= 2, "the patient pages are checked beyond the first"
    name, born = PATIENTS[mrn]
    for number, page in enumerate(pages, start=1):
        assert f"{name} · born {born} · MRN {mrn}" in page, f"page {number} of {mrn}"
        assert_no_tokens(page, f"page {number} of {mrn}")


def test_the_html_report_reads_in_words(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert run([*report_db, "report", "H-RESECTED", "--as-of", AS_OF,
                "--out", str(tmp_path)]) == 0  # fmt: skip
    html = (tmp_path / f"H-RESECTED_{AS_OF}.html").read_text(encoding="utf-8")
    text = shown_text(html)
    assert_no_tokens(text, "the HTML report")
    assert "Radiographic maturity" in text and "required when known" in text
    assert "well-defined cortex" in text  # a finding read out, not "cortex well_defined"
    assert "right hip" in text and "spinal unit" in text
    assert "@media print" in html  # a print stylesheet for the browser


def test_board_pdf_names_itself_on_every_page_and_shows_no_token(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert run([*report_db, "report", "--board", "--as-of", AS_OF, "--format", "pdf",
                "--out", str(tmp_path)]) == 0  # fmt: skip
    pages = pdf_pages(tmp_path / f"board_{AS_OF}.pdf")
    assert len(pages) >= 2
    for number, page in enumerate(pages, start=1):
        assert "HO cohort board" in page and f"as of {AS_OF}" in page, f"board page {number}"
        assert_no_tokens(page, f"board page {number}")


@pytest.fixture(scope="module")
def web_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from tests.web.web_support import DEMO, add_role_users
    from tracker.interchange.csv_import import import_folder
    from tracker.store import database

    engine = database.make_engine(f"sqlite:///{tmp_path_factory.mktemp('inline') / 't.db'}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    add_role_users(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize(("fmt", "media"), [("html", "text/html"), ("pdf", "application/pdf")])
def test_the_web_app_opens_reports_in_the_browser(web_store: Engine, fmt: str, media: str) -> None:
    from tests.web.web_support import make_client, sign_in

    with make_client(web_store) as client:
        sign_in(client, "surgeon")
        report: TestClient = client
        answer = report.get(f"/patients/H-READY/report.{fmt}?as_of={AS_OF}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media)
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("inline;") and "attachment" not in disposition
    assert f'filename="H-READY_{AS_OF}.{fmt}"' in disposition
