"""Every main page and every record form at a phone (400 px), a tablet (768 px) and a
desk (1400 px): a screenshot of each in test-results/screens/ (`worklist-400.png`),
and none of them scrolls sideways (issue 14: wide tables scroll inside their own
box, the page itself never). Every test name says "browser": CI fails if any of
them was skipped."""

from __future__ import annotations

from typing import Any

import pytest

WIDTHS = (400, 768, 1400)

# (screenshot name, path) as a clinician sees them
CLINICIAN_PAGES = (
    ("worklist", "/worklist"),
    ("patients", "/patients"),
    ("patient", "/patients/H-EARLY"),
    ("board", "/board"),
    ("form_injury", "/patients/H-EARLY/injuries/new"),
    ("form_imaging", "/patients/H-EARLY/imaging/new"),
    ("form_bone_scan", "/patients/H-EARLY/bone-scans/new"),
    ("form_course", "/patients/H-EARLY/courses/new"),
    ("form_course_stop", "/patients/H-EARLY/courses/1/stop"),
    ("form_procedure", "/patients/H-EARLY/procedures/new"),
    ("form_lab", "/patients/H-EARLY/labs/new"),
    ("form_lab_correct", "/patients/H-EARLY/labs/2/edit"),
    ("form_patient_add", "/patients/new"),
    ("form_patient_edit", "/patients/H-EARLY/edit"),
)
ADMIN_PAGES = (
    ("audit", "/admin/audit"),
    ("admin_users", "/admin/users"),  # last: the user page is opened from it
)


def _look(w: Any, name: str, path: str, width: int, wide: list[str]) -> None:
    w.go(path)
    assert w.status == 200, f"{path} answered {w.status} at {width} px"
    w.shot(f"{name}-{width}")
    scroll_width, inner_width = w.fits()
    if scroll_width > inner_width:
        wide.append(f"{path} at {width} px: the page is {scroll_width} px wide")


@pytest.mark.parametrize("width", WIDTHS)
def test_browser_every_main_page_and_form_fits_without_sideways_scroll(
    watched: Any, width: int
) -> None:
    wide: list[str] = []
    w = watched(width)
    w.go("/signin")
    w.shot(f"signin-{width}")
    w.sign_in("clinician")
    for name, path in CLINICIAN_PAGES:
        _look(w, name, path, width, wide)

    # the trend figure fills the width it is given (issue 14: 270 px was unreadable)
    w.go("/patients/H-EARLY")
    figure = w.page.locator("figure img")
    figure.wait_for()
    w.page.wait_for_function("() => document.querySelector('figure img').complete")
    shown = figure.evaluate("img => img.getBoundingClientRect().width")
    room = w.page.locator("main").evaluate("m => m.clientWidth")
    assert shown >= 0.8 * min(room, 900), (
        f"the trend figure is {shown:.0f} px wide in {room} px at {width} px"
    )

    admin = watched(width)
    admin.sign_in("admin")
    for name, path in ADMIN_PAGES:
        _look(admin, name, path, width, wide)
    admin.page.click("table.users tr[data-user='surgeon'] a")
    admin.page.wait_for_url("**/admin/users/*")
    admin.shot(f"admin_user-{width}")
    scroll_width, inner_width = admin.fits()
    if scroll_width > inner_width:
        wide.append(f"{admin.page.url} at {width} px: the page is {scroll_width} px wide")
    assert wide == [], "pages that scroll sideways:\n" + "\n".join(wide)
    w.assert_clean()
    admin.assert_clean()
