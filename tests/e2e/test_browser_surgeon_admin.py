"""A surgeon's and an admin's journeys in a real browser.

The surgeon pages through the board, filters it to the ready sites, opens a patient,
reads the HTML report in the browser and downloads the PDF. The admin adds a user,
changes a role, resets a password (that user, signing in, is held on the change-
password page until they choose their own) and filters the audit trail by action.
Every form is sent first with its defaults, then with typical values. Every test
name says "browser": CI fails if any of them was skipped."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.web.web_support import PASSWORD

NEW_PASSWORD = "a brand new staple"


def _readiness_shown(w: Any) -> list[str]:
    return [t.strip() for t in w.page.locator("main td.readiness").all_inner_texts()]


def test_browser_surgeon_pages_the_board_filters_ready_and_opens_the_reports(
    watched: Any,
) -> None:
    w = watched()
    w.sign_in("surgeon")

    # the patient list filtered to ready sites (the form as a surgeon fills it)
    w.page.click("nav[aria-label=Main] a:has-text('Patients')")
    w.page.wait_for_url("**/patients")
    assert w.page.locator("main a[href^='/patients/new']").count() == 0  # reads, adds no one
    w.page.select_option("#readiness", "ready")
    assert w.submit(w.page.locator("form[role=search] button:has-text('Filter')")) == 200
    ready = w.page.locator("main table tbody tr")
    assert ready.count() >= 1
    assert "H-READY" in w.page.locator("main table tbody").inner_text()
    for text in w.page.locator("main table tbody tr td:nth-child(8)").all_inner_texts():
        assert ": " in text and "ready" in text and "not_ready" not in text, text

    # the board, as it opens and with its filter form's defaults
    w.page.click("nav[aria-label=Main] a:has-text('Surgeon board')")
    w.page.wait_for_url("**/board")
    first_page = w.page.locator("main tr[data-mrn]").evaluate_all(
        "rows => rows.map(r => [r.dataset.mrn, r.dataset.site, r.dataset.side].join(' '))"
    )
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    assert 0 < len(first_page) <= 50
    # the next page: other sites, and a way back to the first
    onward = w.page.locator("nav.pager a[rel=next]")
    assert onward.count() == 1, "the board does not page (demo: more than 50 sites)"
    onward.click()
    w.page.wait_for_url("**/board?*after=*")
    assert w.status == 200
    second_page = w.page.locator("main tr[data-mrn]").evaluate_all(
        "rows => rows.map(r => [r.dataset.mrn, r.dataset.site, r.dataset.side].join(' '))"
    )
    assert second_page and not set(second_page) & set(first_page)
    w.shot("board_page_2")
    w.page.click("nav.pager a:has-text('First page')")
    w.page.wait_for_url(re.compile(r"/board$"))

    # readiness = ready
    w.page.select_option("#bd-readiness", "ready")
    assert w.submit(w.page.locator("form.filters button:has-text('Show')")) == 200
    assert parse_qs(urlsplit(w.page.url).query).get("readiness") == ["ready"]
    shown = _readiness_shown(w)
    assert shown and set(shown) == {"ready"}, shown
    assert w.page.locator("#bd-readiness").input_value() == "ready"
    w.shot("board_ready")

    # open the patient, who a surgeon can read but not edit
    w.page.click("#soon tr[data-mrn='H-READY'] a[href='/patients/H-READY']")
    w.page.wait_for_url("**/patients/H-READY")
    assert w.page.locator(".patient-banner .name").inner_text() == "HUGHES, Gareth"
    assert w.page.locator("p.actions a:has-text('Bone scan')").count() == 0
    assert w.page.locator("a:has-text('Edit patient')").count() == 0

    # the HTML report opens as a page (not a download) and names the patient
    downloads: list[Any] = []
    w.page.on("download", lambda d: downloads.append(d))
    w.page.click("p.actions a:has-text('HTML')")
    w.page.wait_for_url("**/patients/H-READY/report.html?*")
    assert w.status == 200
    assert "Heterotopic ossification" in w.page.locator("h1").first.inner_text()
    assert "HUGHES" in w.page.locator("body").inner_text()
    w.shot("report_html")
    w.page.go_back()
    w.page.wait_for_url("**/patients/H-READY")

    # the PDF: opens in the browser's viewer, and its bytes are a PDF named for a save
    link = w.page.locator("p.actions a:has-text('PDF')")
    href = link.get_attribute("href") or ""
    with w.page.expect_navigation(wait_until="commit") as opened:
        link.click()
    assert opened.value.status == 200
    assert opened.value.headers["content-type"] == "application/pdf"
    assert downloads == [], "a report was sent as a download instead of opening"
    pdf = w.context.request.get(w.base + href)
    assert pdf.status == 200
    assert pdf.body()[:5] == b"%PDF-"
    disposition = pdf.headers["content-disposition"]
    assert disposition.startswith("inline") and ".pdf" in disposition, disposition

    # a surgeon may not open a record form
    w.go("/patients/H-READY/labs/new")
    assert w.status == 403
    assert "Not allowed" in w.page.locator("h1").inner_text()
    w.shot("surgeon_refused")
    w.assert_clean()


def test_browser_admin_resets_a_password_changes_a_role_and_reads_the_audit_trail(
    watched: Any,
) -> None:
    admin = watched()
    admin.sign_in("admin")
    admin.page.click("nav[aria-label=Main] a:has-text('Users')")
    admin.page.wait_for_url("**/admin/users")
    users = admin.page.locator("table.users")
    assert users.locator("tr[data-user='surgeon'] td.when").first.inner_text() == "never"

    # add a user: as the form opens (refused, marked), then filled in
    add = admin.page.locator("form[action='/admin/users'] button:has-text('Add user')")
    assert admin.submit(add) == 422
    admin.ok_or_marked("add-user form with its defaults")
    assert admin.page.locator("#u-username").get_attribute("aria-invalid") == "true"
    admin.page.fill("#u-username", "nurse.ward3")
    admin.page.select_option("#u-role", "clinician")
    admin.page.fill("#u-password", PASSWORD)
    admin.page.fill("#u-confirm", PASSWORD)
    assert admin.submit(add) == 200
    admin.page.wait_for_url(re.compile(r"/admin/users/\d+$"))
    assert any("Added nurse.ward3 (clinician)" in n for n in admin.notices()), admin.notices()

    # the surgeon's page: role and team form as it opens, then a role change
    admin.page.click("a:has-text('All users')")
    admin.page.click("table.users tr[data-user='surgeon'] a")
    admin.page.wait_for_url(re.compile(r"/admin/users/\d+$"))
    surgeon_page = admin.page.url
    save = admin.page.locator("button:has-text('Save role and team')")
    assert admin.submit(save) == 200
    assert any("Nothing to change for surgeon" in n for n in admin.notices()), admin.notices()
    admin.page.select_option("#a-role", "clinician")
    admin.page.select_option("#a-team", "spinal_unit")
    assert admin.submit(save) == 200
    assert admin.page.url == surgeon_page
    notices = " ".join(admin.notices())
    assert "Saved surgeon: role clinician, team spinal unit" in notices, notices
    assert admin.page.locator("#user-role").inner_text() == "clinician"
    assert admin.page.locator("#user-team").inner_text() == "spinal unit"

    # reset the password with the form's defaults: a temporary one, shown once
    assert admin.submit(admin.page.locator("button:has-text('Reset password')")) == 200
    temporary = admin.page.locator("#temporary-password").inner_text().strip()
    assert len(temporary) >= 8
    assert "must choose a new one" in admin.page.locator("#password-state").inner_text()
    admin.shot("admin_user_reset")

    # the surgeon signs in with it and is held on the change-password page
    user = watched()
    user.sign_in("surgeon", temporary, lands=re.compile(r"/account/password(\?|$)"))
    assert user.page.locator("#password-due").is_visible()
    assert user.page.locator("nav[aria-label=Main]").count() == 0
    user.go("/patients")
    assert urlsplit(user.page.url).path == "/account/password", "a reset user got past"
    change = user.page.locator("button:has-text('Change password')")
    assert user.submit(change) == 422  # as it opens: nothing typed
    user.ok_or_marked("change-password form with its defaults")
    user.page.fill("#current_password", temporary)
    user.page.fill("#new_password", NEW_PASSWORD)
    user.page.fill("#confirm", NEW_PASSWORD)
    user.shot("change_password")
    assert user.submit(change) == 200
    assert urlsplit(user.page.url).path == "/patients"  # where they were going
    assert any("password is changed" in n for n in user.notices()), user.notices()
    assert user.page.locator("header .me").inner_text() == "surgeon (clinician)"  # new role
    user.page.click("button:has-text('Sign out')")
    user.page.wait_for_url("**/signin")
    user.sign_in("surgeon", NEW_PASSWORD)  # the chosen password works, straight in

    # the admin sees the last sign-in and the password no longer due
    admin.go("/admin/users")
    row = admin.page.locator("table.users tr[data-user='surgeon']")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row.locator("td.when").first.inner_text())
    assert "new password due" not in row.inner_text()

    # the audit trail: as its filter form opens, then by action
    admin.page.click("nav[aria-label=Main] a:has-text('Audit trail')")
    admin.page.wait_for_url("**/admin/audit")
    assert admin.submit(admin.page.locator("form.filters button:has-text('Show')")) == 200
    assert admin.page.locator("table.audit tbody tr").count() > 0
    admin.page.select_option("#f-action", "sign_in")
    assert admin.submit(admin.page.locator("form.filters button:has-text('Show')")) == 200
    assert parse_qs(urlsplit(admin.page.url).query).get("action") == ["sign_in"]
    rows = admin.page.locator("table.audit tbody tr")
    assert rows.count() >= 3  # admin, surgeon twice
    actions = {t.strip() for t in rows.locator("td:nth-child(3)").all_inner_texts()}
    said = admin.page.locator("#f-action option[value=sign_in]").inner_text().strip()
    assert actions == {said} and "_" not in said, actions  # the filter's own words
    who = {t.strip() for t in rows.locator("td:nth-child(2)").all_inner_texts()}
    assert {"admin", "surgeon"} <= who, who
    when = rows.locator("td:first-child").all_inner_texts()
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", t.strip()) for t in when), when
    admin.shot("audit_sign_ins")
    admin.page.select_option("#f-action", "user_add")
    assert admin.submit(admin.page.locator("form.filters button:has-text('Show')")) == 200
    assert "nurse.ward3" in admin.page.locator("table.audit tbody").inner_text()
    admin.assert_clean()
    user.assert_clean()
