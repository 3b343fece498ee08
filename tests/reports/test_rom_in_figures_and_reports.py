"""Range of motion in the surgeon's figures and report (issue 16, item 4): a panel
under each measured site's ratio panel on the same time axis, a line per movement
named in words; and, per resection, the range before and after it with the change."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.reports.test_report_words import assert_no_tokens, shown_text
from tests.staging.builders import AS_OF, Timeline
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reports.figures import artists_with_gid, trend_figure, trend_pages
from tracker.reports.render import _degree_change, html_to_pdf, render_patient_html
from tracker.reports.trends import (
    PatientTrend,
    SiteTrend,
    patient_trend,
    resection_motion,
)
from tracker.services.reports import patient_report
from tracker.staging import assess_patient
from tracker.staging.records import PatientRecords, RangeOfMotion

PROTOCOL = Protocol()
REPORT_AS_OF = date(2025, 10, 1)


def rom(
    on: str, movement: str, degrees: float, site: str = "hip", side: str = "right"
) -> RangeOfMotion:
    return RangeOfMotion(date.fromisoformat(on), site, side, movement, degrees)


def hip_and_knee() -> PatientRecords:
    """A right hip with HO, scanned and resected, and a left knee with HO on a radiograph."""
    return (
        Timeline()
        .injury("spinal_cord_injury", "2024-01-10")
        .radiograph("2024-03-01", calcification="zonal", brooker=3)
        .radiograph("2024-03-01", site="knee", side="left", calcification="peripheral")
        .delayed_scans(("2024-03-05", 6.0), ("2024-07-01", 3.0), ("2024-11-01", 2.4))
        .resection("2025-01-15")
        .records()
    )


HIP_MOTION = (
    rom("2024-06-01", "flexion", 90),
    rom("2024-12-20", "flexion", 60),
    rom("2024-12-20", "internal_rotation", 10),
    rom("2025-01-15", "flexion", 55),
    rom("2025-03-01", "flexion", 80),
    rom("2025-03-01", "internal_rotation", 25),
)


def trend_of(records: PatientRecords, motion: tuple[RangeOfMotion, ...] = ()) -> PatientTrend:
    assessment = assess_patient(records, AS_OF, PROTOCOL)
    return patient_trend(records, assessment, PROTOCOL, motion=motion)


def motion_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if (ax.get_gid() or "").startswith("motion/")]


def ydata(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata())]


def site_axes(fig: Figure, site: str, side: str) -> Axes:
    (ax,) = [ax for ax in fig.axes if ax.get_gid() == f"site/{site}/{side}"]
    return ax


def site_of(trend: PatientTrend, site: str, side: str) -> SiteTrend:
    (found,) = [s for s in trend.sites if (s.site, s.side) == (site, side)]
    return found


# --- the figure ---------------------------------------------------------------------------


def test_a_measured_site_gets_a_motion_panel_and_an_unmeasured_site_keeps_its_layout() -> None:
    records = hip_and_knee()
    plain = trend_figure(trend_of(records))
    fig = trend_figure(trend_of(records, HIP_MOTION))
    assert motion_axes(plain) == []
    (motion,) = motion_axes(fig)
    assert motion.get_gid() == "motion/hip/right"  # none for the left knee
    assert len(fig.axes) == len(plain.axes) + 1
    hip = site_axes(fig, "hip", "right")
    assert motion.get_shared_x_axes().joined(motion, hip)  # the same time axis
    assert motion.get_xlim() == hip.get_xlim()
    # under the hip's panel, above nothing else's, and the figure grew to make room
    assert motion.get_position().y1 < hip.get_position().y0
    knee = site_axes(fig, "knee", "left")
    assert knee.get_position().y1 < motion.get_position().y0  # the next site comes after
    assert fig.get_size_inches()[1] > plain.get_size_inches()[1]
    # the dates are read under the motion panel, not between the two
    assert not any(t.get_visible() and t.get_text() for t in hip.get_xticklabels())
    assert not motion.get_title(loc="left")  # titles name sites only


def test_motion_panel_has_a_line_per_movement_named_in_words_in_degrees() -> None:
    fig = trend_figure(trend_of(hip_and_knee(), HIP_MOTION))
    (motion,) = motion_axes(fig)
    lines = {line.get_gid(): line for line in motion.get_lines() if line.get_gid()}
    flexion, rotation = lines["motion/flexion"], lines["motion/internal_rotation"]
    assert flexion.get_label() == "flexion"
    assert rotation.get_label() == "internal rotation"
    assert ydata(flexion) == [90, 60, 55, 80]
    assert ydata(rotation) == [10, 25]
    assert flexion.get_marker() != rotation.get_marker()  # told apart without colour
    legend = motion.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["flexion", "internal rotation"]
    assert motion.get_ylim() == (0, 100)  # 0 to the largest value and 10 more
    assert "degrees" in motion.get_ylabel()
    assert len(artists_with_gid(fig, "motion/resection")) == 1


def test_motion_panel_marks_courses_and_leaves_out_measurements_after_as_of() -> None:
    records = (
        Timeline()
        .injury("spinal_cord_injury", "2024-01-10")
        .radiograph("2024-03-01", calcification="zonal", brooker=3)
        .course("2024-04-01", "2024-07-01")
        .records()
    )
    later = rom((AS_OF.replace(year=AS_OF.year + 1)).isoformat(), "flexion", 150)
    fig = trend_figure(trend_of(records, (rom("2024-05-01", "flexion", 70), later)))
    (motion,) = motion_axes(fig)
    assert artists_with_gid(fig, "motion/course")
    (flexion,) = [line for line in motion.get_lines() if line.get_gid() == "motion/flexion"]
    assert ydata(flexion) == [70]


def test_tall_motion_panels_are_paged_to_fit_an_a4_page() -> None:
    timeline = Timeline().injury("burn", "2024-01-01")
    motion = []
    for site, side in (("hip", "left"), ("hip", "right"), ("knee", "left"), ("knee", "right")):
        timeline.radiograph("2024-03-01", site, side, calcification="zonal")
        timeline.delayed_scans(("2024-03-05", 6.0), ("2024-09-01", 3.0), site=site, side=side)
        motion += [
            rom("2024-04-01", "flexion", 80, site, side),
            rom("2024-10-01", "flexion", 95, site, side),
        ]
    trend = trend_of(timeline.records(), tuple(motion))
    pages = trend_pages(trend)
    assert all(fig.get_size_inches()[1] <= 10.5 for fig in pages)  # fits A4 with margins
    assert sum(len(motion_axes(fig)) for fig in pages) == 4
    assert sum(len(artists_with_gid(fig, "site/")) for fig in pages) == 4


def test_before_and_after_each_resection_stop_at_the_next_resection() -> None:
    twice = Timeline()
    twice.injury("spinal_cord_injury", "2024-01-10").radiograph("2024-03-01", calcification="zonal")
    twice.resection("2024-06-01").radiograph("2024-09-01", calcification="zonal")
    twice.resection("2025-01-15")
    motion = (
        rom("2024-05-01", "flexion", 50),
        rom("2024-08-01", "flexion", 90),
        rom("2025-01-15", "flexion", 70),  # the day of the second: its baseline
        rom("2025-03-01", "flexion", 100),
    )
    hip = site_of(trend_of(twice.records(), motion), "hip", "right")
    first, second = resection_motion(hip)
    assert (first.resected_on, second.resected_on) == (date(2024, 6, 1), date(2025, 1, 15))
    (a,) = first.changes
    assert (a.before and a.before.degrees, a.after and a.after.degrees, a.change) == (50, 70, 20)
    (b,) = second.changes
    assert (b.before and b.before.degrees, b.after and b.after.degrees, b.change) == (70, 100, 30)


# --- the surgeon's report ----------------------------------------------------------------------


def _patient(mrn: str) -> dict[str, object]:
    return {"mrn": mrn, "birth_date": "1980-05-01", "sex": "female", "family_name": "Test",
            "given_name": mrn, "team": ""}  # fmt: skip


@pytest.fixture(scope="module")
def rom_store(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """R-ROM: a right hip resected on 2025-01-15 with range of motion on both sides of
    the resection (and at the left knee, which has no HO). R-NOROM: a left hip resected
    with no range of motion recorded."""
    from tracker.store import database

    folder = tmp_path_factory.mktemp("rom")
    write_csv(folder, "patients.csv", [_patient("R-ROM"), _patient("R-NOROM")])
    write_csv(
        folder,
        "injuries.csv",
        [{"mrn": m, "kind": "spinal_cord_injury", "date": "2024-01-10", "notes": ""}
         for m in ("R-ROM", "R-NOROM")],
    )  # fmt: skip
    write_csv(
        folder,
        "imaging.csv",
        [{"mrn": m, "date": "2024-03-01", "modality": "radiograph", "site": "hip", "side": side,
          "ho": "present", "calcification": "zonal", "brooker": 3}
         for m, side in (("R-ROM", "right"), ("R-NOROM", "left"))],
    )  # fmt: skip
    write_csv(
        folder,
        "bone_scans.csv",
        [{"mrn": m, "date": day, "site": "hip", "side": side, "phase": "delayed", "ratio": ratio}
         for m, side in (("R-ROM", "right"), ("R-NOROM", "left"))
         for day, ratio in (("2024-03-05", 6.0), ("2024-07-01", 3.0), ("2024-11-01", 2.4))],
    )  # fmt: skip
    write_csv(
        folder,
        "procedures.csv",
        [{"mrn": m, "kind": "resection", "date": "2025-01-15", "site": "hip", "side": side,
          "notes": ""} for m, side in (("R-ROM", "right"), ("R-NOROM", "left"))],
    )  # fmt: skip
    motion = [
        ("2024-06-01", "hip", "right", "flexion", 90),
        ("2024-12-20", "hip", "right", "flexion", 60),
        ("2024-12-20", "hip", "right", "internal_rotation", 10),
        ("2025-01-15", "hip", "right", "flexion", 55),  # the day of the resection: before
        ("2025-03-01", "hip", "right", "flexion", 80),
        ("2025-06-01", "hip", "right", "flexion", 95),
        ("2025-06-01", "hip", "right", "abduction", 30),
        ("2025-02-01", "knee", "left", "flexion", 120),  # another joint: not in the hip's table
        ("2026-01-01", "hip", "right", "flexion", 130),  # after as_of: never counts
    ]
    write_csv(
        folder,
        "rom.csv",
        [{"mrn": "R-ROM", "date": d, "site": s, "side": side, "movement": m, "degrees": v}
         for d, s, side, m, v in motion],
    )  # fmt: skip
    engine = database.make_engine(f"sqlite:///{folder / 'tracker.db'}")
    database.upgrade(engine)
    import_folder(engine, folder)
    return engine


def motion_table(html: str, resected_on: str) -> str:
    found = re.search(
        rf'<table class="compact motion" data-resection="{resected_on}">.*?</table>', html, re.S
    )
    assert found, f"no range-of-motion table for the resection of {resected_on}"
    return found.group(0)


def cells(table: str, movement: str) -> dict[str, str]:
    row = re.search(rf'<tr data-movement="{movement}">.*?</tr>', table, re.S)
    assert row, f"no row for {movement}"
    found = re.findall(r'<td[^>]*data-rom="(\w+)"[^>]*>(.*?)</td>', row.group(0), re.S)
    return {key: " ".join(re.sub(r"<[^>]+>", "", text).split()) for key, text in found}


def test_report_shows_range_of_motion_before_and_after_the_resection(rom_store: Engine) -> None:
    html = render_patient_html(patient_report(engine=rom_store, mrn="R-ROM", as_of=REPORT_AS_OF))
    assert "Range of motion before and after resection on 2025-01-15" in html
    table = motion_table(html, "2025-01-15")
    assert cells(table, "flexion") == {
        "before": "55° on 2025-01-15",
        "after": "95° on 2025-06-01",
        "change": "+40°",
    }
    assert cells(table, "internal_rotation") == {
        "before": "10° on 2024-12-20",
        "after": "not measured",
        "change": "—",
    }
    assert cells(table, "abduction") == {
        "before": "not measured",
        "after": "30° on 2025-06-01",
        "change": "—",
    }
    # movements in the vocabulary's order, in words; the knee's 120° is not the hip's
    rows = re.findall(r'<tr data-movement="(\w+)">\s*<td>([^<]*)</td>', table)
    assert rows == [
        ("flexion", "Flexion"),
        ("abduction", "Abduction"),
        ("internal_rotation", "Internal rotation"),
    ]
    assert "120°" not in table and "130°" not in html
    assert "range of motion in degrees, a line per movement" in html  # the caption
    assert_no_tokens(shown_text(html), "the report of R-ROM")


def test_the_latest_after_the_resection_is_the_latest_by_the_as_of_date(
    rom_store: Engine,
) -> None:
    html = render_patient_html(
        patient_report(engine=rom_store, mrn="R-ROM", as_of=date(2025, 3, 5))
    )
    assert cells(motion_table(html, "2025-01-15"), "flexion") == {
        "before": "55° on 2025-01-15",
        "after": "80° on 2025-03-01",
        "change": "+25°",
    }
    html = render_patient_html(
        patient_report(engine=rom_store, mrn="R-ROM", as_of=date(2025, 1, 20))
    )
    assert cells(motion_table(html, "2025-01-15"), "flexion")["after"] == "not measured"


def test_a_loss_is_shown_with_a_minus_sign_and_half_degrees_are_kept() -> None:
    assert _degree_change(-30.0) == "−30°"  # a minus sign, not a hyphen
    assert _degree_change(12.5) == "+12.5°"
    assert _degree_change(0.0) == "0°"
    assert _degree_change(None) == "—"


def test_a_resection_without_range_of_motion_says_not_measured(rom_store: Engine) -> None:
    report = patient_report(engine=rom_store, mrn="R-NOROM", as_of=REPORT_AS_OF)
    html = render_patient_html(report)
    table = motion_table(html, "2025-01-15")
    assert "not measured" in table
    assert "data-movement" not in table
    assert not any(site.motion for site in report.trend.sites)  # no empty motion panel
    assert "range of motion in degrees" not in html  # nor a caption for one


def test_pdf_prints_the_before_and_after_table(rom_store: Engine, tmp_path: Path) -> None:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: apt-get install -y poppler-utils (.ci/run does)"
    report = patient_report(engine=rom_store, mrn="R-ROM", as_of=REPORT_AS_OF)
    pdf = tmp_path / "R-ROM.pdf"
    pdf.write_bytes(html_to_pdf(render_patient_html(report, "print")))
    text = " ".join(
        subprocess.run(
            [tool, str(pdf), "-"], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "Range of motion before and after resection on 2025-01-15" in text
    assert "Flexion" in text and "Internal rotation" in text
    assert "55° on 2025-01-15" in text and "95° on 2025-06-01" in text and "+40°" in text
    assert "internal_rotation" not in text


def test_range_of_motion_measured_before_any_imaging_is_inside_the_time_axis() -> None:
    records = Timeline().radiograph("2024-09-01", calcification="zonal").records()  # no injury
    fig = trend_figure(trend_of(records, (rom("2024-05-01", "flexion", 120),)))
    (motion,) = motion_axes(fig)
    left, right = motion.get_xlim()
    assert left < mdates.date2num(date(2024, 5, 1)) < right
