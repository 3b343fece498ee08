"""The bedside examination on a tablet (issue 16, item 3): from the patient page a
clinician opens the form for the right hip, taps the signs, types the degrees of a
few movements and saves; the patient page then says what was seen, in words. The
form fits a phone, a tablet and a desk without sideways scroll. Every test name
says "browser"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.e2e.conftest import AS_OF

SHOTS = Path(os.environ.get("HO_TRACKER_EXAM_SHOTS", "/tmp/shots"))
MRN = "H-EARLY"  # has a right hip site on its page


def _shot(w: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    w.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_browser_examination_of_the_right_hip_on_a_tablet_is_saved_and_shown(
    watched: Any,
) -> None:
    w = watched(768)
    w.sign_in("clinician")
    w.go(f"/patients/{MRN}")
    # the "Examine:" link (the demo's own right-hip records have Correct and Void links)
    link = w.page.locator("section.examinations").get_by_role("link", name="Right hip", exact=True)
    with w.page.expect_navigation():
        link.click()
    assert w.status == 200
    page = w.page
    assert page.locator("h1").inner_text() == "Examine the right hip"

    def tap(sign: str, answer: str) -> None:
        page.locator(".sign", has_text=sign).get_by_label(answer, exact=True).check()

    tap("Swelling", "Yes")
    tap("Warmth", "Yes")
    tap("Erythema", "No")
    page.select_option("#f-pain", "5")
    page.get_by_label("Flexion", exact=True).fill("95")
    page.get_by_label("Abduction", exact=True).fill("25")
    page.get_by_label("Internal rotation", exact=True).fill("10")
    scroll_width, inner_width = w.fits()
    assert scroll_width <= inner_width, f"the form is {scroll_width} px wide at 768 px"
    # a sign's choices are large enough to tap (44 px, WCAG 2.5.5)
    box = page.locator(".sign", has_text="Swelling").locator("label.seg").first.bounding_box()
    assert box is not None and box["height"] >= 44, box
    _shot(w, "exam-768-filled")

    status = w.submit(page.get_by_role("button", name="Save examination"))
    assert status == 200
    assert page.url.endswith(f"/patients/{MRN}")
    said = page.locator("section.examinations").inner_text()
    assert "Swelling and warmth at the right hip on 2 Nov 2026 (pain 5 of 10)" in said
    assert "Hip flexion 95° on 2 Nov 2026" in said
    assert any("Examination saved" in n for n in w.notices()), w.notices()
    page.locator("section.examinations").scroll_into_view_if_needed()
    _shot(w, "exam-patient-768")
    w.assert_clean()


@pytest.mark.parametrize("width", (400, 768, 1400))
def test_browser_examination_form_fits_every_width_without_sideways_scroll(
    watched: Any, width: int
) -> None:
    w = watched(width)
    w.sign_in("clinician")
    w.go(f"/patients/{MRN}/examination/new?site=hip&side=right")
    assert w.status == 200
    _shot(w, f"exam-{width}")
    scroll_width, inner_width = w.fits()
    assert scroll_width <= inner_width, f"the form is {scroll_width} px wide at {width} px"
    # a refusal at this width is marked beside its field and still fits
    w.page.get_by_label("Flexion", exact=True).fill("250")
    status = w.submit(w.page.get_by_role("button", name="Save examination"))
    assert status == 422
    assert w.ok_or_marked("degrees 250") == 422
    assert "Right hip flexion: degrees 250 is outside 0 to 200" in w.page.inner_text("main")
    _shot(w, f"exam-{width}-refused")
    scroll_width, inner_width = w.fits()
    assert scroll_width <= inner_width
    w.assert_clean()


def test_browser_examination_saved_with_its_defaults_says_nothing_to_save(
    watched: Any, web_engine: Engine
) -> None:
    """A person opens the form for the right hip and presses Save at once (date today,
    nothing else touched): the page refuses with "Nothing to save", naming what to
    record, beside the first sign, and refuses none of the values the form filled in
    itself (the date, the joint, the movement rows). Nothing is written."""
    before = _examinations(web_engine)
    w = watched(768)
    w.sign_in("clinician")
    w.go(f"/patients/{MRN}")
    with w.page.expect_navigation():
        w.page.locator("section.examinations").get_by_role(
            "link", name="Right hip", exact=True
        ).click()
    assert w.status == 200
    page = w.page
    assert page.locator("#f-date").input_value() == AS_OF.isoformat()  # today, as given

    status = w.submit(page.get_by_role("button", name="Save examination"))
    assert status == 422
    assert w.ok_or_marked("the examination form sent with its defaults") == 422
    main = page.inner_text("main")
    assert "Not saved." in main
    assert "Nothing to save: record a sign, the pain, a note or a movement's degrees" in main
    # the refusal is marked at the first sign, not at a value the form put there
    marked = page.locator("main [aria-invalid='true']")
    assert marked.count() >= 1
    assert all(name == "swelling" for name in marked.evaluate_all("els => els.map(e => e.name)"))
    for own in ("is outside", "not one of", "is required", "in the future"):
        assert own not in main, own
    assert page.locator("#f-date").input_value() == AS_OF.isoformat()  # kept as sent
    assert page.locator("h1").inner_text() == "Examine the right hip"
    assert _examinations(web_engine) == before
    _shot(w, "exam-768-defaults-refused")
    w.assert_clean()


def _examinations(engine: Engine) -> tuple[int, int]:
    """The patient's stored examinations and range-of-motion rows."""
    counts = []
    for table in ("clinical_exam", "range_of_motion"):
        with engine.connect() as conn:
            counts.append(
                conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {table} t JOIN patient p ON p.id = t.patient_id"
                        " WHERE p.mrn = :mrn"
                    ),
                    {"mrn": MRN},
                ).scalar_one()
            )
    return counts[0], counts[1]
