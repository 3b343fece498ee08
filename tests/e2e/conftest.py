"""The outer ring (architecture.md, "tests in three rings"): journeys through the
real web app in a real browser (Debian's Chromium driven by Playwright).

Each test gets a database of its own, copied from one built per session (the demo
cohort, V-PASSED, one user per role, reminders planned as of AS_OF), and a server
whose clock says AS_OF: nothing depends on the wall clock or on another test.
Screenshots go to test-results/screens/, or to HO_TRACKER_SCREENS when set.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.engine import Engine

from tests.web.web_support import (
    DEMO,
    PASSWORD,
    SECRET,
    V2_AS_OF,
    add_role_users,
    add_v2_patient,
    plan_reminders,
)
from tracker.config import Settings
from tracker.interchange.csv_import import import_folder
from tracker.store import database
from tracker.web.app import create_app

AS_OF = V2_AS_OF  # the day the app believes it is, and the day reminders were planned
CHROMIUM = Path("/usr/bin/chromium")
SCREENS = Path(
    os.environ.get("HO_TRACKER_SCREENS")
    or Path(__file__).resolve().parents[2] / "test-results" / "screens"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_SECONDS = 15
TIMEOUT_MS = 10_000  # a page or element that has not come in 10 s is not coming


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file with everything the journeys start from, built once."""
    path = tmp_path_factory.mktemp("e2e") / "template.db"
    engine = database.make_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    add_v2_patient(engine)
    add_role_users(engine)
    plan_reminders(engine, AS_OF)
    engine.dispose()  # every change is in the main file before it is copied
    return path


@pytest.fixture
def web_engine(template_database: Path, tmp_path: Path) -> Iterator[Engine]:
    """A fresh copy of the template for this test alone."""
    path = tmp_path / "tracker.db"
    shutil.copyfile(template_database, path)
    engine = database.make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def server(web_engine: Engine) -> Iterator[str]:
    """The app on a free port, its clock at AS_OF; fails the test if it never starts."""
    app = create_app(Settings(database_url=str(web_engine.url)), web_engine, secret=SECRET)
    app.state.today = lambda: AS_OF
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not uv.started:
        if not thread.is_alive():
            pytest.fail(f"the web server on port {port} stopped before it started")
        if time.monotonic() > deadline:
            uv.should_exit = True
            pytest.fail(f"the web server did not start on port {port} in {START_SECONDS} s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "the web server did not stop within 10 s"


@pytest.fixture(scope="session")
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

    def __init__(self, browser: object, base: str, width: int = 1366):
        # a clinic in the UK: dates typed day first, clocks in London
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": width, "height": 900},
            locale="en-GB",
            timezone_id="Europe/London",
        )
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a refused form answers 422 (or 403) on purpose and Chromium logs that page
        # load as a console error: loads are judged here instead, sub-resources only
        self.page.on("response", self._response)
        self.page.set_default_timeout(TIMEOUT_MS)
        self.documents: list[tuple[int, str]] = []  # every page load: (status, URL)
        self.refusals: list[str] = []  # 4xx pages that marked no field (ok_or_marked)

    def _console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response: Any) -> None:
        if response.request.resource_type == "document":
            if response.frame == self.page.main_frame:
                self.documents.append((response.status, response.url))
        elif response.status >= 400:
            self.errors.append(f"{response.status} {response.url}")

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)
        self._no_server_error(path)

    def _no_server_error(self, what: str) -> None:
        """A 5xx fails at once, naming the URL and what the error page says."""
        if self.documents and self.documents[-1][0] >= 500:
            status, url = self.documents[-1]
            said = self.page.locator("body").inner_text()[:400]
            raise AssertionError(f"{what}: the server answered {status} at {url}: {said}")

    def shot(self, name: str) -> Path:
        SCREENS.mkdir(parents=True, exist_ok=True)
        path = SCREENS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, username: str, password: str = PASSWORD, lands: Any = "**/worklist") -> None:
        self.go("/signin")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url(lands)

    @property
    def status(self) -> int:
        """The HTTP status of the page now shown (after any redirect)."""
        assert self.documents, "no page has been loaded yet"
        return self.documents[-1][0]

    def submit(self, button: Any) -> int:
        """Click a form's button, wait for the page it leads to, and return its status.
        A page that refuses the form (4xx) must say so beside a field (`ok_or_marked`)."""
        with self.page.expect_navigation():
            button.click()
        self._no_server_error("a form sent")
        return self.status

    def ok_or_marked(self, what: str) -> int:
        """The page shown now either succeeded (below 400), or refused with a field
        marked (aria-invalid, or a column marked invalid) and a reason in words; never a
        5xx. A refusal that marks nothing is kept in `refusals` (the journey goes on;
        `assert_clean` fails the test at its end). Returns the status."""
        status, url = self.documents[-1]
        assert status < 500, f"{what}: {status} at {url}"
        if status >= 400:
            marked = self.page.locator("main [aria-invalid='true'], main .invalid")
            said = self.page.locator("main .field-error, main [role=alert]")
            if marked.count() == 0 or said.count() == 0:
                shown = " | ".join(said.all_inner_texts())[:300] or "no message"
                self.refusals.append(f"{what}: {status} at {url}, no field marked ({shown})")
        return status

    def assert_clean(self) -> None:
        """No console error, no failed sub-resource, no refusal that marked nothing."""
        assert self.errors == [], self.errors
        assert self.refusals == [], self.refusals

    def notices(self) -> list[str]:
        """The one-time notices the page shows (server-side flash, never URL text)."""
        return [n.strip() for n in self.page.locator("p.notice[role=status]").all_inner_texts()]

    def fits(self) -> tuple[int, int]:
        """(scrollWidth, innerWidth): the page must not scroll sideways."""
        widths = self.page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        return int(widths[0]), int(widths[1])

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: object, server: str) -> Iterator[Any]:
    """Open a watched page (at a given width); every one is closed after the test."""
    opened: list[Watched] = []

    def open_page(width: int = 1366) -> Watched:
        w = Watched(browser, server, width)
        opened.append(w)
        return w

    yield open_page
    for w in opened:
        w.close()
