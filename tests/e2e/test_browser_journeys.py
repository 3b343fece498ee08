"""A clinician's day in a real browser: find a patient by name and filter the list,
log a bone scan in its one form, stop a course with a reason, correct a record from
the timeline, void one with a reason, record what a reminder asks for from the
worklist, acknowledge one reminder and several at once, and add and edit a patient.

Every form is sent first as it opens (its defaults), then with what a person types:
a page that answers 4xx must mark the field at fault; none may answer 5xx. Notices
come from the server's flash (`p.notice[role=status]`), never from the URL. Every
test name says "browser": CI fails if any of them was skipped."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from sqlalchemy.engine import Engine

from tests.e2e.conftest import AS_OF
from tests.web.web_support import V2_MRN

SAVE = "form.record button[name=save][value='1']:has-text('Save')"


def _rows_of(w: Any, selector: str) -> list[str]:
    return [t.strip() for t in w.page.locator(selector).all_inner_texts()]


def _page_of(url: str) -> tuple[str, list[tuple[str, str]]]:
    """A URL as the page it shows: its path and its non-empty query values (a filter
    form sends `team=` for "any"; the app may drop it), without the #anchor."""
    parts = urlsplit(url)
    return parts.path, sorted((k, v) for k, v in parse_qsl(parts.query) if v)


# --- patients: search by name, filters ------------------------------------------------


def test_browser_clinician_finds_a_patient_by_name_and_filters_the_list(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    w.page.click("nav[aria-label=Main] a:has-text('Patients')")
    w.page.wait_for_url("**/patients")
    everyone = w.page.locator("main table tbody tr").count()
    assert everyone > 1
    # the filter form as it opens: every filter "any"
    assert w.submit(w.page.locator("form[role=search] button:has-text('Filter')")) == 200
    assert w.page.locator("main table tbody tr").count() == everyone

    # type the start of a family name and press Enter
    w.page.fill("#q", "Lindq")
    with w.page.expect_navigation():
        w.page.press("#q", "Enter")
    w.ok_or_marked("search by name")
    assert w.status == 200, w.page.locator("main").inner_text()[:300]
    assert parse_qs(urlsplit(w.page.url).query)["q"] == ["Lindq"]
    rows = w.page.locator("main table tbody tr")
    assert rows.count() == 1
    assert "LINDQVIST, Erik" in rows.first.inner_text()
    assert "H-MINERAL" in rows.first.inner_text()
    assert w.page.locator("#q").input_value() == "Lindq"

    # an injury filter, the search cleared: only spinal cord injuries
    w.page.fill("#q", "")
    w.page.select_option("#injury", "spinal_cord_injury")
    assert w.submit(w.page.locator("form[role=search] button:has-text('Filter')")) == 200
    injuries = _rows_of(w, "main table tbody tr td:nth-child(5)")
    assert injuries and 0 < len(injuries) < everyone
    assert all("spinal cord injury" in text for text in injuries), injuries
    assert "spinal_cord_injury" not in w.page.locator("main").inner_text()

    # and readiness on top: every site listed is "not ready" (or the row has one)
    w.page.select_option("#readiness", "not_ready")
    assert w.submit(w.page.locator("form[role=search] button:has-text('Filter')")) == 200
    sites = _rows_of(w, "main table tbody tr td:nth-child(8)")
    assert sites, "no spinal-cord-injury patient has a site not ready"
    assert all("not ready" in text for text in sites), sites
    assert w.page.locator("#injury").input_value() == "spinal_cord_injury"
    w.shot("patients_filtered")

    # open the first patient found
    first = w.page.locator("main table tbody tr").first
    mrn = first.locator("td:nth-child(2)").inner_text().strip()
    first.locator("td:first-child a").click()
    w.page.wait_for_url(f"**/patients/{mrn}")
    assert w.page.locator(".patient-banner .mrn").inner_text() == mrn
    w.assert_clean()


# --- the bone-scan form -------------------------------------------------------------


def test_browser_clinician_logs_a_two_site_bone_scan_and_sees_the_assessment_change(
    watched: Any,
) -> None:
    w = watched()
    w.go("/patients/H-NONE")
    assert "/signin" in w.page.url  # anonymous views go to sign-in
    w.shot("signin")
    # the sign-in form as it opens: nothing typed, both fields marked
    assert w.submit(w.page.locator("button:has-text('Sign in')")) == 422
    w.ok_or_marked("sign-in form with its defaults")
    assert w.page.locator("#username").get_attribute("aria-invalid") == "true"
    w.sign_in("clinician")
    w.go("/patients/H-NONE")
    assert w.page.locator("#site-hip-left").get_attribute("data-stage") == "none"
    w.page.click("p.actions a:has-text('Bone scan')")
    w.page.wait_for_url("**/patients/H-NONE/bone-scans/new")
    assert w.page.locator(".patient-banner .name").inner_text() == "FLETCHER, Daniel"
    assert w.page.locator("#f-date").input_value() == AS_OF.isoformat()  # today
    assert w.page.locator("#f-modality").input_value() == "bone_scan"
    assert w.page.evaluate("document.activeElement.id") == "f-date"  # first field focused

    # as it opens: a scan of no site is refused, with a field marked
    status = w.submit(w.page.locator(SAVE))
    w.ok_or_marked("bone-scan form with its defaults")
    assert status == 422, "a bone scan of no site was saved"

    w.page.fill("#f-date", "2026-10-01")
    for i, side in enumerate(("left", "right")):
        w.page.select_option(f"#r-sites-{i}-site", "hip")
        w.page.select_option(f"#r-sites-{i}-side", side)
        w.page.select_option(f"#r-sites-{i}-ho", "present")
        w.page.fill(f"#r-sites-{i}-delayed_ratio", "4.5" if side == "left" else "3.2")
    w.shot("bone_scan_form")
    assert w.submit(w.page.locator(SAVE)) == 200
    assert urlsplit(w.page.url).path == "/patients/H-NONE" and "done=" not in w.page.url
    notices = " ".join(w.notices())
    assert "Bone scan saved for FLETCHER, Daniel (H-NONE)" in notices, notices
    assert "left hip" in notices and "1 Oct 2026" in notices
    w.shot("patient_after_bone_scan")
    assert w.page.locator("#site-hip-left").get_attribute("data-stage") == "early"
    assert w.page.locator("#site-hip-right").get_attribute("data-stage") == "early"
    assert "4.50" in w.page.locator("#site-hip-left").inner_text()
    assert "3.20" in w.page.locator("#site-hip-right").inner_text()
    w.go("/patients/H-NONE")
    assert w.notices() == []  # a notice is shown once
    w.assert_clean()


def test_browser_bone_scan_errors_name_the_finding_and_keep_what_was_typed(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-NONE/bone-scans/new")
    w.page.select_option("#r-sites-0-site", "knee")
    w.page.select_option("#r-sites-0-side", "left")
    w.page.select_option("#r-sites-0-ho", "present")
    w.page.fill("#r-sites-0-delayed_ratio", "2.5")
    w.page.select_option("#r-sites-1-site", "hip")
    w.page.select_option("#r-sites-1-side", "right")
    w.page.fill("#r-sites-1-delayed_ratio", "3.1")  # HO left unanswered
    assert w.submit(w.page.locator(SAVE)) == 422
    w.ok_or_marked("bone scan with a site's HO missing")
    w.shot("bone_scan_refused")
    summary = w.page.locator("main .error[role=alert]").inner_text()
    assert re.search(r"\b2 \(right hip\): HO is required", summary), summary
    assert "sites[1]" not in summary and "findings[" not in summary  # words, not paths
    ho = w.page.locator("#r-sites-1-ho")
    assert ho.get_attribute("aria-invalid") == "true"
    assert w.page.locator("#r-sites-1-ho-err").is_visible()
    assert w.page.evaluate("document.activeElement.id") == "r-sites-1-ho"
    assert w.page.locator("#r-sites-1-delayed_ratio").input_value() == "3.1"
    assert w.page.locator("#r-sites-0-delayed_ratio").input_value() == "2.5"
    w.page.select_option("#r-sites-1-ho", "present")
    assert w.submit(w.page.locator(SAVE)) == 200
    assert urlsplit(w.page.url).path == "/patients/H-NONE"
    assert w.page.locator("#site-knee-left").count() == 1
    w.assert_clean()


def test_browser_enter_in_a_bone_scan_field_saves_rather_than_adding_a_row(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-NONE/bone-scans/new")
    w.page.select_option("#r-sites-0-site", "knee")
    w.page.select_option("#r-sites-0-side", "right")
    w.page.select_option("#r-sites-0-ho", "present")
    w.page.fill("#r-sites-0-delayed_ratio", "2.5")
    with w.page.expect_navigation():
        w.page.press("#r-sites-0-delayed_ratio", "Enter")
    assert w.status == 200
    assert urlsplit(w.page.url).path == "/patients/H-NONE"
    assert w.page.locator("#site-knee-right").count() == 1
    w.assert_clean()


# --- courses, corrections, voids -----------------------------------------------------


def test_browser_clinician_stops_a_course_and_the_reason_shows_on_the_patient_page(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-EARLY")
    course = w.page.locator("#course-1")
    assert "ongoing" in course.inner_text()
    course.locator("a:has-text('Stop')").click()
    w.page.wait_for_url("**/patients/H-EARLY/courses/1/stop")
    assert w.page.locator(".patient-banner .name").inner_text() == "OSEI, Abena"
    assert w.page.locator("#f-end_date").input_value() == AS_OF.isoformat()
    # as it opens: the reason is missing, and said so beside it
    assert w.submit(w.page.locator(SAVE)) == 422
    w.ok_or_marked("stop-course form with its defaults")
    assert w.page.locator("#f-reason").get_attribute("aria-invalid") == "true"
    reason = "upper GI bleed on etidronate"
    w.page.fill("#f-reason", reason)
    w.shot("course_stop_form")
    assert w.submit(w.page.locator(SAVE)) == 200
    assert urlsplit(w.page.url).path == "/patients/H-EARLY"
    notices = " ".join(w.notices())
    assert "Course stopped for OSEI, Abena (H-EARLY)" in notices, notices
    course = w.page.locator("#course-1")
    assert course.locator(".stop-reason").inner_text().strip() == reason
    assert "ongoing" not in course.inner_text()
    assert "12 weeks" in course.inner_text()  # the planned weeks stay in view
    assert course.locator("a:has-text('Stop')").count() == 0
    w.assert_clean()


def test_browser_clinician_corrects_a_lab_from_the_timeline_edit_link(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-EARLY")
    row = w.page.locator("table.timeline tr.lab").filter(has_text="ALP 185")
    assert row.count() == 1
    row.locator("a.edit").click()
    w.page.wait_for_url(re.compile(r"/patients/H-EARLY/labs/\d+/edit$"))
    assert w.page.locator("h1").inner_text() == "Correct lab result"
    assert w.page.locator(".patient-banner .mrn").inner_text() == "H-EARLY"
    assert w.page.locator("#f-value").input_value() in ("185", "185.0")
    # as it opens (nothing changed): accepted, nothing lost
    w.submit(w.page.locator(SAVE))
    assert w.ok_or_marked("lab correction with its defaults") == 200
    assert "ALP 185" in w.page.locator("table.timeline").inner_text()
    w.page.locator("table.timeline tr.lab").filter(has_text="ALP 185").locator("a.edit").click()
    w.page.wait_for_url(re.compile(r"/labs/\d+/edit$"))
    w.page.fill("#f-value", "192")
    assert w.submit(w.page.locator(SAVE)) == 200
    assert urlsplit(w.page.url).path == "/patients/H-EARLY"
    assert any("Lab result corrected for OSEI, Abena" in n for n in w.notices()), w.notices()
    timeline = w.page.locator("table.timeline").inner_text()
    assert "ALP 192" in timeline and "ALP 185" not in timeline
    change = w.page.locator("table.changes tr.change.correct").first
    assert "clinician" in change.inner_text()
    assert re.search(r"185(\.0)? → 192", change.inner_text()), change.inner_text()
    w.assert_clean()


def test_browser_clinician_voids_a_record_with_a_reason(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    w.go("/patients/H-EARLY")
    w.page.locator("table.timeline tr.lab").filter(has_text="CRP").locator("a.edit").click()
    w.page.wait_for_url(re.compile(r"/patients/H-EARLY/labs/\d+/edit$"))
    void = w.page.locator("form.void button:has-text('Void this record')")
    # as it opens: no reason, refused beside the reason field
    assert w.submit(void) == 422
    w.ok_or_marked("void with its defaults")
    assert w.page.locator("#v-reason").get_attribute("aria-invalid") == "true"
    w.page.fill("#v-reason", "entered on the wrong patient")
    w.shot("void_form")
    assert w.submit(void) == 200
    assert urlsplit(w.page.url).path == "/patients/H-EARLY"
    assert any("voided for OSEI, Abena" in n for n in w.notices()), w.notices()
    assert "CRP" not in w.page.locator("table.timeline").inner_text()
    voided = w.page.locator("table.changes tr.change.void")
    assert voided.count() == 1
    assert "entered on the wrong patient" in voided.inner_text()
    w.assert_clean()


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
    assert w.submit(w.page.locator("button:has-text('Void this record')")) == 409
    w.shot("void_stale")
    alert = w.page.locator("form.void [role=alert]")
    assert "Not voided." in alert.inner_text() and "admin" in alert.inner_text()
    assert w.page.locator("#f-value").input_value() in ("321", "321.0")
    assert w.page.locator("#v-reason").input_value() == "entered twice"
    assert w.submit(w.page.locator("button:has-text('Void this record')")) == 200
    assert urlsplit(w.page.url).path == "/patients/H-MINERAL"
    assert w.page.locator(f"a[href$='/labs/{lab.id}/edit']").count() == 0
    w.assert_clean()


# --- the worklist: record it, acknowledge one, acknowledge several ---------------------


def _row_id(row: Any) -> int:
    found = re.fullmatch(r"reminder-(\d+)", row.get_attribute("id") or "")
    assert found, row.get_attribute("id")
    return int(found.group(1))


def test_browser_record_it_names_the_reminder_prefills_it_and_returns_to_the_worklist(
    watched: Any,
) -> None:
    """ "Record it" on a monitoring radiograph: the form names the reminder, fills in
    its site, side and date; saved, the browser is back on the worklist (with its
    filter) and the reminder has gone from it (a save re-plans, model-spec 9)."""
    w = watched()
    w.sign_in("clinician")
    w.page.select_option("#wl-rule", "monitoring_radiograph")
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    back = w.page.url
    rows = w.page.locator("table.worklist tbody tr").filter(has_text="H-MINERAL")
    assert rows.count() >= 1, "no open monitoring radiograph of H-MINERAL on the worklist"
    row = rows.first
    reminder_id = _row_id(row)
    place = row.locator("td:nth-child(6)").inner_text().strip()  # "left hip"
    side, site = place.split(" ", 1)
    row.locator("a:has-text('Record it')").click()
    w.page.wait_for_url("**/patients/H-MINERAL/imaging/new?*")
    closes = w.page.locator("p.closes").inner_text()
    assert f"monitoring radiograph at {place}" in closes, closes
    assert w.page.locator(".patient-banner .name").inner_text() == "LINDQVIST, Erik"
    assert w.page.locator("#f-modality").input_value() == "radiograph"
    assert w.page.locator("#r-findings-0-site").input_value() == site
    assert w.page.locator("#r-findings-0-side").input_value() == side
    due = w.page.locator("#f-date").input_value()
    assert due and due <= AS_OF.isoformat()
    # as it opens: what the film shows is not said yet, so HO is marked
    assert w.submit(w.page.locator(SAVE)) == 422
    w.ok_or_marked("Record it with the form's defaults")
    assert w.page.locator("#r-findings-0-ho").get_attribute("aria-invalid") == "true"
    assert "monitoring radiograph" in w.page.locator("p.closes").inner_text()  # still named
    w.page.select_option("#r-findings-0-ho", "present")
    w.page.select_option("#r-findings-0-calcification", "zonal")
    w.shot("record_it_form")
    assert w.submit(w.page.locator(SAVE)) == 200
    assert _page_of(w.page.url) == _page_of(back), "Record it did not return to the worklist"
    notices = " ".join(w.notices())
    assert "Reminder closed: monitoring radiograph" in notices, notices
    assert w.page.locator("#wl-rule").input_value() == "monitoring_radiograph"
    assert w.page.locator(f"#reminder-{reminder_id}").count() == 0, (
        f"reminder {reminder_id} is still open after the radiograph that satisfies it"
    )
    w.assert_clean()


def test_browser_clinician_acknowledges_a_reminder_and_comes_back_where_they_were(
    watched: Any,
) -> None:
    w = watched(768)
    w.sign_in("clinician")
    everything = w.page.locator("table.worklist tbody tr").count()
    # the filter form as it opens: every open reminder, as before
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    assert w.page.locator("table.worklist tbody tr").count() == everything
    w.page.select_option("#wl-team", "spinal_unit")
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    filtered = w.page.url
    rows = w.page.locator("table.worklist tbody tr")
    before = rows.count()
    assert before >= 3
    assert all("spinal unit" in t for t in _rows_of(w, "table.worklist tbody tr td:nth-child(4)"))
    chosen, following = rows.nth(1), rows.nth(2)
    chosen_id, following_id = _row_id(chosen), _row_id(following)
    rule = chosen.locator("td:nth-child(5)").inner_text().split("\n")[0].strip()
    button = chosen.locator("button:has-text('Acknowledge')")
    assert (button.get_attribute("aria-label") or "").startswith(f"Acknowledge {rule} for ")
    assert w.submit(button) == 200
    assert _page_of(w.page.url) == _page_of(filtered)
    assert w.page.evaluate("location.hash") == f"#reminder-{following_id}"
    w.shot("worklist_acknowledged")
    notices = w.notices()
    assert len(notices) == 1 and notices[0].startswith(f"Acknowledged: {rule}"), notices
    assert not re.fullmatch(r"\d+", notices[0])
    assert w.page.locator(f"#reminder-{chosen_id}").count() == 0
    assert rows.count() == before - 1
    assert w.page.locator("#wl-team").input_value() == "spinal_unit"  # filter kept
    assert w.page.locator(f"#reminder-{following_id}").is_visible()
    w.assert_clean()


def test_browser_clinician_bulk_acknowledges_several_reminders_with_a_reason(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("clinician")
    w.page.select_option("#wl-window", "overdue")
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    filtered = w.page.url
    bulk = w.page.locator("#bulk-ack button:has-text('Acknowledge ticked')")
    assert bulk.count() == 1, "no bulk acknowledge on the worklist"
    rows = w.page.locator("table.worklist tbody tr")
    before = rows.count()
    assert before >= 4

    # as it opens: nothing ticked and no reason; the browser holds the form back at
    # the required reason, and the page stays where it is
    loads = len(w.documents)
    bulk.click()
    assert w.page.evaluate("document.getElementById('bulk-reason').validity.valueMissing")
    assert len(w.documents) == loads and w.page.url == filtered
    assert w.page.locator("#bulk-reason").evaluate("e => e.matches(':invalid')")

    # a reason but nothing ticked: the server refuses in words, the page stays filtered
    w.page.fill("#bulk-reason", "reviewed at the Monday meeting")
    assert w.submit(bulk) == 422
    w.ok_or_marked("bulk acknowledge with nothing ticked")
    assert w.page.locator("#worklist-error").is_visible()
    assert w.page.locator("#wl-window").input_value() == "overdue"

    ticked = [rows.nth(i) for i in (0, 1, 2)]
    ids = [_row_id(r) for r in ticked]
    following = _row_id(rows.nth(3))
    for row in ticked:
        row.locator("input[type=checkbox][name=reminder]").check()
    w.page.fill("#bulk-reason", "reviewed at the Monday meeting")
    w.shot("worklist_bulk_ticked")
    assert w.submit(bulk) == 200
    assert _page_of(w.page.url) == _page_of(filtered)
    assert w.page.evaluate("location.hash") == f"#reminder-{following}"
    notices = " ".join(w.notices())
    assert "Acknowledged 3 reminders (reviewed at the Monday meeting)" in notices, notices
    for rid in ids:
        assert w.page.locator(f"#reminder-{rid}").count() == 0
    assert rows.count() == before - 3
    assert w.page.locator("#wl-window").input_value() == "overdue"
    w.assert_clean()


# --- adding and editing a patient ----------------------------------------------------


def test_browser_clinician_adds_a_patient_and_edits_it(watched: Any) -> None:
    w = watched()
    w.sign_in("clinician")
    w.page.click("nav[aria-label=Main] a:has-text('Patients')")
    w.page.wait_for_url("**/patients")
    add = w.page.locator("main a[href^='/patients/new']")
    missing = [] if add.count() else ["the patients page has no link to add a patient"]
    if add.count():
        add.first.click()
    else:  # go on with the rest of the journey; the test fails at its end
        w.go("/patients/new")
    w.page.wait_for_url("**/patients/new*")
    # as it opens: no MRN, marked
    assert w.submit(w.page.locator("form.record button:has-text('Save')")) == 422
    w.ok_or_marked("add-patient form with its defaults")
    assert w.page.locator("#p-mrn").get_attribute("aria-invalid") == "true"
    w.page.fill("#p-mrn", "E2E-0001")
    w.page.fill("#p-family_name", "Ngata")
    w.page.fill("#p-given_name", "Aroha")
    w.page.fill("#p-birth_date", "1988-02-14")
    w.page.select_option("#p-sex", "female")
    w.page.select_option("#p-team", "spinal_unit")
    w.shot("patient_add_form")
    assert w.submit(w.page.locator("form.record button:has-text('Save')")) == 200
    assert urlsplit(w.page.url).path == "/patients/E2E-0001"
    assert any("E2E-0001" in n and "added" in n for n in w.notices()), w.notices()
    banner = w.page.locator(".patient-banner")
    assert banner.locator(".name").inner_text() == "NGATA, Aroha"
    assert banner.locator(".team").inner_text() == "spinal unit"

    w.page.click("a:has-text('Edit patient')")
    w.page.wait_for_url("**/patients/E2E-0001/edit")
    assert w.page.locator("#p-family_name").input_value() == "Ngata"
    # as it opens: nothing to change, accepted
    w.submit(w.page.locator("form.record button:has-text('Save')"))
    assert w.ok_or_marked("edit-patient form with its defaults") == 200
    assert any("Nothing changed" in n for n in w.notices()), w.notices()
    w.page.click("a:has-text('Edit patient')")
    w.page.wait_for_url("**/patients/E2E-0001/edit")
    w.page.select_option("#p-team", "trauma_ward")
    w.page.fill("#p-given_name", "Aroha Mere")
    assert w.submit(w.page.locator("form.record button:has-text('Save')")) == 200
    assert any("saved" in n for n in w.notices()), w.notices()
    assert w.page.locator(".patient-banner .team").inner_text() == "trauma ward"
    assert w.page.locator(".patient-banner .name").inner_text() == "NGATA, Aroha Mere"
    # and the search finds the new patient by name
    w.go("/patients")
    w.page.fill("#q", "ngat")
    with w.page.expect_navigation():
        w.page.press("#q", "Enter")
    assert w.status == 200
    assert "E2E-0001" in w.page.locator("main table tbody").inner_text()
    assert missing == []
    w.assert_clean()


# --- the v2 calls at three widths ----------------------------------------------------

RED = "rgb(164, 0, 0)"  # .readiness.not_ready in style.css


@pytest.mark.parametrize("width", [400, 768, 1400])
def test_browser_no_ho_a_passed_forecast_and_lapsed_reminders_read_clearly(
    watched: Any, width: int
) -> None:
    w = watched(width)
    w.sign_in("surgeon")
    w.go(f"/patients/{V2_MRN}")
    w.shot(f"v2_patient-{width}")
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
    w.shot(f"v2_board-{width}")
    rescan = w.page.locator(f"#rescan tr[data-mrn='{V2_MRN}']")
    assert rescan.count() == 1 and rescan.is_visible()
    assert w.page.locator(f"#soon tr[data-mrn='{V2_MRN}']").count() == 0
    assert w.page.locator("[data-field='protocol_fingerprint']").inner_text().startswith("sha256:")
    w.assert_clean()


# --- a busy ward: the worklist pages, and an action comes back to the same page ------


def _busy_ward(engine: Engine) -> None:
    """Ward 7: eight named patients and 64 open reminders (more than a page of 50),
    several sharing each due date, from 8 days overdue to a week ahead."""
    import datetime as dt

    from tests.services.worklist_support import Ward

    ward = Ward(engine)
    ward.team("ward_7")
    for n in range(8):
        family, given = [("Doe", "Jane"), ("Okafor", "Ada"), ("Novak", "Petra")][n % 3]
        ward.patient(f"W-{n:04d}", team="ward_7", family=family, given=given)
    for n in range(64):
        offset = n // 4 - 8
        ward.reminder(
            f"W-{n % 8:04d}",
            due=AS_OF + dt.timedelta(days=offset),
            rule=("monitoring_radiograph", "maturity_bone_scan")[n % 2],
            status="pending" if offset > 0 else "due",
        )


def _due_dates(w: Any) -> list[str]:
    cells = w.page.locator("table.worklist tbody tr td:nth-child(2)").all_inner_texts()
    return [c.strip()[:10] for c in cells]


def test_browser_the_worklist_pages_and_acknowledging_on_page_two_stays_on_page_two(
    watched: Any, web_engine: Engine
) -> None:
    _busy_ward(web_engine)
    w = watched()
    w.sign_in("clinician")
    w.page.select_option("#wl-team", "ward_7")
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    rows = w.page.locator("table.worklist tbody tr")
    assert rows.count() == 50
    first_dates = _due_dates(w)
    assert first_dates == sorted(first_dates)  # most overdue first, then due soonest
    assert "OKAFOR, Ada" in w.page.locator("table.worklist tbody").inner_text()  # names
    w.page.click("nav.pager a[rel=next]")
    w.page.wait_for_url("**/worklist?*after=*")
    page_two = w.page.url
    assert parse_qs(urlsplit(page_two).query).get("team") == ["ward_7"]  # filter kept
    assert rows.count() == 14
    assert _due_dates(w)[0] >= first_dates[-1]
    w.shot("worklist_page_2")

    # acknowledge one: back on page two, at the row after it
    chosen, following = rows.nth(2), rows.nth(3)
    chosen_id, following_id = _row_id(chosen), _row_id(following)
    assert w.submit(chosen.locator("button:has-text('Acknowledge')")) == 200
    assert _page_of(w.page.url) == _page_of(page_two)
    assert w.page.evaluate("location.hash") == f"#reminder-{following_id}"
    assert w.page.locator(f"#reminder-{chosen_id}").count() == 0
    assert rows.count() == 13
    assert any(n.startswith("Acknowledged: ") for n in w.notices()), w.notices()

    # acknowledge three at once, with a reason: still page two
    ids = [_row_id(rows.nth(i)) for i in (0, 1, 2)]
    for i in (0, 1, 2):
        rows.nth(i).locator("input[type=checkbox][name=reminder]").check()
    w.page.fill("#bulk-reason", "duplicates from the old system")
    assert w.submit(w.page.locator("#bulk-ack button:has-text('Acknowledge ticked')")) == 200
    assert _page_of(w.page.url) == _page_of(page_two)
    assert rows.count() == 10
    assert all(w.page.locator(f"#reminder-{rid}").count() == 0 for rid in ids)
    notices = " ".join(w.notices())
    assert "Acknowledged 3 reminders (duplicates from the old system)" in notices, notices
    w.page.click("nav.pager a:has-text('First page')")
    w.page.wait_for_url(re.compile(r"/worklist\?team=ward_7$"))
    assert rows.count() == 50
    w.assert_clean()
