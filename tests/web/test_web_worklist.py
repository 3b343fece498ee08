"""The worklist page (issue 14): a page of 50 open reminders, most overdue first, with
names beside MRNs and words for every value; filters in the URL that accept the
form's own defaults; Acknowledge and bulk acknowledge that come back to the same
filtered page at the next row, with a notice in words from the session, never the URL.

Forms are submitted as a browser would send them: the fields are read from the
rendered HTML (`forms_in`) and sent with their own values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.services.worklist_support import TODAY, Ward
from tests.web.web_support import DEMO, add_role_users, api_token, make_client_on, sign_in
from tracker import vocab
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.services.worklist import acknowledge, every_row
from tracker.store.models import UserAccount, table_of
from tracker.templating import words

# --- reading forms as a browser does ------------------------------------------------------


@dataclass
class Control:
    name: str
    kind: str  # input type, "select" or "textarea"
    value: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)  # a select's values, in order
    selected: str | None = None


@dataclass
class HtmlForm:
    action: str
    method: str
    id: str | None
    controls: list[Control] = field(default_factory=list)

    def submission(
        self, *, tick: set[str] | None = None, fill: dict[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """What the browser sends: every named control with its value; a select its
        selected option (else its first); a checkbox only when ticked."""
        tick, fill = tick or set(), fill or {}
        sent = []
        for c in self.controls:
            if c.kind in ("submit", "button", "reset"):
                continue
            if c.kind in ("checkbox", "radio"):
                if c.checked or c.value in tick:
                    sent.append((c.name, c.value or "on"))
                continue
            if c.kind == "select":
                value = c.selected if c.selected is not None else (c.options or [""])[0]
                sent.append((c.name, fill.get(c.name, value)))
                continue
            sent.append((c.name, fill.get(c.name, c.value)))
        return sent


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self.current: HtmlForm | None = None
        self.select: Control | None = None
        self.option: str | None = None
        self.textarea: Control | None = None
        self.orphans: list[tuple[str, Control]] = []  # controls with form="id"

    def _add(self, attrs: dict[str, str | None], control: Control) -> None:
        owner = attrs.get("form")
        if owner:
            self.orphans.append((owner, control))
        elif self.current is not None:
            self.current.controls.append(control)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs_list)
        if tag == "form":
            self.current = HtmlForm(
                str(attrs.get("action") or ""),
                str(attrs.get("method") or "get").lower(),
                attrs.get("id"),
            )
            self.forms.append(self.current)
        elif tag == "input" and attrs.get("name"):
            self._add(
                attrs,
                Control(
                    str(attrs["name"]),
                    str(attrs.get("type") or "text").lower(),
                    str(attrs.get("value") or ""),
                    "checked" in attrs,
                ),
            )
        elif tag == "select" and attrs.get("name"):
            self.select = Control(str(attrs["name"]), "select")
            self._add(attrs, self.select)
        elif tag == "option" and self.select is not None:
            value = str(attrs.get("value") or "")
            self.select.options.append(value)
            if "selected" in attrs:
                self.select.selected = value
        elif tag == "textarea" and attrs.get("name"):
            self.textarea = Control(str(attrs["name"]), "textarea")
            self._add(attrs, self.textarea)

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def forms_in(html: str) -> list[HtmlForm]:
    reader = _FormReader()
    reader.feed(html)
    by_id = {f.id: f for f in reader.forms if f.id}
    for owner, control in reader.orphans:
        by_id[owner].controls.append(control)
    return reader.forms


def form(html: str, *, action: str) -> HtmlForm:
    found = [f for f in forms_in(html) if f.action == action]
    assert len(found) == 1, f"{len(found)} forms post to {action}"
    return found[0]


def row_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="reminder-(\d+)"', html)]


def row_html(html: str, rid: int) -> str:
    found = re.search(rf'<tr id="reminder-{rid}".*?</tr>', html, re.S)
    assert found, f"reminder {rid} is not on the page"
    return found.group(0)


def visible_text(html: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", body))


def notices(html: str) -> list[str]:
    return [
        unescape(n) for n in re.findall(r'<p class="notice" role="status">(.*?)</p>', html, re.S)
    ]


def local(location: str) -> str:
    """A redirect's target without its #fragment (a browser keeps that to itself)."""
    return location.partition("#")[0]


# --- a unit: the demo cohort planned as of TODAY, and a busy ward of 64 reminders ---------


@pytest.fixture
def ward(engine: Engine) -> Ward:
    import_folder(engine, DEMO)
    add_role_users(engine)
    plan(engine=engine, as_of=TODAY, protocol=Protocol())
    ward = Ward(engine)
    ward.team("ward_7")
    for n in range(8):
        family, given = [("Doe", "Jane"), ("Okafor", "Ada"), ("Novak", "Petra")][n % 3]
        ward.patient(f"W-{n:04d}", team="ward_7", family=family, given=given)
    for n in range(64):  # several share each due date; some overdue, some due later
        ward.reminder(
            f"W-{n % 8:04d}",
            due=TODAY + dt.timedelta(days=n // 4 - 8),
            rule=("monitoring_radiograph", "maturity_bone_scan")[n % 2],
            status="pending" if n // 4 - 8 > 0 else "due",
        )
    return ward


@pytest.fixture
def client(ward: Ward) -> Iterator[TestClient]:
    with make_client_on(ward.engine, TODAY) as c:
        yield c


def ward_rows(ward: Ward) -> list[int]:
    return ward.expected(lambda r: r["team"] == "ward_7")


# --- the filter form ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "surgeon", "admin"])
def test_the_filter_form_sent_with_its_defaults_shows_the_worklist(
    client: TestClient, role: str
) -> None:
    sign_in(client, role)
    page = client.get("/worklist").text
    filters = form(page, action="/worklist")
    assert filters.method == "get"
    sent = filters.submission()
    assert {name for name, _ in sent} >= {"team", "rule", "status", "window"}
    assert all(value == "" for _, value in sent)  # "any" is an empty value
    shown = client.get("/worklist", params=sent)
    assert shown.status_code == 200, shown.text
    assert row_ids(shown.text) == row_ids(page) and len(row_ids(page)) == 50


def test_every_choice_of_every_filter_is_accepted(client: TestClient) -> None:
    sign_in(client, "clinician")
    filters = form(client.get("/worklist").text, action="/worklist")
    for select in (c for c in filters.controls if c.kind == "select"):
        for option in select.options:
            sent = filters.submission(fill={select.name: option})
            response = client.get("/worklist", params=sent)
            assert response.status_code == 200, (select.name, option, response.text[:300])


def test_each_filter_lives_in_the_url_and_narrows_the_rows(client: TestClient, ward: Ward) -> None:
    sign_in(client, "clinician")
    page = client.get(
        "/worklist", params={"team": "ward_7", "rule": "maturity_bone_scan", "window": "overdue"}
    ).text
    expected = ward.expected(
        lambda r: r["team"] == "ward_7" and r["rule"] == "maturity_bone_scan" and r["due"] < TODAY
    )
    assert expected and row_ids(page) == expected
    rule_words = words("maturity_bone_scan")
    assert f'<option value="maturity_bone_scan" selected>{rule_words}</option>' in page
    assert '<option value="overdue" selected>overdue</option>' in page


def test_a_filter_matching_nothing_says_so(client: TestClient) -> None:
    sign_in(client, "clinician")
    page = client.get("/worklist", params={"team": "ward_7", "rule": "course_review"}).text
    assert row_ids(page) == []
    assert "No open reminder matches these filters." in page and "<table" not in page


def test_my_team_shows_the_clinicians_own_unit(client: TestClient, ward: Ward) -> None:
    users = table_of(UserAccount)
    with ward.engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.username == "clinician").values(team="ward_7"))
    sign_in(client, "clinician")
    filters = form(client.get("/worklist").text, action="/worklist")
    shown = client.get("/worklist", params=filters.submission(tick={"1"}))  # my team ticked
    assert shown.status_code == 200
    assert "mine=1" in str(shown.url)
    assert row_ids(shown.text) == ward_rows(ward)[:50]
    assert f"my team ({words('ward_7')})" in shown.text


# --- what a row says ---------------------------------------------------------------


def test_rows_name_the_patient_beside_the_mrn_and_read_as_words(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    page = client.get("/worklist", params={"team": "ward_7"}).text
    first = ward.made[[r["id"] for r in ward.made].index(ward_rows(ward)[0])]
    row = row_html(page, first["id"])
    assert '<a href="/patients/W-0000">DOE, Jane</a> <span class="mrn">W-0000</span>' in row
    assert f"{words(first['side'])} {words(first['site'])}" in row
    assert "8 days overdue" in row and f'<td data-label="Team">{words("ward_7")}</td>' in row
    text = visible_text(page)
    tokens = [v for v in (*vocab.values(vocab.ReminderRule), "ward_7", "spinal_unit")]
    assert [t for t in tokens if t in text] == []


def test_the_first_page_holds_fifty_and_next_and_first_keep_the_filters(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    first = client.get("/worklist", params={"team": "ward_7"}).text
    assert row_ids(first) == ward_rows(ward)[:50]
    assert "First page" not in first and 'rel="prev"' not in first
    after = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert after
    next_url = unescape(after.group(1))
    assert dict(parse_qsl(urlsplit(next_url).query))["team"] == "ward_7"
    second = client.get(next_url).text
    assert row_ids(second) == ward_rows(ward)[50:]
    assert 'rel="next"' not in second
    first_link = re.search(r'<a href="([^"]+)">First page</a>', second)
    assert first_link and unescape(first_link.group(1)) == "/worklist?team=ward_7"
    back = re.search(r'<a href="([^"]+)" rel="prev">', second)
    assert back and row_ids(client.get(unescape(back.group(1))).text) == ward_rows(ward)[:50]


# --- acknowledging -----------------------------------------------------------------


def test_acknowledge_comes_back_to_the_same_filtered_page_at_the_next_row(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    second_url = "/worklist?" + urlencode(
        {"team": "ward_7", "window": "", "after": _cursor_after(ward, 49)}
    )
    page = client.get(second_url).text
    shown = row_ids(page)
    target, following = shown[3], shown[4]
    ack = form(page, action=f"/reminders/{target}/acknowledge")
    response = client.post(ack.action, data=dict(ack.submission()))
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.endswith(f"#reminder-{following}")
    assert dict(parse_qsl(urlsplit(local(location)).query, keep_blank_values=True)) == {
        "team": "ward_7",
        "after": _cursor_after(ward, 49),
    }
    assert "done=" not in location
    back = client.get(local(location)).text
    made = next(r for r in ward.made if r["id"] == target)
    said = (
        f"Acknowledged: {words(made['rule'])} at {words(made['side'])} {words(made['site'])} "
        f"for {_name(made['mrn'])} ({made['mrn']})."
    )
    assert notices(back) == [said]
    assert target not in row_ids(back) and following in row_ids(back)
    assert notices(client.get(local(location)).text) == []  # said once
    assert ward.status_of(target)["closed_by"] == "clinician"


def test_a_notice_cannot_be_written_into_the_url(client: TestClient) -> None:
    sign_in(client, "clinician")
    sentence = "FOP ruled out by genetics - safe to resect"
    for name in ("done", "notice", "message"):
        page = client.get("/worklist", params={name: sentence})
        assert page.status_code == 200
        assert sentence not in page.text and notices(page.text) == []


def test_bulk_acknowledge_closes_the_ticked_ones_with_the_reason(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    page = client.get("/worklist", params={"team": "ward_7"}).text
    shown = row_ids(page)
    chosen = shown[5:8]
    bulk = form(page, action="/worklist/acknowledge")
    sent = bulk.submission(tick={str(i) for i in chosen}, fill={"reason": "patient transferred"})
    response = client.post(bulk.action, data=_as_form(sent))
    assert response.status_code == 303
    assert response.headers["location"] == f"/worklist?team=ward_7#reminder-{shown[8]}"
    back = client.get(local(response.headers["location"])).text
    [said] = notices(back)
    assert said.startswith("Acknowledged 3 reminders (patient transferred): ")
    for rid in chosen:
        made = next(r for r in ward.made if r["id"] == rid)
        assert f"for {_name(made['mrn'])} ({made['mrn']})" in said
        assert ward.status_of(rid)["ack_reason"] == "patient transferred"
    assert set(chosen).isdisjoint(row_ids(back))


def test_bulk_acknowledge_sent_with_the_forms_defaults_marks_what_is_missing(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    page = client.get("/worklist", params={"team": "ward_7"}).text
    bulk = form(page, action="/worklist/acknowledge")
    nothing = client.post(bulk.action, data=_as_form(bulk.submission()))
    assert nothing.status_code == 422
    assert "Tick at least one reminder." in nothing.text
    assert row_ids(nothing.text) == row_ids(page)  # the same filtered page, shown again
    chosen = row_ids(page)[:2]
    no_reason = client.post(
        bulk.action, data=_as_form(bulk.submission(tick={str(i) for i in chosen}))
    )
    assert no_reason.status_code == 422
    assert re.search(r'<input id="bulk-reason"[^>]*aria-invalid="true"', no_reason.text)
    for rid in chosen:  # the ticks are kept for the second try
        assert re.search(rf'value="{rid}" checked', row_html(no_reason.text, rid))
        assert ward.status_of(rid)["status"] == "due"


def test_bulk_acknowledge_refuses_the_lot_when_a_colleague_was_first(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "clinician")
    page = client.get("/worklist", params={"team": "ward_7"}).text
    chosen = row_ids(page)[:3]
    acknowledge(engine=ward.engine, reminder_id=chosen[1], by="colleague")
    bulk = form(page, action="/worklist/acknowledge")
    sent = bulk.submission(tick={str(i) for i in chosen}, fill={"reason": "discharged"})
    refused = client.post(bulk.action, data=_as_form(sent))
    assert refused.status_code == 409
    assert f"Reminder {chosen[1]} (" in refused.text and "already acknowledged" in refused.text
    assert "Nothing was acknowledged" in refused.text
    assert [ward.status_of(rid)["status"] for rid in chosen] == ["due", "acknowledged", "due"]


def test_a_surgeon_may_tick_and_acknowledge_readiness_reviews_only(
    client: TestClient, ward: Ward
) -> None:
    sign_in(client, "surgeon")
    review = ward.reminder("W-0001", due=TODAY, rule="readiness_review", status="due")
    page = client.get("/worklist", params={"team": "ward_7", "window": "today"}).text
    tickable = [rid for rid in row_ids(page) if 'name="reminder"' in row_html(page, rid)]
    assert tickable == [review]
    assert "Record it" not in page
    other = next(rid for rid in row_ids(page) if rid != review)
    bulk = form(page, action="/worklist/acknowledge")
    sent = [
        *bulk.submission(tick={str(review)}, fill={"reason": "reviewed"}),
        ("reminder", str(other)),
    ]
    refused = client.post(bulk.action, data=_as_form(sent))
    assert refused.status_code == 403
    assert ward.status_of(review)["status"] == "due" and ward.status_of(other)["status"] == "due"
    done = client.post(bulk.action, data=_as_form(bulk.submission(
        tick={str(review)}, fill={"reason": "reviewed"})))  # fmt: skip
    assert done.status_code == 303 and ward.status_of(review)["closed_by"] == "surgeon"


# --- the JSON API ------------------------------------------------------------------


def test_the_api_worklist_pages_with_a_next_link(client: TestClient, ward: Ward) -> None:
    token = api_token(ward.engine, "clinician")
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = "/api/v1/reminders?team=ward_7&limit=20"
    seen: list[int] = []
    pages = 0
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        rows = response.json()
        assert len(rows) <= 20 and rows
        seen += [row["id"] for row in rows]
        assert all(row["name"] for row in rows)
        link = response.headers.get("link")
        url = re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1) if link else None  # type: ignore[union-attr]
        pages += 1
    assert seen == ward_rows(ward) and pages == 4
    everyone = client.get("/api/v1/reminders", headers=headers).json()
    assert [r["id"] for r in everyone] == [
        r["id"] for r in every_row(engine=ward.engine, today=TODAY)
    ][:50]


# --- helpers -----------------------------------------------------------------------


def _as_form(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form pairs for the test client (a repeated name becomes a list)."""
    out: dict[str, str | list[str]] = {}
    for name, value in pairs:
        if name in out:
            kept = out[name]
            out[name] = [*kept, value] if isinstance(kept, list) else [kept, value]
        else:
            out[name] = value
    return out


def _cursor_after(ward: Ward, index: int) -> str:
    rid = ward_rows(ward)[index]
    made = next(r for r in ward.made if r["id"] == rid)
    return f"{made['due'].isoformat()}.{rid}"


def _name(mrn: str) -> str:
    from tracker.services.patients import display_name

    n = int(mrn.split("-")[1])
    family, given = [("Doe", "Jane"), ("Okafor", "Ada"), ("Novak", "Petra")][n % 3]
    return display_name(family, given)
