"""Reports as HTML (Jinja2) and PDF (WeasyPrint): the patient report and the cohort
board (issue 5). The templates show the engine's `to_json` values as they are, so a
report can never say something `assess --json` does not.

Figures are embedded as PNG data URIs, so one HTML file is the whole report (it can
be mailed or filed); the PDF gets them at print resolution.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment
from markupsafe import Markup

from tracker.reports.content import (
    DISCLAIMER,
    BoardReport,
    BoardSite,
    PatientHeader,
    PatientReport,
)
from tracker.reports.figures import (
    BOARD_PANELS_PER_PAGE,
    board_figure,
    figure_bytes,
    trend_pages,
)
from tracker.reports.trends import resection_motion
from tracker.staging.readiness import Readiness
from tracker.staging.stage import Stage
from tracker.templating import jinja_environment

Medium = Literal["screen", "print"]


def _version() -> str:
    try:
        return metadata.version("ho-tracker")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown version"


VERSION = _version()
TEMPLATES = Path(__file__).resolve().parent / "templates"
DPI = {"screen": 130, "print": 200}


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = jinja_environment(TEMPLATES)
    env.filters["value"] = _value
    env.filters["ratio"] = _ratio
    env.filters["css_string"] = _css_string
    env.filters["degrees"] = _degrees
    env.filters["degree_change"] = _degree_change
    return env


def _degrees(value: float) -> str:
    """A goniometer reading: '100°', '12.5°'."""
    return f"{value:.1f}".removesuffix(".0") + "°"


def _degree_change(value: float | None) -> str:
    """Degrees gained or lost: '+25°', '−30°' (a minus sign, not a hyphen), '0°';
    a dash when one side was not measured."""
    if value is None:
        return "—"
    sign = "+" if value > 0 else "−" if value < 0 else ""
    return sign + _degrees(abs(value))


def _value(value: Any) -> str:
    """A JSON value as the report prints it: null as a dash, anything else as is."""
    return "—" if value is None else str(value)


def _ratio(value: float | None) -> str:
    """A ratio for a table people scan (the board): two decimals."""
    return "—" if value is None else f"{value:.2f}"


def _css_string(text: str) -> Markup:
    """Text for a CSS string in the page footer: every character that could end the
    string or the style element is written as a CSS escape."""
    safe = "".join(
        ch if ch.isalnum() or ch in " ·-.:,()" else f"\\{ord(ch):06x}" for ch in str(text)
    )
    return Markup(safe)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def _common(
    as_of: Any, made_at: datetime, protocol: str, model_version: int, fingerprint: str
) -> dict[str, Any]:
    return {
        "as_of": as_of.isoformat(),
        "made_at": _stamp(made_at),
        "protocol": protocol,
        "model_version": model_version,
        "protocol_fingerprint": fingerprint,
        "version": VERSION,
        "disclaimer": DISCLAIMER,
    }


def figure_uris(figures: Iterable[Any], medium: Medium) -> list[str]:
    return [
        "data:image/png;base64,"
        + base64.b64encode(figure_bytes(fig, "png", DPI[medium])).decode("ascii")
        for fig in figures
    ]


# --- the patient report ---------------------------------------------------------------


def patient_line(header: PatientHeader) -> str:
    """Whom a page is about, for the running header of every printed page: name, birth
    date and MRN, so a loose page 3 cannot be filed with the wrong patient."""
    born = f"born {header.birth_date.isoformat()}" if header.birth_date else "birth date unknown"
    return " · ".join(
        part for part in (header.name or "name not recorded", born, f"MRN {header.mrn}")
    )


def render_patient_html(report: PatientReport, medium: Medium = "screen") -> str:
    """The patient report as one self-contained HTML page."""
    sites = report.assessment["sites"]
    return (
        environment()
        .get_template("patient.html.j2")
        .render(
            r=report,
            patient_line=patient_line(report.header),
            sites=sites,
            curves=[site.curve is not None for site in report.trend.sites],
            motion=[resection_motion(site) for site in report.trend.sites],
            figures=figure_uris(trend_pages(report.trend), medium),
            **_common(
                report.as_of,
                report.made_at,
                report.protocol,
                report.model_version,
                report.protocol_fingerprint,
            ),
        )
    )


# --- the cohort board -------------------------------------------------------------------


def render_board_html(board: BoardReport, medium: Medium = "screen") -> str:
    """The cohort board as one self-contained HTML page."""
    # Sites with HO by stage and verdict; a site without HO (stage none, readiness
    # not_applicable) has nothing to resect, so it gets a row of its own, not a verdict.
    no_ho = Readiness.not_applicable.value
    verdicts = [r.value for r in Readiness if r.value != no_ho]
    stages = [s.value for s in reversed(Stage) if s != Stage.none]
    matrix: dict[str, dict[str, list[BoardSite]]] = {s: {v: [] for v in verdicts} for s in stages}
    without_ho: list[BoardSite] = []
    for item in board.sites:
        if item.site["stage"] == Stage.none.value:
            without_ho.append(item)
        else:
            matrix[item.site["stage"]][item.site["readiness"]].append(item)
    counts = {v.value: sum(1 for x in board.sites if x.site["readiness"] == v) for v in Readiness}
    pages = [
        board.panels[i : i + BOARD_PANELS_PER_PAGE]
        for i in range(0, len(board.panels), BOARD_PANELS_PER_PAGE)
    ]
    figures = [
        board_figure(
            page,
            title=f"Delayed-phase uptake ratios as of {board.as_of.isoformat()}"
            + (f" (page {n} of {len(pages)})" if len(pages) > 1 else ""),
        )
        for n, page in enumerate(pages, start=1)
    ]
    return (
        environment()
        .get_template("board.html.j2")
        .render(
            b=board,
            verdicts=verdicts,
            stages=stages,
            matrix=matrix,
            without_ho=without_ho,
            counts=counts,
            figures=figure_uris(figures, medium),
            **_common(
                board.as_of,
                board.made_at,
                board.protocol,
                board.model_version,
                board.protocol_fingerprint,
            ),
        )
    )


# --- PDF ----------------------------------------------------------------------------------


def html_to_pdf(html: str) -> bytes:
    """Print the HTML to PDF (A4) with WeasyPrint.

    WeasyPrint needs Pango at run time (Debian: libpango-1.0-0, libpangoft2-1.0-0);
    without it, say so in one sentence rather than a traceback.
    """
    try:
        from weasyprint import HTML
    except OSError as error:  # the Python package is there, Pango is not
        from tracker.errors import TrackerError

        raise TrackerError(
            "PDF output needs the Pango libraries (Debian: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0); use --format html meanwhile. ({error})"
        ) from None
    pdf = HTML(string=html).write_pdf()
    assert pdf is not None
    return bytes(pdf)
