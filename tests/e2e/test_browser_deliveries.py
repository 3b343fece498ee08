"""Failed deliveries in a real browser (issue 15): a reminder whose e-mail could not be
sent (its patient's MRN holds a CR/LF, planted with SQL as old data would be, then
delivered once to a real SMTP server) is shown to the admin on "Failed deliveries",
opened from the menu, with the patient and the reason in words; on the worklist its
row says "E-mail not sent: ...". The deliveries page, the worklist and the sign-in
page are looked at at a phone (400 px), a tablet (768 px) and a desk (1400 px), a
screenshot of each in test-results/screens/ (`deliveries-400.png`), and none of them
scrolls sideways. Every test name says "browser": CI fails if any was skipped."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import SmtpServer
from tests.security.support import BAD_MRN, failed_in_demo, row_of
from tests.security.support import mail_server as mail_server  # the fixture, re-exported

WIDTHS = (400, 768, 1400)


def _open_from_menu(w: Any, link: str) -> None:
    """Click a link of the main menu; on a phone it folds behind the Menu button."""
    toggle = w.page.locator("header.top .menu-toggle")
    if toggle.is_visible():
        toggle.click()
    w.page.click(f"nav[aria-label=Main] a:has-text('{link}')")


@pytest.fixture
def failed(web_engine: Engine, mail_server: SmtpServer) -> dict[str, Any]:
    """The reminder of the patient with a CR/LF in its MRN, its e-mail failed once."""
    failed_in_demo(web_engine, mail_server)
    return row_of(web_engine, BAD_MRN)


def _fits(w: Any, what: str, width: int) -> None:
    scroll_width, inner_width = w.fits()
    assert scroll_width <= inner_width, f"{what} at {width} px is {scroll_width} px wide"


@pytest.mark.parametrize("width", WIDTHS)
def test_browser_admin_opens_failed_deliveries_from_the_menu_and_reads_patient_and_reason(
    watched: Any, web_engine: Engine, failed: dict[str, Any], width: int
) -> None:
    w = watched(width)
    w.sign_in("admin")

    _open_from_menu(w, "Failed deliveries")
    w.page.wait_for_url("**/admin/deliveries")

    assert w.status == 200
    assert w.page.locator("h1").inner_text() == "Failed deliveries"
    row = w.page.locator(f"tr#failed-{failed['id']}")
    patient = row.locator("td[data-label=Patient]").inner_text()
    assert "BAD" in patient and "leak@elsewhere.example" in patient  # shown, not obeyed
    reminder = row.locator("td[data-label=Reminder]").inner_text()
    assert "course review" in reminder and "_" not in reminder  # in words, not codes
    error = row.locator("td[data-label='Last error']").inner_text()
    assert "MRN" in error and "carriage return" in error
    assert "\r" not in error and "\n" not in error  # the reason says what is wrong, in words
    assert row.locator("td[data-label=Attempts]").inner_text().strip() == "1"
    # the error is read in full where it stands: not cut off, no sideways scroll to it
    for cell in ("Patient", "Last error", "Next try"):
        box = row.locator(f"td[data-label='{cell}']").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (cell, box)
    # a command to type is quoted as it is typed (`ho-tracker ...`, not `HO-tracker ...`)
    errors = " ".join(w.page.locator("td[data-label='Last error']").all_inner_texts())
    assert "`ho-tracker teams add" in errors and "HO-tracker" not in errors
    assert w.page.locator(f"tr#failed-{row_of(web_engine, 'A001')['id']}").count() == 0
    w.shot(f"deliveries-{width}")
    _fits(w, "/admin/deliveries", width)
    w.assert_clean()


@pytest.mark.parametrize("width", WIDTHS)
def test_browser_worklist_row_says_why_the_e_mail_was_not_sent_and_sign_in_fits(
    watched: Any, web_engine: Engine, failed: dict[str, Any], width: int
) -> None:
    w = watched(width)
    w.go("/signin")
    w.shot(f"signin-{width}")
    _fits(w, "/signin", width)
    w.sign_in("clinician")

    w.go("/worklist?team=ward7")

    assert w.status == 200
    problem = w.page.locator(f"tr#reminder-{failed['id']} .delivery-problem")
    said = problem.inner_text()
    assert said.startswith("E-mail not sent: ") and "carriage return" in said
    box = problem.bounding_box()
    assert problem.is_visible() and box and box["x"] + box["width"] <= width, box
    good = w.page.locator(f"tr#reminder-{row_of(web_engine, 'A001')['id']}")
    assert good.count() == 1 and good.locator(".delivery-problem").count() == 0
    w.shot(f"worklist_failed-{width}")
    _fits(w, "/worklist", width)
    w.assert_clean()
