"""Journeys in a real browser: a clinician signs in, logs a bone scan with two sites,
sees the assessment change, records what a reminder asks for and sees it leave the
worklist, and acknowledges another; a surgeon cannot edit; the v2 calls (no HO, a
passed forecast, lapsed reminders) read clearly on a phone, a tablet and a desktop;
no page logs a console error. Every test name says "browser": CI fails if any of
them was skipped."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.e2e.conftest import AS_OF
from tests.web.web_support import V2_MRN


def test_browser_clinician_logs_a_two_site_bone_scan_and_sees_the_assessment_change(
    watched: Any,
) -> None:
    w = watched()
    w.go("/patients/H-NONE")
    assert "/signin" in w.page.url  # anonymous views go to sign-in
    w.shot("signin")
    w.sign_in("clinician")
    w.shot("worklist")
    w.go("/patients/H-NONE")
    hip = w.page.locator("#site-hip-left")
    assert hip.get_attribute("data-stage") == "none"
    w.shot("patient_before")
    w.page.click("a:has-text('Bone scan')")
    w.page.fill("#f-date", "2026-10-01")
    for i, side in enumerate(("left", "right")):
        w.page.select_option(f"#r-measurements-{i}-site", "hip")
        w.page.select_option(f"#r-measurements-{i}-side", side)
        w.page.select_option(f"#r-measurements-{i}-phase", "delayed")
        w.page.fill(f"#r-measurements-{i}-ratio", "4.5" if side == "left" else "3.2")
    w.shot("bone_scan_form")
    w.page.click("button:has-text('Save')")
    w.page.wait_for_url("**/patients/H-NONE?done=*")
    w.shot("patient_after")
    assert w.page.locator("#site-hip-left").get_attribute("data-stage") == "early"
    assert w.page.locator("#site-hip-right").get_attribute("data-stage") == "early"
    assert "4.50" in w.page.locator("#site-hip-left").inner_text()
    assert w.errors == []


def test_browser_form_errors_show_in_place_and_keep_what_was_typed(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-NONE/bone-scans/new")
    w.page.fill("#f-date", "2026-10-02")
    w.page.select_option("#r-measurements-0-site", "knee")
    w.page.select_option("#r-measurements-0-side", "left")
    w.page.select_option("#r-measurements-0-phase", "delayed")
    w.page.fill("#r-measurements-0-ratio", "0")
    w.page.click("button:has-text('Save')")
    w.shot("bone_scan_refused")
    ratio = w.page.locator("#r-measurements-0-ratio")
    assert ratio.get_attribute("aria-invalid") == "true"
    assert ratio.input_value() == "0"
    assert w.page.locator("#r-measurements-0-ratio-err").is_visible()
    assert w.errors == []


def test_browser_enter_in_a_field_saves_the_form_rather_than_adding_a_row(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-NONE/bone-scans/new")
    w.page.fill("#f-date", "2026-10-03")
    w.page.select_option("#r-measurements-0-site", "knee")
    w.page.select_option("#r-measurements-0-side", "right")
    w.page.select_option("#r-measurements-0-phase", "delayed")
    w.page.fill("#r-measurements-0-ratio", "2.5")
    w.page.press("#r-measurements-0-ratio", "Enter")
    w.page.wait_for_url("**/patients/H-NONE?done=*")
    assert w.page.locator("#site-knee-right").count() == 1
    assert w.errors == []


def _worklist_row(w: Any, rule_words: str, mrn: str) -> tuple[Any, int]:
    """The worklist row of `mrn`'s first open reminder of that rule, and its id."""
    rows = w.page.locator("tbody tr").filter(has_text=rule_words).filter(has_text=mrn)
    assert rows.count() >= 1, f"no open {rule_words} reminder of {mrn} on the worklist"
    row = rows.first
    label = row.locator("button:has-text('Acknowledge')").get_attribute("aria-label")
    found = re.match(r"Acknowledge reminder (\d+) ", label or "")
    assert found, label
    return row, int(found.group(1))


def test_browser_recording_what_a_reminder_asks_for_takes_it_off_the_worklist(
    watched: Any,
) -> None:
    """ "Record it" on H-MINERAL's monitoring radiograph, the form's own defaults
    (modality, site, side) plus what a person types (the date, what the film shows),
    Save; on the next load of the worklist that reminder is gone (model-spec 9, v2:
    a save re-plans the patient's reminders in the same request)."""
    w = watched()
    w.sign_in("clinician")
    row, reminder_id = _worklist_row(w, "monitoring radiograph", "H-MINERAL")
    assert "hip left" in row.inner_text()
    row.locator("a:has-text('Record it')").click()
    w.page.wait_for_url("**/patients/H-MINERAL/imaging/new?*")
    assert w.page.locator("#f-modality").input_value() == "radiograph"
    assert w.page.locator("#r-findings-0-site").input_value() == "hip"
    assert w.page.locator("#r-findings-0-side").input_value() == "left"
    w.page.fill("#f-date", AS_OF.isoformat())
    w.page.select_option("#r-findings-0-ho", "present")
    w.page.select_option("#r-findings-0-calcification", "zonal")
    w.shot("record_it_form")
    w.page.click("button:has-text('Save')")
    w.page.wait_for_url("**/patients/H-MINERAL?done=*")
    w.go("/worklist")
    w.shot("worklist_after_record_it")
    gone = w.page.locator(f"button[aria-label^='Acknowledge reminder {reminder_id} (']")
    assert gone.count() == 0, (
        f"reminder {reminder_id} is still open after the radiograph that satisfies it was "
        "saved: the save did not re-plan the patient's reminders"
    )
    assert w.errors == []


def test_browser_clinician_acknowledges_a_reminder_from_the_worklist(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    buttons = w.page.locator("button:has-text('Acknowledge')")
    before = buttons.count()
    assert before > 0
    label = buttons.first.get_attribute("aria-label")
    buttons.first.click()
    w.page.wait_for_url("**/worklist?done=*")
    w.shot("worklist_acknowledged")
    assert "acknowledged" in w.page.locator(".notice").inner_text()
    assert w.page.locator(f"button[aria-label='{label}']").count() == 0
    assert w.page.locator("button:has-text('Acknowledge')").count() == before - 1
    assert w.errors == []


def test_browser_surgeon_cannot_edit_and_pages_have_no_console_errors(watched: Any) -> None:
    w = watched()
    w.sign_in("surgeon")
    for path, name in (
        ("/worklist", "surgeon_worklist"),
        ("/patients?readiness=ready", "patients_ready"),
        ("/patients/H-READY", "surgeon_patient"),
        ("/board", "board"),
    ):
        w.go(path)
        w.shot(name)
    w.go("/patients/H-READY")
    assert w.page.locator("a:has-text('Bone scan')").count() == 0
    w.go("/patients/H-READY/labs/new")
    assert "Not allowed" in w.page.locator("h1").inner_text()
    w.shot("surgeon_refused")
    assert w.errors == []


def test_browser_a_stale_void_shows_the_record_as_it_is_now(
    watched: Any, web_engine: Engine
) -> None:
    from tracker.services.patients import patient_story
    from tracker.services.records import correct_lab

    story, _ = patient_story(engine=web_engine, mrn="H-MINERAL")
    lab = story.labs[0]
    w = watched()
    w.sign_in("clinician")
    w.go(f"/patients/H-MINERAL/labs/{lab.id}/edit")
    # someone else corrects the lab while this form is open
    correct_lab(
        engine=web_engine, actor="admin", record_id=lab.id, expected_version=lab.version,
        changes={"value": 321.0},
    )  # fmt: skip
    w.page.fill("#v-reason", "entered twice")
    w.page.click("button:has-text('Void this record')")
    w.shot("void_stale")
    alert = w.page.locator("form.void [role=alert]")
    assert "Not voided." in alert.inner_text() and "admin" in alert.inner_text()
    assert w.page.locator("#f-value").input_value() in ("321", "321.0")
    assert w.page.locator("#v-reason").input_value() == "entered twice"
    w.page.click("button:has-text('Void this record')")
    w.page.wait_for_url("**/patients/H-MINERAL?done=*")
    assert w.page.locator(f"a[href$='/labs/{lab.id}/edit']").count() == 0
    assert w.errors == []


RED = "rgb(164, 0, 0)"  # .readiness.not_ready in style.css


@pytest.mark.parametrize("width", [400, 768, 1400])
def test_browser_no_ho_a_passed_forecast_and_lapsed_reminders_read_clearly(
    watched: Any, width: int
) -> None:
    w = watched(width)
    w.sign_in("surgeon")
    w.go(f"/patients/{V2_MRN}")
    w.shot(f"v2_patient_{width}")
    no_ho = w.page.locator("#site-hip-right h3 .readiness")
    assert no_ho.inner_text() == "no HO"
    assert no_ho.evaluate("e => getComputedStyle(e).color") != RED
    knee = w.page.locator("#site-knee-left")
    assert knee.locator("h3 .readiness").evaluate("e => getComputedStyle(e).color") == RED
    passed = knee.locator("[data-forecast='passed']")
    assert passed.is_visible()
    assert "forecast date already passed: a new scan is due" in passed.inner_text()
    lapsed = w.page.locator("tr.reminder.lapsed")
    assert lapsed.count() == 3
    assert "long past when first planned, not sent" in lapsed.first.inner_text()
    background = lapsed.first.locator("td").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    open_rows = w.page.locator("tr.reminder.due, tr.reminder.pending")
    assert open_rows.count() == 0  # V-PASSED has nothing open: all lapsed
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")  # set apart
    w.go("/board")
    w.shot(f"v2_board_{width}")
    rescan = w.page.locator(f"#rescan tr[data-mrn='{V2_MRN}']")
    assert rescan.count() == 1 and rescan.is_visible()
    assert w.page.locator(f"#soon tr[data-mrn='{V2_MRN}']").count() == 0
    assert w.page.locator("[data-field='protocol_fingerprint']").inner_text().startswith("sha256:")
    assert w.errors == []
