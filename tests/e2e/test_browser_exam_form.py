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
    link = w.page.locator("section.examinations a", has_text="Right hip")
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
