"""The figures name a site as it is said at the bedside: "Right hip", "left knee",
never the stored order "hip right"; stages in words."""

from __future__ import annotations

from matplotlib.figure import Figure

from tests.staging.builders import AS_OF, Timeline
from tracker import labels
from tracker.protocol import Protocol
from tracker.reports.figures import BoardPanel, board_figure, trend_figure
from tracker.reports.trends import PatientTrend, patient_trend
from tracker.staging import assess_patient
from tracker.staging.records import PatientRecords

PROTOCOL = Protocol()


def trend_of(records: PatientRecords) -> PatientTrend:
    return patient_trend(records, assess_patient(records, AS_OF, PROTOCOL), PROTOCOL)


def two_sites() -> PatientRecords:
    """A mineralising right hip and a left knee with HO on a radiograph, both scanned."""
    return (
        Timeline()
        .injury("spinal_cord_injury", "2023-01-10")
        .radiograph("2023-03-01", calcification="peripheral", brooker=1)
        .radiograph("2023-03-01", site="knee", side="left", calcification="peripheral")
        .delayed_scans(("2023-02-10", 7.0), ("2023-06-10", 5.8), ("2023-10-10", 4.9))
        .delayed_scans(("2023-02-10", 6.0), ("2023-06-10", 5.0), site="knee", side="left")
        .records()
    )


def left_titles(fig: Figure) -> list[str]:
    return [t for t in (ax.get_title(loc="left") for ax in fig.axes) if t]


def test_trend_panels_are_titled_right_hip_and_left_knee_with_the_stage_in_words() -> None:
    trend = trend_of(two_sites())
    titles = left_titles(trend_figure(trend))
    by_place = {labels.capital(labels.place(s.site, s.side)): s for s in trend.sites}
    assert sorted(by_place) == ["Left knee", "Right hip"]
    assert len(titles) == 2
    for title in titles:
        where, _, said = title.partition(": ")
        assert where in by_place, title
        assert said.startswith(labels.words(by_place[where].assessment.stage)), title
        assert "hip right" not in title and "knee left" not in title


def test_board_small_multiples_name_the_patient_and_the_site_in_words() -> None:
    trend = trend_of(two_sites())
    fig = board_figure([BoardPanel("B-1", site, AS_OF) for site in trend.sites])
    assert sorted(left_titles(fig)) == ["B-1  left knee", "B-1  right hip"]
