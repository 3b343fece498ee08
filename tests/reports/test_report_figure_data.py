"""The trend figure draws the engine's data: checked on the artists, not the pixels."""

from __future__ import annotations

from datetime import date, timedelta

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from tests.staging.builders import AS_OF, Timeline, day, mature_hip
from tracker.protocol import Protocol
from tracker.reports.figures import artists_with_gid, trend_figure, trend_pages
from tracker.reports.trends import PatientTrend, patient_trend
from tracker.staging import assess_patient, delayed_series
from tracker.staging.records import PatientRecords, as_of_cut, site_evidence
from tracker.staging.stage import dated_stages

PROTOCOL = Protocol()


def trend_of(records: PatientRecords, as_of: date = AS_OF) -> PatientTrend:
    return patient_trend(records, assess_patient(records, as_of, PROTOCOL), PROTOCOL)


def line(fig: object, gid: str) -> Line2D:
    found = [a for a in artists_with_gid(fig, gid) if a.get_gid() == gid]  # type: ignore[arg-type]
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    artist = found[0]
    assert isinstance(artist, Line2D)
    return artist


def declining_hip() -> Timeline:
    """A mineralising right hip whose ratios fall but stay above the Kim threshold of
    3.0: not stabilised, declining, so the engine fits a curve and forecasts."""
    return (
        Timeline()
        .injury("spinal_cord_injury", "2023-01-10")
        .ultrasound("2023-02-01", vascularity="increased")
        .radiograph("2023-03-01", calcification="peripheral", brooker=1)
        .delayed_scans(
            ("2023-02-10", 7.0),
            ("2023-06-10", 5.8),
            ("2023-10-10", 4.9),
            ("2024-02-10", 4.2),
            ("2024-06-10", 3.7),
        )  # fmt: skip
        .scan("2023-06-10", "blood_pool", 2.2)
        .scan("2023-02-10", "blood_pool", 3.1)
        .scan("2023-02-10", "flow", 2.6)
        .course("2023-02-15", "2023-05-10", agent="etidronate")
    )


def test_delayed_ratio_points_are_exactly_the_engines_series() -> None:
    records = mature_hip().delayed_scan("2025-05-01", 2.45).records()  # same day: averaged
    fig = trend_figure(trend_of(records))
    expected = delayed_series(site_evidence(as_of_cut(records, AS_OF), ("hip", "right")).bone_scans)
    drawn = line(fig, "delayed/0")
    assert list(drawn.get_xdata()) == [p.date for p in expected]
    assert list(drawn.get_ydata()) == [p.ratio for p in expected]
    assert drawn.get_ydata()[-1] == pytest.approx(2.5)


def test_blood_pool_and_flow_are_secondary_markers_without_a_line() -> None:
    fig = trend_figure(trend_of(declining_hip().records(), date(2024, 12, 1)))
    for gid, days, values in (
        ("blood-pool", ["2023-02-10", "2023-06-10"], [3.1, 2.2]),
        ("flow", ["2023-02-10"], [2.6]),
    ):
        drawn = line(fig, gid)
        assert list(drawn.get_ydata()) == values
        assert list(drawn.get_xdata()) == [day(d) for d in days]
        assert drawn.get_linestyle() == "None"


def test_fitted_curve_is_the_forecasts_own_and_meets_the_threshold_on_the_forecast_day() -> None:
    as_of = date(2024, 12, 1)
    trend = trend_of(declining_hip().records(), as_of)
    site = trend.sites[0]
    forecast = site.assessment.forecast
    assert forecast is not None and site.curve is not None and site.threshold == 3.0
    fig = trend_figure(trend)
    curve = line(fig, "curve")
    days = [(d - site.curve.peak_date).total_seconds() / 86400 for d in curve.get_xdata()]
    expected = site.curve.a + site.curve.b * np.exp(-site.curve.k * np.array(days))
    assert np.allclose(curve.get_ydata(), expected)
    # the engine's forecast day is the first whole day the fitted curve reaches 3.0
    on = (forecast.date - site.curve.peak_date).days
    assert site.curve.ratio_at(on) <= 3.0 + 1e-9 < site.curve.ratio_at(on - 1)
    marker = line(fig, "forecast")
    assert list(marker.get_xdata()) == [forecast.date]
    interval = line(fig, "forecast_range")
    assert list(interval.get_xdata()) == [forecast.low, forecast.high]


def test_kim_threshold_is_drawn_at_the_engines_threshold_from_the_first_scan() -> None:
    fig = trend_figure(trend_of(declining_hip().records(), date(2024, 12, 1)))
    threshold = line(fig, "kim_threshold")
    assert set(threshold.get_ydata()) == {3.0}
    assert threshold.get_xdata()[0] == day("2023-02-10")


def test_stage_periods_start_on_the_day_each_stage_was_first_shown() -> None:
    records = declining_hip().radiograph("2024-08-01", cortex="well_defined").records()
    as_of = date(2024, 12, 1)
    fig = trend_figure(trend_of(records, as_of))
    evidence = site_evidence(as_of_cut(records, as_of), ("hip", "right"))
    firsts: dict[str, date] = {}
    for when, stage in dated_stages(evidence, PROTOCOL.stage):
        firsts.setdefault(stage.value, when)
    spans = {}
    for stage in ("early", "mineralising", "mature"):
        (patch,) = artists_with_gid(fig, f"stage/0/{stage}")
        assert isinstance(patch, Rectangle)
        spans[stage] = mdates.num2date(patch.get_x()).date()
    assert spans == {
        "early": firsts["early"],
        "mineralising": day("2023-03-01"),
        "mature": firsts["mature"],
    }


def test_every_imaging_study_is_a_marker_by_modality_filled_where_it_showed_ho() -> None:
    records = declining_hip().ultrasound("2022-12-20", ho="absent").records()
    fig = trend_figure(trend_of(records, date(2024, 12, 1)))
    (ultrasound,) = artists_with_gid(fig, "studies/ultrasound")
    (radiograph,) = artists_with_gid(fig, "studies/radiograph")
    assert isinstance(ultrasound, PathCollection) and isinstance(radiograph, PathCollection)
    assert len(ultrasound.get_offsets()) == 2 and len(radiograph.get_offsets()) == 1
    faces = ultrasound.get_facecolors()
    assert tuple(faces[0][:3]) == (1.0, 1.0, 1.0)  # 2022-12-20: no HO, open marker
    assert tuple(faces[1][:3]) != (1.0, 1.0, 1.0)


def test_resections_are_vertical_lines_and_start_the_series_afresh() -> None:
    records = (
        mature_hip()
        .resection("2025-06-01")
        .radiograph("2025-09-01", calcification="peripheral")
        .delayed_scans(("2025-10-01", 4.0), ("2026-01-01", 3.2))
        .records()
    )
    as_of = date(2026, 2, 1)
    fig = trend_figure(trend_of(records, as_of))
    (resection,) = artists_with_gid(fig, "resection")
    assert isinstance(resection, Line2D)
    assert list(resection.get_xdata()) == [day("2025-06-01")] * 2
    before, after = line(fig, "delayed/0"), line(fig, "delayed/1")
    assert list(before.get_ydata()) == [6.10, 3.40, 2.55]
    assert list(after.get_ydata()) == [4.0, 3.2]
    assert artists_with_gid(fig, "stage/1/mineralising")  # the new episode's own stages


def test_courses_waiting_time_and_as_of_are_marked() -> None:
    trend = trend_of(declining_hip().records(), date(2024, 12, 1))
    fig = trend_figure(trend)
    (course,) = artists_with_gid(fig, "course")
    assert course is not None
    (waiting,) = artists_with_gid(fig, "waiting_time")
    assert isinstance(waiting, Line2D)
    assert waiting.get_xdata()[0] == day("2024-01-10")  # SCI + 12 months
    assert trend.sites[0].waiting_until == day("2024-01-10")
    (as_of_line,) = artists_with_gid(fig, "as_of")
    assert isinstance(as_of_line, Line2D) and as_of_line.get_xdata()[0] == date(2024, 12, 1)
    assert artists_with_gid(fig, "months_since_injury")


def test_records_after_as_of_are_never_drawn() -> None:
    records = mature_hip().delayed_scan(AS_OF + timedelta(days=30), 9.9).records()
    fig = trend_figure(trend_of(records))
    assert 9.9 not in list(line(fig, "delayed/0").get_ydata())


def test_many_sites_are_paged_three_to_an_a4_page() -> None:
    timeline = Timeline().injury("burn", "2024-01-01")
    sites = [
        (s, side)
        for s in ("hip", "knee", "elbow", "shoulder", "ankle")
        for side in ("left", "right")
    ]
    for n, (site, side) in enumerate(sites):
        timeline.radiograph(date(2024, 3, 1) + timedelta(days=n), site, side, calcification="zonal")
    pages = trend_pages(trend_of(timeline.records(), date(2024, 12, 1)))
    assert len(pages) == 4
    assert all(fig.get_size_inches()[1] <= 10.5 for fig in pages)  # fits A4 with margins
    assert sum(len(artists_with_gid(fig, "site/")) for fig in pages) == len(sites)


def test_figures_drawn_from_many_threads_keep_their_style_and_leave_matplotlib_alone() -> None:
    # the web app draws from worker threads; rcParams are process-global
    import threading

    import matplotlib

    default_size = matplotlib.rcParams["font.size"]
    trend = trend_of(declining_hip().records(), date(2024, 12, 1))
    sizes: list[float] = []

    def draw() -> None:
        for _ in range(3):
            fig = trend_figure(trend)
            ticks = [t for ax in fig.axes for t in ax.get_xticklabels()]
            sizes.extend(t.get_fontsize() for t in ticks)

    threads = [threading.Thread(target=draw) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sizes and set(sizes) == {7.0}
    assert matplotlib.rcParams["font.size"] == default_size
