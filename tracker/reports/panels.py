"""Drawing one site's trend panel (see `figures` for what a panel shows and why).

A panel is laid out in inches, not fractions, so it reads the same at any height:
from the bottom, a strip of imaging studies (anatomical imaging above functional),
then the uptake ratios, then one row per overlapping treatment course. `PanelPlan`
works the layout out before the figure exists, so the figure can be given exactly
the height its panels need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import matplotlib.dates as mdates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, MultipleLocator
from matplotlib.transforms import blended_transform_factory

from tracker.reports.trends import CourseSpan, PatientTrend, SiteTrend
from tracker.staging.readiness import Readiness
from tracker.staging.stage import Stage
from tracker.templating import words

# Okabe & Ito (2008), "Color Universal Design".
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#6E6E6E"
TEXT_GREY = "#444444"

STAGE_SHADES = {
    Stage.early: (YELLOW, 0.32),
    Stage.mineralising: (ORANGE, 0.24),
    Stage.mature: (GREEN, 0.20),
}
MODALITY_MARKS = {  # marker, face colour where the study showed HO
    "radiograph": ("s", BLACK),
    "ct": ("D", BLUE),
    "mri": ("p", PURPLE),
    "ultrasound": ("^", SKY_BLUE),
    "bone_scan": ("o", VERMILLION),
    "spect": ("h", ORANGE),
    "pet": ("*", GREEN),
}
# The strip's rows (inches above the axes' bottom): cross-sectional and plain imaging,
# ultrasound, nuclear medicine; so studies of one day never hide each other.
STRIP_ROWS = {"radiograph": 0.27, "ct": 0.27, "mri": 0.27, "ultrasound": 0.165}
NUCLEAR_ROW = 0.06
# a site without HO (not_applicable, v2) has nothing to resect: neutral text, no verdict colour
READINESS_COLOURS = {
    "ready": GREEN,
    "not_ready": VERMILLION,
    "insufficient_data": GREY,
    "not_applicable": TEXT_GREY,
}
READINESS_WORDS = {v.value: words(v.value) for v in Readiness}  # the one labels place

WIDTH_IN = 7.0  # A4 text width with 15 mm margins, less a little
LEFT_IN = 0.95  # the ratio axis label and tick labels
RIGHT_IN = 0.38  # the Kim threshold's label
AXES_WIDTH_IN = WIDTH_IN - LEFT_IN - RIGHT_IN
DAYS_PER_MONTH = 365.25 / 12

# Vertical layout, inches.
ABOVE_IN = 0.52  # panel title and the months axis
BELOW_IN = 0.24  # dates
OVERHEAD_IN = ABOVE_IN + BELOW_IN
STRIP_IN = 0.36  # imaging studies
RATIOS_IN = 1.30  # the ratio plot
PLAIN_IN = 0.30  # a panel without ratios: room for its note
ROW_IN = 0.17  # one row of treatment courses
COURSE_FONT = 6.2
MAX_ROWS = 4
# The range-of-motion panel under a site's ratio panel (model-spec v2, section 10).
MOTION_GAP_IN = 0.22  # between the ratio panel and the motion panel: its legend
MOTION_IN = 1.0  # the motion plot


OPEN_MARKER = "open marker: study showed no HO"


@dataclass
class Legend:
    """The legend entries of one figure, in a fixed reading order."""

    entries: dict[str, Artist] = field(default_factory=dict)

    def add(self, label: str, handle: Artist) -> None:
        self.entries.setdefault(label, handle)

    def ordered(self) -> tuple[list[Artist], list[str]]:
        rank = {label: i for i, label in enumerate(LEGEND_ORDER)}
        labels = sorted(self.entries, key=lambda label: rank.get(label, len(rank)))
        return [self.entries[label] for label in labels], labels


LEGEND_ORDER = [
    "delayed-phase ratio",
    "delayed-phase ratio before resection",
    "blood-pool ratio",
    "flow ratio",
    "fitted recovery curve",
    "forecast stabilisation (80% interval)",
    "Kim threshold",
    "stage early",
    "stage mineralising",
    "stage mature",
    *(m.replace("_", " ") for m in MODALITY_MARKS),
    "open marker: study showed no HO",
    "treatment course",
    "resection",
    "advisory waiting time met",
    "as of",
]


@dataclass(frozen=True)
class PanelPlan:
    """Where everything of one panel goes: its date range and course rows, and the
    height it needs."""

    start: date
    end: date
    spans: tuple[CourseSpan, ...]
    rows: tuple[int, ...]
    has_ratios: bool
    has_motion: bool = False  # a range-of-motion panel goes under the site's panel

    @property
    def row_count(self) -> int:
        return min(MAX_ROWS, 1 + max(self.rows)) if self.rows else 0

    @property
    def axes_in(self) -> float:
        body = RATIOS_IN if self.has_ratios else PLAIN_IN
        courses = self.row_count * ROW_IN + (0.06 if self.rows else 0.0)
        return STRIP_IN + body + courses

    @property
    def motion_in(self) -> float:
        """The height the range-of-motion panel adds (none without measurements)."""
        return MOTION_GAP_IN + MOTION_IN if self.has_motion else 0.0

    @property
    def height_in(self) -> float:
        return self.axes_in + OVERHEAD_IN + self.motion_in

    def fraction(self, inches: float) -> float:
        return inches / self.axes_in

    @property
    def ratio_bottom(self) -> float:
        return self.fraction(STRIP_IN + 0.04)

    @property
    def ratio_top(self) -> float:
        return 1 - self.fraction(self.row_count * ROW_IN + (0.1 if self.rows else 0.08))


def plan_site(site: SiteTrend, trend: PatientTrend) -> PanelPlan:
    start, end = date_range(site, trend.as_of)
    spans = tuple(c for c in trend.courses if c.applies_to(site.site, site.side))
    rows = course_rows(spans, trend.as_of, days_per_char(start, end))
    return PanelPlan(start, end, spans, tuple(rows), site.has_ratios, bool(site.motion))


def plan_timeline(trend: PatientTrend) -> PanelPlan:
    starts = [i.date for i in trend.injuries] + [c.start for c in trend.courses]
    first = min(starts, default=trend.as_of - timedelta(days=180))
    pad = timedelta(days=max(14, round((trend.as_of - first).days * 0.03)))
    start, end = first - pad, trend.as_of + pad
    rows = course_rows(trend.courses, trend.as_of, days_per_char(start, end))
    return PanelPlan(start, end, trend.courses, tuple(rows), False)


def date_range(site: SiteTrend, as_of: date, *, compact: bool = False) -> tuple[date, date]:
    """From the injury months are counted from (or the first evidence) to as_of or the
    end of the forecast interval or the advisory waiting time, whichever is last."""
    first = site.first_date
    if not compact:  # range of motion measured before the imaging is drawn too
        first = min([first, *(p.date for series in site.motion for p in series.points)])
    if compact:
        first = min((p.date for p in site.delayed), default=first)
    elif site.injury is not None and site.injury.date <= first:
        first = site.injury.date
    last = as_of
    forecast = site.assessment.forecast
    if forecast is not None:
        last = max(last, forecast.high)
    if not compact and site.waiting_until is not None:
        last = max(last, site.waiting_until)
    pad = timedelta(days=max(14, round((last - first).days * 0.03)))
    return first - pad, last + pad


def days_per_char(start: date, end: date) -> float:
    """Days of x axis one character of a course label takes (DejaVu Sans widths)."""
    return (end - start).days / AXES_WIDTH_IN * (COURSE_FONT * 0.6 / 72)


def course_rows(spans: tuple[CourseSpan, ...], as_of: date, per_char: float) -> list[int]:
    """A row for each course so that bars and labels never overlap: a course goes on
    the first row whose last course, label included, ended before it starts."""
    ends: list[date] = []
    rows = []
    for span in spans:
        label_days = round((len(span_label(span)) + 2) * per_char)
        stop = max(span.end or as_of, span.start + timedelta(days=label_days))
        row = next((i for i, end in enumerate(ends) if end < span.start), len(ends))
        if row == len(ends):
            ends.append(stop)
        else:
            ends[row] = stop
        rows.append(row)
    return rows


def span_label(span: CourseSpan) -> str:
    return span.label + (" (ongoing)" if span.end is None else "")


# --- drawing ------------------------------------------------------------------------


def dates(values: Iterable[date]) -> Any:
    """Dates for an x axis. Matplotlib converts them itself (and hands them back from
    get_xdata), but its type stubs only admit numbers."""
    return list(values)


def draw_site(ax: Axes, site: SiteTrend, plan: PanelPlan, as_of: date, legend: Legend) -> None:
    """A full panel: everything issue 5 lists for a site."""
    ax.set_gid(f"site/{site.site}/{site.side}")
    set_dates(ax, plan.start, plan.end)
    if site.has_ratios:
        top = ratio_top(site)
        scale = top / (plan.ratio_top - plan.ratio_bottom)
        ax.set_ylim(-plan.ratio_bottom * scale, top + (1 - plan.ratio_top) * scale)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5]))
        ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])
        ax.set_ylabel("uptake ratio\n(lesion / normal bone)")
        ax.grid(axis="y", color="#DDDDDD", linewidth=0.6)
    else:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.text(
            0.5,
            plan.fraction(STRIP_IN + PLAIN_IN / 2),
            "no quantitative bone scan of this site",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color=GREY,
            fontsize=7,
        )
    draw_stages(ax, site, legend)
    draw_strip(ax, site, plan, legend)
    draw_courses(ax, plan, as_of, legend)
    draw_resections(ax, site, legend)
    draw_waiting(ax, site, legend)
    if site.injury is not None:
        months_axis(ax, site.injury.kind, site.injury.date, plan.start, plan.end)
    if site.has_ratios:
        draw_ratios(ax, site, legend)
        draw_threshold(ax, site, legend, label=True)
        draw_curve(ax, site, plan.end, legend)
        draw_forecast(ax, site, legend)
    draw_as_of(ax, as_of, legend)


def draw_small(ax: Axes, site: SiteTrend, as_of: date, legend: Legend) -> None:
    """A small multiple for the board: ratios, curve, threshold, forecast, stage."""
    ax.set_gid(f"site/{site.site}/{site.side}")
    start, end = date_range(site, as_of, compact=True)
    set_dates(ax, start, end, compact=True)
    top = ratio_top(site)
    ax.set_ylim(0, top * 1.08)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5]))
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.5)
    draw_stages(ax, site, legend, only_current=True)
    draw_ratios(ax, site, legend, compact=True)
    draw_threshold(ax, site, legend, label=False)
    draw_curve(ax, site, end, legend)
    draw_forecast(ax, site, legend, label=False)
    draw_as_of(ax, as_of, legend)


def set_dates(ax: Axes, start: date, end: date, *, compact: bool = False) -> None:
    ax.set_xlim(start, end)  # type: ignore[arg-type]
    locator = mdates.AutoDateLocator(minticks=2 if compact else 4, maxticks=5 if compact else 9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))
    ax.tick_params(axis="x", pad=2)


def months_axis(ax: Axes, kind: str, injured: date, start: date, end: date) -> None:
    """Months since the injury, along the top."""
    origin = mdates.date2num(injured)

    def to_months(x: Any) -> Any:
        return (x - origin) / DAYS_PER_MONTH

    def to_days(m: Any) -> Any:
        return m * DAYS_PER_MONTH + origin

    months = (end - start).days / DAYS_PER_MONTH
    step = next((s for s in (1, 2, 3, 6, 12, 24, 60) if months / s <= 10), 120)
    top = ax.secondary_xaxis("top", functions=(to_months, to_days))
    top.set_gid("months_since_injury")
    top.xaxis.set_major_locator(MultipleLocator(step))
    top.tick_params(axis="x", labelsize=6.5, pad=1, length=2.5, colors=GREY)
    top.set_xlabel(
        f"months since {kind.replace('_', ' ')} ({injured.isoformat()})",
        fontsize=6.5,
        color=GREY,
        labelpad=2,
    )


def ratio_top(site: SiteTrend) -> float:
    values = [p.ratio for e in site.episodes for p in e.delayed]
    values += [p.ratio for p in (*site.blood_pool, *site.flow)]
    if site.threshold is not None:
        values.append(site.threshold)
    return max(3.5, max(values, default=0.0) * 1.12)


def draw_stages(ax: Axes, site: SiteTrend, legend: Legend, *, only_current: bool = False) -> None:
    """Stage periods, each from the day the stage was first shown (episode by episode:
    a resection starts the site afresh)."""
    episodes = site.episodes[-1:] if only_current else site.episodes
    first_index = len(site.episodes) - len(episodes)
    for index, episode in enumerate(episodes, start=first_index):
        onsets = list(episode.onsets)
        for n, (stage, began) in enumerate(onsets):
            until = onsets[n + 1][1] if n + 1 < len(onsets) else episode.ends
            if n + 1 < len(onsets) and until <= began:
                continue  # a higher stage shown the same day: no period of its own
            colour, alpha = STAGE_SHADES[stage]
            ax.axvspan(
                began,  # type: ignore[arg-type]
                max(until, began + timedelta(days=1)),  # type: ignore[arg-type]
                color=colour,
                alpha=alpha,
                linewidth=0,
                zorder=0,
                gid=f"stage/{index}/{stage.value}",
            )
            legend.add(f"stage {stage.value}", Patch(color=colour, alpha=alpha, linewidth=0))


def draw_ratios(ax: Axes, site: SiteTrend, legend: Legend, *, compact: bool = False) -> None:
    last = len(site.episodes) - 1
    for index, episode in enumerate(site.episodes):
        if not episode.delayed or (compact and index != last):
            continue
        current = index == last
        (line,) = ax.plot(
            dates(p.date for p in episode.delayed),
            [p.ratio for p in episode.delayed],
            color=BLUE if current else GREY,
            marker="o",
            markersize=3.5 if compact else 4.5,
            linewidth=1.0 if compact else 1.3,
            zorder=5,
            gid=f"delayed/{index}",
        )
        legend.add(
            "delayed-phase ratio" if current else "delayed-phase ratio before resection", line
        )
        if current and not compact:
            below = site.threshold or 0.0
            for point in {episode.delayed[0], episode.delayed[-1]}:
                _label_point(ax, point.date, point.ratio, BLUE, under=point.ratio <= below)
    if compact:
        return
    for phase, points, marker, colour in (
        ("blood-pool", site.blood_pool, "x", SKY_BLUE),
        ("flow", site.flow, "+", PURPLE),
    ):
        if points:
            (line,) = ax.plot(
                dates(p.date for p in points),
                [p.ratio for p in points],
                linestyle="none",
                marker=marker,
                markersize=6,
                markeredgewidth=1.4,
                color=colour,
                zorder=4,
                gid=phase,
            )
            legend.add(f"{phase} ratio", line)


def _label_point(ax: Axes, when: date, ratio: float, colour: str, *, under: bool) -> None:
    """The value by a point: above it, or under it when it sits under the threshold
    line (so the label never lies on the line)."""
    ax.annotate(
        f"{ratio:.2f}",
        xy=(when, ratio),
        xytext=(4, -4) if under else (4, 4),
        textcoords="offset points",
        va="top" if under else "baseline",
        fontsize=6.5,
        color=colour,
        zorder=7,
    )


def draw_threshold(ax: Axes, site: SiteTrend, legend: Legend, *, label: bool) -> None:
    """The Kim threshold that applies to the site's first ratio, from that scan on."""
    if site.threshold is None:
        return
    begins = site.delayed[0].date if site.delayed else mdates.num2date(ax.get_xlim()[0]).date()
    right = mdates.num2date(ax.get_xlim()[1]).date()
    (line,) = ax.plot(
        [begins, right],
        [site.threshold, site.threshold],
        color=BLACK,
        linestyle=(0, (5, 2, 1, 2)),
        linewidth=1.0,
        zorder=3,
        gid="kim_threshold",
    )
    legend.add("Kim threshold", line)
    if label:
        ax.annotate(  # outside the plot, by the axis, where no data can hide it
            f"Kim\n{site.threshold:.1f}",
            xy=(1.0, site.threshold),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=6.5,
            linespacing=1.0,
            annotation_clip=False,
        )


def draw_curve(ax: Axes, site: SiteTrend, end: date, legend: Legend) -> None:
    curve = site.curve
    if curve is None:
        return
    span = max(0, (end - curve.peak_date).days)
    offsets = sorted({round(span * i / 150) for i in range(151)})  # whole days
    days = [curve.peak_date + timedelta(days=t) for t in offsets]
    (line,) = ax.plot(
        dates(days),
        [curve.ratio_at(t) for t in offsets],
        color=BLUE,
        linestyle="--",
        linewidth=1.1,
        zorder=4,
        gid="curve",
    )
    legend.add("fitted recovery curve", line)


def draw_forecast(ax: Axes, site: SiteTrend, legend: Legend, *, label: bool = True) -> None:
    forecast = site.assessment.forecast
    if forecast is None:
        return
    if site.curve is not None:
        level = site.curve.ratio_at((forecast.date - site.curve.peak_date).days)
    else:
        level = site.threshold or 0.0
    ax.axvspan(
        forecast.low,  # type: ignore[arg-type]
        forecast.high + timedelta(days=1),  # type: ignore[arg-type]
        facecolor="none",
        edgecolor=VERMILLION,
        hatch="////",
        alpha=0.35,
        linewidth=0,
        zorder=1,
        gid="forecast_interval",
    )
    ax.plot(
        dates([forecast.low, forecast.high]),
        [level, level],
        color=VERMILLION,
        linewidth=1.2,
        zorder=6,
        gid="forecast_range",
    )
    (point,) = ax.plot(
        dates([forecast.date]),
        [level],
        marker="D",
        markersize=5,
        color=VERMILLION,
        linestyle="none",
        zorder=6,
        gid="forecast",
    )
    legend.add(
        "forecast stabilisation (80% interval)",
        Line2D([], [], color=VERMILLION, marker="D", markersize=5, linewidth=1.2),
    )
    if not label:
        return
    ax.annotate(
        forecast.date.isoformat() + (" (passed: rescan)" if forecast.passed else ""),
        xy=(forecast.date, level),
        xytext=(0, -9),
        textcoords="offset points",
        ha="center",
        va="top",
        fontsize=6.5,
        color=VERMILLION,
        fontweight="bold",
        zorder=7,
    )


def draw_strip(ax: Axes, site: SiteTrend, plan: PanelPlan, legend: Legend) -> None:
    """Every imaging study of the site as a marker by modality, filled where the
    study showed HO (its stage, from the engine, is beyond none)."""
    blend = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(
        [0, 1],
        [plan.fraction(STRIP_IN)] * 2,
        color="#BBBBBB",
        linewidth=0.6,
        transform=ax.transAxes,
        zorder=1,
    )
    ax.text(
        -0.008,
        plan.fraction(STRIP_IN / 2),
        "imaging",
        transform=ax.transAxes,
        ha="right",
        va="center",
        fontsize=6.5,
        color=GREY,
    )
    by_modality: dict[str, list[tuple[date, bool]]] = {}
    for study in site.studies:
        by_modality.setdefault(study.modality, []).append((study.date, study.stage != Stage.none))
    for modality, marks in by_modality.items():
        marker, colour = MODALITY_MARKS.get(modality, ("o", GREY))
        height = STRIP_ROWS.get(modality, NUCLEAR_ROW)
        ax.scatter(
            [d for d, _ in marks],  # type: ignore[arg-type]
            [plan.fraction(height)] * len(marks),
            marker=marker,
            s=28,
            c=[colour if seen else "white" for _, seen in marks],
            edgecolors=TEXT_GREY if colour == BLACK else BLACK,
            linewidths=0.7,
            transform=blend,
            zorder=6,
            gid=f"studies/{modality}",
        )
        legend.add(
            modality.replace("_", " "),
            Line2D(
                [],
                [],
                linestyle="none",
                marker=marker,
                markersize=5.5,
                markerfacecolor=colour,
                markeredgecolor=BLACK,
                markeredgewidth=0.7,
            ),
        )
        if not all(seen for _, seen in marks):
            legend.add(
                OPEN_MARKER,
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="o",
                    markersize=5.5,
                    markerfacecolor="white",
                    markeredgecolor=BLACK,
                    markeredgewidth=0.7,
                ),
            )


def draw_courses(ax: Axes, plan: PanelPlan, as_of: date, legend: Legend) -> None:
    """Treatment courses as labelled bars along the top, one row per overlap."""
    if not plan.spans:
        return
    blend = blended_transform_factory(ax.transData, ax.transAxes)
    for span, row in zip(plan.spans, plan.rows, strict=True):
        row = min(row, MAX_ROWS - 1)
        y = 1 - plan.fraction((row + 1) * ROW_IN + 0.02)
        begins = max(span.start, plan.start)
        visible = timedelta(days=max(1, round(days_per_char(plan.start, plan.end))))
        ends = max(span.end or as_of, begins + visible)  # a one-day course stays visible
        ax.fill_between(
            dates([begins, ends]),
            [y, y],
            [y + plan.fraction(0.035)] * 2,
            transform=blend,
            color=GREY,
            alpha=0.9,
            linewidth=0,
            zorder=6,
            gid="course",
        )
        label = span_label(span)
        room = (plan.end - begins).days
        fits = room >= (len(label) + 1) * days_per_char(plan.start, plan.end)
        ax.annotate(  # left-aligned at the start, or right-aligned at the edge near the end
            label,
            xy=(mdates.date2num(begins if fits else plan.end), y + plan.fraction(0.05)),
            xycoords=blend,
            xytext=(2, 0) if fits else (-2, 0),
            textcoords="offset points",
            fontsize=COURSE_FONT,
            va="bottom",
            ha="left" if fits else "right",
            color=TEXT_GREY,
            zorder=7,
            annotation_clip=False,
        )
    legend.add("treatment course", Patch(color=GREY, alpha=0.9, linewidth=0))


def draw_resections(ax: Axes, site: SiteTrend, legend: Legend) -> None:
    for when in site.resections:
        ax.axvline(when, color=BLACK, linewidth=2.0, zorder=3, gid="resection")  # type: ignore[arg-type]
        legend.add("resection", Line2D([], [], color=BLACK, linewidth=2.0))


def draw_waiting(ax: Axes, site: SiteTrend, legend: Legend) -> None:
    if site.waiting_until is None:
        return
    ax.axvline(
        site.waiting_until,  # type: ignore[arg-type]
        color=GREEN,
        linestyle=":",
        linewidth=1.8,
        zorder=3,
        gid="waiting_time",
    )
    legend.add(
        "advisory waiting time met",
        Line2D([], [], color=GREEN, linestyle=":", linewidth=1.8),
    )


# Each movement a colour, a marker and a line style of its own, the same on every panel.
MOVEMENT_STYLES: dict[str, tuple[str, str, Any]] = {
    "flexion": (BLUE, "o", "-"),
    "extension": (VERMILLION, "s", "--"),
    "abduction": (GREEN, "^", "-."),
    "adduction": (PURPLE, "v", ":"),
    "internal_rotation": (ORANGE, "D", "-"),
    "external_rotation": (SKY_BLUE, "<", "--"),
    "pronation": (BLACK, "p", "-."),
    "supination": (GREY, "h", ":"),
    "dorsiflexion": (BLUE, "s", ":"),
    "plantarflexion": (VERMILLION, "o", "-."),
}


def draw_motion(ax: Axes, site: SiteTrend, plan: PanelPlan, as_of: date) -> None:
    """The site's range of motion under its ratio panel, on the same time axis (the
    axes share x): a line per movement, the courses shaded, the resections drawn."""
    ax.set_gid(f"motion/{site.site}/{site.side}")
    top = max((p.degrees for s in site.motion for p in s.points), default=0.0) + 10
    ax.set_ylim(0, top)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5]))
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])
    ax.set_ylabel("range of motion\n(degrees)")
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.6)
    for span in plan.spans:
        begins = max(span.start, plan.start)
        ax.axvspan(
            begins,  # type: ignore[arg-type]
            max(span.end or as_of, begins + timedelta(days=1)),  # type: ignore[arg-type]
            color=GREY,
            alpha=0.13,
            linewidth=0,
            zorder=0,
            gid="motion/course",
        )
    for when in site.resections:
        ax.axvline(when, color=BLACK, linewidth=2.0, zorder=3, gid="motion/resection")  # type: ignore[arg-type]
    ax.axvline(as_of, color=GREY, linewidth=1.0, zorder=2, gid="motion/as_of")  # type: ignore[arg-type]
    for series in site.motion:
        colour, marker, style = MOVEMENT_STYLES.get(series.movement, (GREY, "o", "-"))
        ax.plot(
            dates(p.date for p in series.points),
            [p.degrees for p in series.points],
            color=colour,
            marker=marker,
            markersize=4,
            linestyle=style,
            linewidth=1.2,
            label=words(series.movement),
            zorder=5,
            gid=f"motion/{series.movement}",
        )
    ax.legend(  # above the plot, in the gap under the ratio panel: it hides no point
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=len(site.motion),
        fontsize=6.5,
        frameon=False,
        handlelength=2.4,
        columnspacing=1.4,
        borderaxespad=0.1,
        borderpad=0.0,
    )


def draw_as_of(ax: Axes, as_of: date, legend: Legend) -> None:
    ax.axvline(as_of, color=GREY, linewidth=1.0, zorder=2, gid="as_of")  # type: ignore[arg-type]
    legend.add("as of", Line2D([], [], color=GREY, linewidth=1.0))


def draw_timeline_only(ax: Axes, trend: PatientTrend, plan: PanelPlan, legend: Legend) -> None:
    """A patient without imaging: injuries, courses and as-of on a time axis."""
    ax.set_gid("timeline")
    set_dates(ax, plan.start, plan.end)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    draw_courses(ax, plan, trend.as_of, legend)
    blend = blended_transform_factory(ax.transData, ax.transAxes)
    for injury in trend.injuries:
        ax.axvline(injury.date, color=TEXT_GREY, linewidth=1, linestyle="--", gid="injury")  # type: ignore[arg-type]
        ax.text(
            injury.date,  # type: ignore[arg-type]
            plan.fraction(0.08),
            f" {injury.kind.replace('_', ' ')} {injury.date.isoformat()}",
            fontsize=6.5,
            color=TEXT_GREY,
            transform=blend,
        )
    draw_as_of(ax, trend.as_of, legend)
    ax.text(
        0.5,
        plan.fraction(STRIP_IN + PLAIN_IN / 2),
        f"No imaging findings or bone scans recorded by {trend.as_of.isoformat()}.",
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=8,
    )
    ax.set_title("no site with evidence", loc="left", fontweight="bold")
    first = min(trend.injuries, key=lambda i: i.date, default=None)
    if first is not None:
        months_axis(ax, first.kind, first.date, plan.start, plan.end)
