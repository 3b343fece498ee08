"""The web app in a real browser (Debian's Chromium driven by Playwright): a
clinician signs in, logs a bone scan with two sites, sees the assessment change
and acknowledges a reminder; a surgeon cannot edit; no page logs a console error.
Screenshots are kept under test-results/screens/."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO, PASSWORD, SECRET, add_role_users
from tracker.config import Settings
from tracker.interchange.csv_import import import_folder
from tracker.store import database
from tracker.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = Path(__file__).resolve().parents[2] / "test-results" / "screens"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def web_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from tracker.protocol import Protocol
    from tracker.reminders.planner import plan

    path = tmp_path_factory.mktemp("browser") / "tracker.db"
    engine = database.make_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    add_role_users(engine)
    plan(engine=engine, as_of=dt.date.today(), protocol=Protocol())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def server(web_engine: Engine) -> Iterator[str]:
    app = create_app(Settings(database_url=str(web_engine.url)), web_engine, secret=SECRET)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


class Watched:
    """A page that remembers every console error and uncaught exception."""

    def __init__(self, browser: object, base: str):
        self.context = browser.new_context(viewport={"width": 1366, "height": 900})  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a refused form answers 422 (or 403) on purpose and Chromium logs that page
        # load as a console error: loads are judged here instead, sub-resources only
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} {response.url}")

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        SCREENS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)

    def sign_in(self, username: str) -> None:
        self.go("/signin")
        self.page.fill("#username", username)
        self.page.fill("#password", PASSWORD)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url("**/worklist")


def test_browser_clinician_logs_a_two_site_bone_scan_and_sees_the_assessment_change(
    browser: object, server: str
) -> None:
    w = Watched(browser, server)
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


def test_browser_form_errors_show_in_place_and_keep_what_was_typed(
    browser: object, server: str
) -> None:
    w = Watched(browser, server)
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
    browser: object, server: str
) -> None:
    w = Watched(browser, server)
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


def test_browser_clinician_acknowledges_a_reminder_from_the_worklist(
    browser: object, server: str
) -> None:
    w = Watched(browser, server)
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


def test_browser_surgeon_cannot_edit_and_pages_have_no_console_errors(
    browser: object, server: str
) -> None:
    w = Watched(browser, server)
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
    browser: object, server: str, web_engine: Engine
) -> None:
    from tracker.services.patients import patient_story
    from tracker.services.records import correct_lab

    story, _ = patient_story(engine=web_engine, mrn="H-MINERAL")
    lab = story.labs[0]
    w = Watched(browser, server)
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
