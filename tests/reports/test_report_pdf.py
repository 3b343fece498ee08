"""The PDFs render: every page, turned to PNG by pdftoppm (poppler-utils), has ink."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.reports.report_support import AS_OF, ink, report_db  # noqa: F401  (fixture)
from tracker.cli import run


def pages_as_png(pdf: Path, folder: Path) -> list[bytes]:
    tool = shutil.which("pdftoppm")
    assert tool, "pdftoppm is missing: apt-get install -y poppler-utils (.ci/run does)"
    subprocess.run([tool, "-r", "40", "-png", str(pdf), str(folder / "page")], check=True)
    return [p.read_bytes() for p in sorted(folder.glob("page*.png"))]


@pytest.mark.parametrize("mrn", ["H-RESECTED", "X-NOIMG"])
def test_patient_report_pdf_pages_are_not_blank(
    report_db: list[str],  # noqa: F811
    mrn: str,
    tmp_path: Path,
) -> None:
    assert run([*report_db, "report", mrn, "--as-of", AS_OF, "--format", "pdf",
                "--out", str(tmp_path)]) == 0  # fmt: skip
    pdf = tmp_path / f"{mrn}_{AS_OF}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    pages = pages_as_png(pdf, tmp_path)
    assert pages
    assert all(ink(page) > 0.005 for page in pages)


def test_board_pdf_pages_are_not_blank(
    report_db: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert run([*report_db, "report", "--board", "--as-of", AS_OF, "--format", "pdf",
                "--out", str(tmp_path)]) == 0  # fmt: skip
    pages = pages_as_png(tmp_path / f"board_{AS_OF}.pdf", tmp_path)
    assert len(pages) >= 2
    assert all(ink(page) > 0.005 for page in pages)
