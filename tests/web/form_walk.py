"""Reading pages as a browser does, for the route walk (tests/web/test_every_route.py).

`forms_in` finds every <form> of a page with its controls (also those outside it that
name it with form="id") and its submit buttons; `HtmlForm.submissions` says what a
browser sends for each button with the form's defaults: the selected options, the
checked boxes, hidden fields (the CSRF token), the button's own name and value, a GET
form's fields as the query string. `marked` finds the fields a refused page marks
(aria-invalid="true", as tracker/web/templates/_field.j2 does), `links_in` the local
links a user can follow. Only the standard library's html.parser: no new dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

BASE = "http://testserver"


@dataclass
class Control:
    """One named input, select or textarea."""

    name: str
    kind: str  # an input's type, or "select" / "textarea"
    value: str = ""
    checked: bool = False
    disabled: bool = False
    multiple: bool = False
    options: list[tuple[str, bool, bool]] = field(default_factory=list)  # value, selected, disabled

    def sent(self) -> list[tuple[str, str]]:
        """What a browser sends for this control with its defaults (HTML's "constructing
        the entry list"): nothing for a disabled control or an unticked box; a select
        its selected options, else (single choice) its first enabled option."""
        if self.disabled or self.kind in ("submit", "image", "button", "reset"):
            return []
        if self.kind in ("checkbox", "radio"):
            return [(self.name, self.value or "on")] if self.checked else []
        if self.kind == "select":
            chosen = [v for v, selected, off in self.options if selected and not off]
            if not chosen and not self.multiple:
                chosen = [v for v, _, off in self.options if not off][:1]
            return [(self.name, v) for v in (chosen if self.multiple else chosen[-1:])]
        if self.kind == "file":
            return []  # sent as an empty file part: see Submission.files
        return [(self.name, self.value)]

    def choices(self) -> list[str]:
        """A select's enabled option values (what a user can pick)."""
        return [v for v, _, off in self.options if not off] if self.kind == "select" else []


@dataclass
class Button:
    """A submit button: a browser sends its name and value only when it is the one used."""

    name: str | None
    value: str
    label: str
    formaction: str | None = None
    formmethod: str | None = None
    formenctype: str | None = None


@dataclass
class Submission:
    """One request a browser makes when the form is submitted by one button."""

    method: str  # "get" or "post"
    url: str  # path and query, relative to the test server
    fields: list[tuple[str, str]]
    files: list[str]  # names of file inputs, sent with no file chosen
    multipart: bool
    button: str  # which button, for the failure message
    changed: tuple[str, str] | None = None  # the one select not left at its default

    def describe(self) -> str:
        said = f"{self.method.upper()} {self.url} via {self.button!r}"
        return said + (f" with {self.changed[0]}={self.changed[1]!r}" if self.changed else "")


@dataclass
class HtmlForm:
    page: str  # the URL of the page it is on (the action when it has none)
    action: str | None
    method: str
    enctype: str
    id: str | None
    controls: list[Control] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {c.name for c in self.controls}

    def _target(self, button: Button | None) -> tuple[str, str, bool]:
        action = button.formaction if button and button.formaction is not None else self.action
        method = (button.formmethod if button and button.formmethod else self.method).lower()
        enctype = (button.formenctype if button and button.formenctype else self.enctype).lower()
        # no action (or an empty one) submits to the page's own URL, query and all
        url = urljoin(BASE + self.page, action) if action else BASE + self.page
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return (
            path,
            method if method in ("get", "post") else "get",
            enctype.startswith("multipart/"),
        )

    def submissions(self, fill: dict[str, str] | None = None) -> list[Submission]:
        """One submission per submit button (a form with none is submitted by Enter),
        every control at its default except those in `fill`."""
        fill = fill or {}
        entries: list[tuple[str, str]] = []
        for control in self.controls:
            if control.name in fill and not control.disabled:
                entries.append((control.name, fill[control.name]))
            else:
                entries.extend(control.sent())
        files = [c.name for c in self.controls if c.kind == "file" and not c.disabled]
        out = []
        pressed: list[Button | None] = [*self.buttons] or [None]
        for button in pressed:
            path, method, multipart = self._target(button)
            sent = list(entries)
            if button is not None and button.name:
                sent.append((button.name, button.value))
            if method == "get":  # the form's data replaces the action's query
                path = urlsplit(path).path + (f"?{urlencode(sent)}" if sent else "")
            changed = next(iter(fill.items()), None)
            out.append(
                Submission(
                    method,
                    path,
                    sent,
                    files,
                    multipart and method == "post",
                    button.label if button else "(Enter)",
                    changed,
                )
            )
        return out


class _Reader(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.forms: list[HtmlForm] = []
        self.current: HtmlForm | None = None
        self.select: Control | None = None
        self.option: list[str] | None = None  # [value or None, text] of the open <option>
        self.option_attrs: dict[str, str | None] = {}
        self.textarea: Control | None = None
        self.button: Button | None = None
        self.button_text: list[str] = []
        self.owned: list[tuple[str, Control | Button]] = []  # form="id" elsewhere
        self.marked: list[str] = []
        self.links: list[str] = []

    def _place(self, attrs: dict[str, str | None], item: Control | Button) -> None:
        owner = attrs.get("form")
        if owner:
            self.owned.append((owner, item))
        elif self.current is not None:
            if isinstance(item, Button):
                self.current.buttons.append(item)
            else:
                self.current.controls.append(item)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs_list)
        if attrs.get("aria-invalid") == "true" or (
            "invalid" in (attrs.get("class") or "").split() and attrs.get("aria-describedby")
        ):
            self.marked.append(attrs.get("name") or attrs.get("id") or tag)
        if tag == "a" and attrs.get("href"):
            self.links.append(str(attrs["href"]))
        if tag == "form":
            self.current = HtmlForm(
                self.page,
                attrs.get("action"),
                str(attrs.get("method") or "get").lower(),
                str(attrs.get("enctype") or "application/x-www-form-urlencoded"),
                attrs.get("id"),
            )
            self.forms.append(self.current)
        elif tag == "input":
            kind = str(attrs.get("type") or "text").lower()
            if kind in ("submit", "image"):
                self._place(attrs, self._button(attrs, str(attrs.get("value") or "Submit")))
            elif attrs.get("name"):
                self._place(
                    attrs,
                    Control(
                        str(attrs["name"]),
                        kind,
                        str(attrs.get("value") or ""),
                        checked="checked" in attrs,
                        disabled="disabled" in attrs,
                    ),
                )
        elif tag == "button":
            kind = str(attrs.get("type") or "submit").lower()
            self.button = self._button(attrs, "") if kind == "submit" else None
            self.button_text = []
            if self.button is not None:
                self._place(attrs, self.button)
        elif tag == "select" and attrs.get("name"):
            self.select = Control(
                str(attrs["name"]),
                "select",
                disabled="disabled" in attrs,
                multiple="multiple" in attrs,
            )
            self._place(attrs, self.select)
        elif tag == "option" and self.select is not None:
            self._end_option()
            self.option = [attrs.get("value"), ""]  # type: ignore[list-item]
            self.option_attrs = attrs
        elif tag == "textarea" and attrs.get("name"):
            self.textarea = Control(str(attrs["name"]), "textarea", disabled="disabled" in attrs)
            self._place(attrs, self.textarea)

    def _button(self, attrs: dict[str, str | None], label: str) -> Button:
        return Button(
            attrs.get("name"),
            str(attrs.get("value") or ""),
            str(attrs.get("aria-label") or label),
            attrs.get("formaction"),
            attrs.get("formmethod"),
            attrs.get("formenctype"),
        )

    def _end_option(self) -> None:
        if self.option is None or self.select is None:
            return
        value, text = self.option
        self.select.options.append(
            (
                text.strip() if value is None else value,
                "selected" in self.option_attrs,
                "disabled" in self.option_attrs,
            )
        )
        self.option = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea.value += data
        if self.option is not None:
            self.option[1] += data
        if self.button is not None:
            self.button_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "option":
            self._end_option()
        elif tag == "select":
            self._end_option()
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            # a browser drops the newline that opens a textarea's text
            self.textarea.value = self.textarea.value.removeprefix("\n")
            self.textarea = None
        elif tag == "button" and self.button is not None:
            if not self.button.label:  # a button without words: by what it sends
                said = " ".join("".join(self.button_text).split())
                sends = f"{self.button.name}={self.button.value}" if self.button.name else ""
                self.button.label = said or sends or "Submit"
            self.button = None


def read(html: str, page: str) -> _Reader:
    reader = _Reader(page)
    reader.feed(html)
    reader.close()
    by_id = {f.id: f for f in reader.forms if f.id}
    for owner, item in reader.owned:
        assert owner in by_id, f"{page}: a control names form={owner!r}, which is not on the page"
        if isinstance(item, Button):
            by_id[owner].buttons.append(item)
        else:
            by_id[owner].controls.append(item)
    return reader


def forms_in(html: str, page: str) -> list[HtmlForm]:
    """Every form on the page at `page` (a path with its query)."""
    return read(html, page).forms


def marked(html: str) -> list[str]:
    """The fields a page marks as refused (their names, else their ids)."""
    return read(html, "/").marked


def links_in(html: str, page: str) -> list[str]:
    """Every local link on the page, as path and query (no fragment)."""
    out = []
    for href in read(html, page).links:
        if href.startswith(("javascript:", "mailto:", "#", "data:")):
            continue
        url = urlsplit(urljoin(BASE + page, href))
        if f"{url.scheme}://{url.netloc}" != BASE:
            continue
        out.append(url.path + (f"?{url.query}" if url.query else ""))
    return out
