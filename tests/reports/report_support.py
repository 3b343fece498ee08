"""Helpers for the report tests: the demo cohort plus a few awkward patients in one
SQLite database, the CLI run against it, and a reader for the reports' HTML."""

from __future__ import annotations

import json
from datetime import date, timedelta
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import write_csv
from tracker.cli import run

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"
AS_OF = "2026-10-31"
MANY_SITES = (
    [
        (site, side)
        for site in (
            "hip",
            "knee",
            "elbow",
            "shoulder",
            "thigh",
            "pelvis",
            "ankle",
            "wrist",
            "hand",
            "foot",
            "jaw",
            "other",
        )
        for side in ("left", "right")
    ]
    + [("spine", "midline"), ("pelvis", "midline"), ("jaw", "midline"), ("other", "midline")]
    + [
        ("thigh", "midline"),
        ("knee", "midline"),
    ]
)

IMAGING_HEADER = [
    "mrn", "date", "modality", "site", "side", "ho", "soft_tissue", "calcification", "cortex",
    "trabeculae", "vascularity", "uptake", "brooker", "della_valle", "size_mm", "accession",
    "notes",
]  # fmt: skip
SCAN_HEADER = [
    "mrn", "date", "site", "side", "phase", "ratio", "lesion_counts", "reference_counts",
    "reference_region",
]  # fmt: skip


def awkward_folder(folder: Path) -> Path:
    """X-NOIMG: an injury, a course and a lab, no imaging. X-ONE: one site, one scan.
    X-MANY: 30 sites, a third of them with three delayed-phase scans."""
    write_csv(
        folder,
        "patients.csv",
        [
            {"mrn": m, "birth_date": "1980-05-01", "sex": "male", "family_name": "Test",
             "given_name": m, "team": ""}
            for m in ("X-NOIMG", "X-ONE", "X-MANY")
        ],
    )  # fmt: skip
    write_csv(
        folder,
        "injuries.csv",
        [
            {"mrn": m, "kind": "spinal_cord_injury", "date": "2025-06-01", "notes": ""}
            for m in ("X-NOIMG", "X-ONE", "X-MANY")
        ],
    )
    write_csv(
        folder,
        "treatments.csv",
        [
            {"mrn": "X-NOIMG", "agent": "indomethacin", "intent": "prophylaxis",
             "start_date": "2025-06-20", "end_date": "2025-07-11", "planned_weeks": 3,
             "dose": 75, "dose_unit": "mg/day", "site": "", "side": ""},
        ],
    )  # fmt: skip
    write_csv(
        folder,
        "labs.csv",
        [
            {"mrn": "X-NOIMG", "date": "2026-09-01", "analyte": "alp", "value": 90,
             "unit": "U/L", "ref_low": 30, "ref_high": 130},
        ],
    )  # fmt: skip
    imaging: list[dict[str, object]] = [
        {"mrn": "X-ONE", "date": "2026-08-01", "modality": "radiograph", "site": "knee",
         "side": "left", "ho": "present", "calcification": "peripheral"},
    ]  # fmt: skip
    scans: list[dict[str, object]] = [
        {"mrn": "X-ONE", "date": "2026-08-10", "site": "knee", "side": "left",
         "phase": "delayed", "ratio": 4.2},
    ]  # fmt: skip
    first = date(2025, 8, 1)
    for n, (site, side) in enumerate(MANY_SITES):
        imaging.append(
            {"mrn": "X-MANY", "date": (first + timedelta(days=7 * n)).isoformat(),
             "modality": "radiograph", "site": site, "side": side, "ho": "present",
             "calcification": "zonal", "cortex": "partial"}
        )  # fmt: skip
        if n % 3 == 0:
            for k, ratio in enumerate((6.0 - n / 20, 4.1, 3.3)):
                scans.append(
                    {"mrn": "X-MANY", "date": (first + timedelta(days=7 * n + 90 * k)).isoformat(),
                     "site": site, "side": side, "phase": "delayed", "ratio": round(ratio, 2)}
                )  # fmt: skip
    write_csv(folder, "imaging.csv", imaging, IMAGING_HEADER)
    write_csv(folder, "bone_scans.csv", scans, SCAN_HEADER)
    return folder


@pytest.fixture(scope="session")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """CLI options for a SQLite database holding the demo cohort and the awkward
    patients (built once per test session)."""
    folder = tmp_path_factory.mktemp("report_db")
    base = ["--database-url", f"sqlite:///{folder / 'tracker.db'}"]
    assert run([*base, "import", str(DEMO)]) == 0
    assert run([*base, "import", str(awkward_folder(folder / "awkward"))]) == 0
    return base


def assess_json(base: list[str], mrn: str, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert run([*base, "assess", mrn, "--as-of", AS_OF, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# --- reading a report back ---


class ReportReader(HTMLParser):
    """The values a patient report shows, site by site, as `assess --json` spells
    them: every element with data-field inside a site section, and its criteria. Where
    the report shows words, its data-value holds the token, and that is read."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sites: list[dict[str, Any]] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self._stack: list[tuple[str, str | None]] = []  # (tag, field being read)
        self._text: dict[str, list[str]] = {}
        self._values: dict[str, str] = {}  # data-value: the token behind the words shown
        self._criterion: dict[str, str] | None = None
        self._forecast_part: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img" and a.get("src"):
            self.images.append(str(a["src"]))
        if tag == "section" and a.get("data-site"):
            self.sites.append(
                {"site": a["data-site"], "side": a["data-side"], "criteria": [], "flags": []}
            )
        if tag == "tr" and a.get("data-criterion"):
            self._criterion = {}
            self.sites[-1]["criteria"].append(self._criterion)
        if a.get("data-flag"):
            self.sites[-1]["flags"].append(a["data-flag"])
        if a.get("data-forecast"):
            self._forecast_part = a["data-forecast"]
        if a.get("data-readiness") and self.sites:  # the verdict's token; its words are shown
            self.sites[-1]["readiness"] = a["data-readiness"]
        field = a.get("data-field")
        self._stack.append((tag, field))
        if field:
            self._text[field] = []
            if a.get("data-value") is not None:  # words are shown; the token is kept here
                self._values[field] = str(a["data-value"])

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, field = self._stack.pop()
            if field and self.sites:
                text = " ".join("".join(self._text.pop(field, [])).split())
                text = self._values.pop(field, text)
                if self._criterion is not None and field in ("name", "level", "status", "evidence"):
                    self._criterion[field] = text
                elif field not in ("flags",):
                    self.sites[-1].setdefault("shown", {})[field] = text
            if open_tag == tag:
                break
        if tag == "tr":
            self._criterion = None

    def handle_data(self, data: str) -> None:
        for buffer in self._text.values():
            buffer.append(data)
        if self._forecast_part and self.sites:
            self.sites[-1].setdefault("forecast_parts", {})[self._forecast_part] = data.strip()
            self._forecast_part = None


def read_report(html: str) -> ReportReader:
    reader = ReportReader()
    reader.feed(html)
    reader.close()
    return reader


def shown_value(text: str) -> Any:
    """A shown cell back as JSON: the dash is null, numbers are numbers."""
    if text == "—":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def ink(png: bytes) -> float:
    """The share of pixels that are not (near) white: 0 for a blank image."""
    image = Image.open(BytesIO(png)).convert("L")
    histogram = image.histogram()
    dark = sum(histogram[:240])
    return dark / (image.width * image.height)
