"""The page frame every screen shares (issue 14): usable on a phone, a tablet and a
desk, printable, and reachable by keyboard. Real widths are measured in the browser
journeys (tests/e2e); these checks read the served HTML and stylesheet."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from tests.web.web_support import sign_in
from tracker.web.app import STATIC_DIR

FOCUSABLE = {"a", "button", "input", "select", "textarea", "summary"}


class _Frame(HTMLParser):
    """The viewport meta, the first focusable element of the body, and <main>."""

    def __init__(self) -> None:
        super().__init__()
        self.viewport: str | None = None
        self.first_focusable: dict[str, str] | None = None
        self.main: dict[str, str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = a.get("content")
        if tag == "body":
            self._in_body = True
        if not self._in_body:
            return
        if tag == "main" and self.main is None:
            self.main = a
        focusable = tag in FOCUSABLE and a.get("type") != "hidden" and a.get("tabindex") != "-1"
        if focusable and (tag != "a" or "href" in a) and self.first_focusable is None:
            self.first_focusable = {"tag": tag, **a}


def _frame(html: str) -> _Frame:
    frame = _Frame()
    frame.feed(html)
    return frame


def _blocks(css: str) -> dict[str, str]:
    """Each top-level @media block of the stylesheet: its condition -> its rules."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    found: dict[str, str] = {}
    for match in re.finditer(r"@media([^{]+)\{", css):
        depth, start = 1, match.end()
        at = start
        while depth:
            depth += {"{": 1, "}": -1}.get(css[at], 0)
            at += 1
        found[" ".join(match.group(1).split())] = css[start : at - 1]
    return found


def _rules(css: str, selector_part: str) -> str:
    """Every declaration block whose selector list mentions `selector_part`."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return " ".join(
        body
        for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)
        if selector_part in selectors
    )


@pytest.fixture
def stylesheet() -> str:
    """The file /static/ serves (served as such in test_web_serving)."""
    return (STATIC_DIR / "style.css").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "page", ["/signin", "/worklist", "/patients", "/board", "/patients/H-EARLY"]
)
def test_every_page_scales_to_the_device_and_starts_with_a_skip_link_to_the_content(
    client: TestClient, page: str
) -> None:
    if page != "/signin":
        sign_in(client, "clinician")
    frame = _frame(client.get(page).text)
    assert frame.viewport is not None and "width=device-width" in frame.viewport
    assert frame.first_focusable is not None
    assert frame.first_focusable["tag"] == "a" and frame.first_focusable["href"] == "#main"
    assert "skip-link" in frame.first_focusable.get("class", "")
    assert frame.main is not None and frame.main.get("id") == "main"
    assert frame.main.get("tabindex") == "-1"  # the skip link moves focus there too


def test_the_page_frame_focuses_the_first_field_unless_told_otherwise(client: TestClient) -> None:
    html = client.get("/signin").text
    # a static file, not inline: the Content-Security-Policy allows no inline script
    assert '<script src="/static/page.js"></script>' in html, "base.j2 carries no focus script"
    body = client.get("/static/page.js").text
    for rule in (
        "[autofocus]",
        "location.hash",
        "data-focus",
        'aria-invalid="true"',
        "preventScroll",
    ):
        assert rule in body, rule
    assert re.search(r'id="username"[^>]*autofocus', html)  # sign-in: the name, by attribute


def test_narrow_screens_fold_the_menu_and_stack_forms(stylesheet: str) -> None:
    blocks = _blocks(stylesheet)
    phone = next((rules for cond, rules in blocks.items() if "max-width: 640px" in cond), "")
    tablet = next((rules for cond, rules in blocks.items() if "max-width: 900px" in cond), "")
    assert phone and tablet, sorted(blocks)
    assert re.search(r"\.js header\.top:not\(\.open\) \.menu\s*\{[^}]*display:\s*none", phone)
    assert re.search(r"\.js \.menu-toggle\s*\{[^}]*display:\s*inline-flex", phone)
    assert re.search(r"form\.record label\s*\{[^}]*display:\s*block", tablet)
    assert re.search(r"\.actions\s*\{[^}]*white-space:\s*normal", tablet)


def test_wide_tables_scroll_inside_their_box_and_the_figure_fills_the_width(
    stylesheet: str,
) -> None:
    outside_media = re.sub(r"@media[^{]+\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", stylesheet)
    tables = _rules(outside_media, "main table")
    assert "overflow-x: auto" in tables and "max-width: 100%" in tables
    wrap = _rules(outside_media, ".table-wrap")
    assert "overflow-x: auto" in wrap
    figure = _rules(outside_media, "figure img")
    assert "width: 100%" in figure and "height: auto" in figure
    assert "max-width: 100%" in _rules(outside_media, "img, svg")


def test_controls_are_large_enough_to_tap_on_touch_screens(stylesheet: str) -> None:
    touch = next(
        (rules for cond, rules in _blocks(stylesheet).items() if "pointer: coarse" in cond), ""
    )
    assert touch, "no touch-size block"
    sizing = _rules(touch, "button")
    assert re.search(r"min-height:\s*44px", sizing)
    assert "select" in touch.split("{")[0] and ".button" in touch.split("{")[0]


def test_printing_leaves_navigation_and_controls_out_and_tables_whole(stylesheet: str) -> None:
    printing = _blocks(stylesheet).get("print")
    assert printing, "no print stylesheet"
    hidden = _rules(printing, "nav")
    assert "display: none" in hidden
    hidden_selectors = re.search(r"([^{}]*nav[^{}]*)\{", printing)
    assert hidden_selectors
    for part in ("header.top", "form", "button", ".button", ".skip-link"):
        assert part in hidden_selectors.group(1), part
    assert re.search(r"color:\s*#000", printing) and re.search(r"background:\s*#fff", printing)
    whole = _rules(printing, "main table")
    assert "display: table" in whole and "overflow: visible" in whole
