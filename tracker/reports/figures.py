"""Maturation-trend figures: one panel per site, as a surgeon reads them at a case
conference (issue 5). Matplotlib's Agg backend, PNG or SVG.

Each panel shows the delayed-phase uptake ratio (lesion over normal bone) with the
fitted recovery curve and the forecast with its 80% interval; blood-pool and flow
ratios as secondary markers; the Kim threshold; every imaging study of the site as a
marker by modality (filled where it showed HO); the stage periods, shaded from the
day each stage was first shown; treatment courses as labelled spans; resections as
vertical lines; the day the advisory waiting time is met; dates below and months
since injury above. Everything drawn comes from a `trends.PatientTrend`, which takes
it from the engine; nothing here judges a stage or readiness.

Colours are Okabe & Ito's palette (distinguishable with the common colour-vision
deficiencies), and every colour is paired with a marker shape or a line style, so
the figure survives a grey-scale printer too. Sizes are set for A4 (7 inches of
text width, fonts of 6.5 to 9.5 points) and read as well on a screen.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: never open a window

from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from tracker.labels import capital, place, words  # noqa: E402
from tracker.reports import panels  # noqa: E402
from tracker.reports.panels import (  # noqa: E402
    READINESS_COLOURS,
    READINESS_WORDS,
    VERMILLION,
    WIDTH_IN,
    Legend,
    PanelPlan,
)
from tracker.reports.trends import PatientTrend, SiteTrend  # noqa: E402

RC: dict[Any, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "svg.fonttype": "none",  # text stays text in SVG: searchable, editable
    "svg.hashsalt": "ho-tracker",  # the same figure gives the same SVG
}
# rcParams are process-global: the web app draws from worker threads, so one figure
# is styled (and saved) at a time, or one thread's restore would undo another's style.
_STYLE_LOCK = threading.RLock()


@contextmanager
def _styled() -> Iterator[None]:
    with _STYLE_LOCK, matplotlib.rc_context(RC):
        yield


SUPTITLE_IN = 0.3
LEGEND_ROW_IN = 0.165
LEGEND_PAD_IN = 0.12
LEGEND_COLUMNS = 3
SMALL_PANEL_IN = 1.62  # a board cell: title lines, axes, date labels
SMALL_ABOVE_IN = 0.38
SMALL_BELOW_IN = 0.26
SMALL_LEFT_IN = 0.36  # ratio tick labels
SMALL_RIGHT_IN = 0.12
BOARD_LEFT_IN = 0.22  # the shared ratio label
BOARD_COLUMNS = 3
BOARD_PANELS_PER_PAGE = 15  # 5 rows of 3: one A4 page


# --- the patient figure -------------------------------------------------------------


def trend_figure(trend: PatientTrend, sites: Sequence[SiteTrend] | None = None) -> Figure:
    """One figure with a panel per site (all of them unless `sites` are given), or one
    panel of the patient's timeline when no site has evidence."""
    chosen = list(trend.sites if sites is None else sites)
    with _styled():
        return _patient_figure(trend, chosen, page=None)


def trend_pages(trend: PatientTrend, per_page: int = 3) -> list[Figure]:
    """The trend figure cut into pages of at most `per_page` panels, each fitting an A4
    page, so a patient with many sites prints legibly; always at least one page."""
    sites = list(trend.sites)
    if not sites:
        return [trend_figure(trend)]
    chunks = _page_chunks(sites, [panels.plan_site(s, trend).height_in for s in sites], per_page)
    with _styled():
        return [
            _patient_figure(trend, chunk, page=(n + 1, len(chunks)))
            for n, chunk in enumerate(chunks)
        ]


PAGE_IN = 10.5  # the tallest figure an A4 page takes with the report's margins
# room for the panels on a page, whatever legend they get (every entry, in columns)
PANELS_PAGE_IN = (
    PAGE_IN
    - SUPTITLE_IN
    - LEGEND_PAD_IN
    - math.ceil(len(panels.LEGEND_ORDER) / LEGEND_COLUMNS) * LEGEND_ROW_IN
)


def _page_chunks(
    sites: list[SiteTrend], heights: list[float], per_page: int
) -> list[list[SiteTrend]]:
    """At most `per_page` panels a page, fewer where range-of-motion panels make them
    taller than a page holds; a page always takes at least one panel."""
    chunks: list[list[SiteTrend]] = []
    used = 0.0
    for site, height in zip(sites, heights, strict=True):
        if not chunks or len(chunks[-1]) >= per_page or used + height > PANELS_PAGE_IN:
            chunks.append([])
            used = 0.0
        chunks[-1].append(site)
        used += height
    return chunks


def _patient_figure(
    trend: PatientTrend, sites: list[SiteTrend], page: tuple[int, int] | None
) -> Figure:
    """Panels stacked at fixed sizes in inches (no layout engine: faster, and the same
    page whatever the data), the legend below them."""
    plans = [panels.plan_site(site, trend) for site in sites] or [panels.plan_timeline(trend)]
    legend = Legend()
    fig = Figure(figsize=(WIDTH_IN, 1.0))  # sized once the legend is known
    axes = [fig.add_axes((0.0, 0.0, 1.0, 1.0)) for _ in plans]
    # a range-of-motion panel under each site that has measurements, on its time axis
    motion: list[Axes | None] = [
        fig.add_axes((0.0, 0.0, 1.0, 1.0), sharex=ax) if plan.has_motion else None
        for ax, plan in zip(axes, plans, strict=True)
    ]
    if not sites:
        panels.draw_timeline_only(axes[0], trend, plans[0], legend)
    for ax, site, plan, under in zip(axes, sites, plans, motion, strict=False):
        panels.draw_site(ax, site, plan, trend.as_of, legend)
        ax.set_title(
            f"{capital(place(site.site, site.side))}: {_stage_words(site)}",
            loc="left",
            fontweight="bold",
        )
        _readiness_title(ax, site)
        if under is not None:
            panels.draw_motion(under, site, plan, trend.as_of)
            ax.tick_params(axis="x", labelbottom=False)  # the dates go under the motion
    handles, labels = legend.ordered()
    legend_in = LEGEND_PAD_IN + math.ceil(len(labels) / LEGEND_COLUMNS) * LEGEND_ROW_IN
    height = SUPTITLE_IN + sum(p.height_in for p in plans) + legend_in
    fig.set_size_inches(WIDTH_IN, height)
    top = height - SUPTITLE_IN
    for ax, plan, under in zip(axes, plans, motion, strict=True):
        bottom = top - panels.ABOVE_IN - plan.axes_in
        ax.set_position(_box(panels.LEFT_IN, bottom, panels.AXES_WIDTH_IN, plan.axes_in, height))
        if under is not None:
            bottom -= plan.motion_in
            under.set_position(
                _box(panels.LEFT_IN, bottom, panels.AXES_WIDTH_IN, panels.MOTION_IN, height)
            )
        top = bottom - panels.BELOW_IN
    where = f" (page {page[0]} of {page[1]})" if page and page[1] > 1 else ""
    fig.suptitle(
        f"{trend.mrn}: maturation trend as of {trend.as_of.isoformat()}{where}",
        fontsize=9.5,
        fontweight="bold",
        x=0.01,
        y=1 - 0.08 / height,
        ha="left",
        va="top",
    )
    fig.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.03 / height),
        ncols=LEGEND_COLUMNS,
        frameon=False,
        handlelength=2.2,
        columnspacing=1.6,
        borderaxespad=0.0,
    )
    return fig


def _box(left: float, bottom: float, width: float, height: float, fig_height: float) -> Bbox:
    """A box given in inches, as figure fractions."""
    return Bbox.from_bounds(
        left / WIDTH_IN, bottom / fig_height, width / WIDTH_IN, height / fig_height
    )


_ACTIVITY_WORDS = {
    "none": "",
    "single_scan": ", single scan",
    "rising": ", uptake rising",
    "plateau": ", uptake plateau",
    "declining": ", uptake declining",
    "indeterminate": ", uptake indeterminate",
}


def _stage_words(site: SiteTrend) -> str:
    """ "mature (Brooker 3, Della Valle C), uptake declining": short enough to share
    the title line with the verdict."""
    a = site.assessment
    if a.stage.value == "none":
        return "no HO seen" + _ACTIVITY_WORDS[a.activity.value]
    grades = [f"Brooker {a.brooker}"] if a.brooker is not None else []
    if a.della_valle is not None:
        grades.append(f"Della Valle {str(a.della_valle).upper()}")
    extra = f" ({', '.join(grades)})" if grades else ""
    return f"{words(a.stage)}{extra}{_ACTIVITY_WORDS[a.activity.value]}"


def _verdict_words(site: SiteTrend, *, small: bool = False) -> str:
    said = READINESS_WORDS[site.assessment.readiness.value]
    if "genetic_ho" in site.assessment.flags:
        said += ": genetic HO, never resect" if not small else " (genetic HO)"
    return said


def _readiness_title(ax: Axes, site: SiteTrend) -> None:
    verdict = site.assessment.readiness.value
    ax.set_title(
        _verdict_words(site), loc="right", color=READINESS_COLOURS[verdict], fontweight="bold"
    )


def _verdict_line(ax: Axes, site: SiteTrend) -> None:
    """The verdict under a small multiple's title, in the verdict's colour."""
    ax.text(
        0.0,
        1.02,
        _verdict_words(site, small=True),
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=6.5,
        fontweight="bold",
        color=READINESS_COLOURS[site.assessment.readiness.value],
    )
    forecast = site.assessment.forecast
    if forecast is not None:
        ax.text(
            0.98,
            0.96,
            f"forecast {forecast.date.isoformat()}"
            + (" passed: rescan" if forecast.passed else ""),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=6.5,
            fontweight="bold",
            color=VERMILLION,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.0},
            zorder=8,
        )


# --- the cohort board's small multiples ------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardPanel:
    """One small multiple of the cohort board: a site of a patient."""

    mrn: str
    trend: SiteTrend
    as_of: date


def board_figure(
    board_panels: Sequence[BoardPanel], columns: int = BOARD_COLUMNS, title: str = ""
) -> Figure:
    """Small multiples: each site's delayed-phase ratios with its stage, curve, Kim
    threshold and forecast, titled with the patient and the engine's verdict."""
    with _styled():
        rows = max(1, math.ceil(len(board_panels) / columns))
        legend_in = LEGEND_PAD_IN + 3 * LEGEND_ROW_IN
        height = SUPTITLE_IN + SMALL_PANEL_IN * rows + legend_in
        fig = Figure(figsize=(WIDTH_IN, height))
        if title:
            fig.suptitle(
                title, fontsize=9.5, fontweight="bold", x=0.01, y=1 - 0.08 / height,
                ha="left", va="top",
            )  # fmt: skip
        legend = Legend()
        if not board_panels:
            fig.text(0.5, 0.5, "No site has a delayed-phase bone scan.", ha="center")
            return fig
        cell = (WIDTH_IN - BOARD_LEFT_IN) / columns
        for n, panel in enumerate(board_panels):
            row, column = divmod(n, columns)
            top = height - SUPTITLE_IN - row * SMALL_PANEL_IN
            box = _box(
                BOARD_LEFT_IN + column * cell + SMALL_LEFT_IN,
                top - SMALL_PANEL_IN + SMALL_BELOW_IN,
                cell - SMALL_LEFT_IN - SMALL_RIGHT_IN,
                SMALL_PANEL_IN - SMALL_ABOVE_IN - SMALL_BELOW_IN,
                height,
            )
            ax = fig.add_axes(box.bounds)
            panels.draw_small(ax, panel.trend, panel.as_of, legend)
            ax.set_title(
                f"{panel.mrn}  {place(panel.trend.site, panel.trend.side)}",
                loc="left",
                fontsize=7,
                fontweight="bold",
                pad=11,
            )
            _verdict_line(ax, panel.trend)
            ax.set_gid(f"board/{panel.mrn}/{panel.trend.site}/{panel.trend.side}")
            ax.tick_params(labelsize=6)
        fig.text(
            0.01,
            (legend_in + (height - SUPTITLE_IN - legend_in) / 2) / height,
            "delayed-phase uptake ratio (lesion / normal bone)",
            rotation=90,
            va="center",
            ha="left",
            fontsize=7.5,
        )
        handles, labels = legend.ordered()
        fig.legend(
            handles,
            labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.03 / height),
            ncols=3,
            frameon=False,
            borderaxespad=0.0,
        )
        return fig


# --- output ------------------------------------------------------------------------------


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 150) -> bytes:
    """The figure as PNG or SVG bytes."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format '{fmt}' is not png or svg")
    buffer = io.BytesIO()
    with _styled():
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return buffer.getvalue()


def write_figure(fig: Figure, path: Path, dpi: int = 150) -> Path:
    """Write the figure as PNG or SVG, chosen by the file's suffix."""
    fmt = path.suffix.lower().lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_bytes(fig, fmt, dpi))
    return path


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date, so the same figure gives the same file.
    return {"Date": None} if fmt == "svg" else {"Software": "ho-tracker"}


def artists_with_gid(fig: Figure, prefix: str) -> list[Artist]:
    """Every artist whose gid starts with `prefix` (how tests read what was drawn)."""
    found: list[Artist] = []

    def visit(artist: Artist) -> None:
        gid = artist.get_gid()
        if gid is not None and gid.startswith(prefix):
            found.append(artist)
        for child in artist.get_children():
            visit(child)

    visit(fig)
    return found


__all__ = [
    "BoardPanel",
    "PanelPlan",
    "artists_with_gid",
    "board_figure",
    "figure_bytes",
    "trend_figure",
    "trend_pages",
    "write_figure",
]
