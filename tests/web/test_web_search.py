"""The patient list as people use it (issue 14): the form submitted exactly as the
browser sends it, a name typed and Enter pressed, refusals in a sentence naming the
filter, and Next/First links that page through namesakes keeping the filters."""

from __future__ import annotations

import csv
import datetime as dt
import html
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import write_csv
from tests.web.web_support import DEMO, csrf_in, make_client_on, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.services.site_assessments import refresh_all
from tracker.store.models import SiteAssessment, table_of
from tracker.templating import words


class FormReader(HTMLParser):
    """The fields of the first form whose action is `action`, with the values a
    browser submits untouched: an input's value, a select's selected option (else
    its first), a checkbox only when checked."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.done = False
        self.fields: list[tuple[str, str]] = []
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None
        self._chosen: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.done and a.get("action") == self.action:
            self.inside = True
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button"):
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._chosen = a.get("name"), None
            self.options[a["name"]] = []
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self.options[self._select].append(value)
            if "selected" in a or self._chosen is None:
                self._chosen = value

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            self.fields.append((self._select, self._chosen or ""))
            self._select = None
        if tag == "form" and self.inside:
            self.inside, self.done = False, True


def read_form(page: str, action: str) -> FormReader:
    reader = FormReader(action)
    reader.feed(page)
    assert reader.done, f"no form for {action}"
    return reader


def with_value(fields: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in fields]


def caption(page: str) -> str:
    found = re.search(r"<caption>(.*?)</caption>", page, re.S)
    assert found, "the list has no caption"
    return html.unescape(" ".join(found.group(1).split()))


def listed_mrns(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [html.unescape(m) for m in re.findall(r'<a href="/patients/([^"?/]+)"', body)]


def next_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def demo_patients() -> list[dict[str, str]]:
    with (DEMO / "patients.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the form as the browser sends it -------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "surgeon", "admin"])
def test_the_patient_form_submitted_as_it_stands_lists_every_patient(
    client: TestClient, role: str
) -> None:
    sign_in(client, role)
    form = read_form(client.get("/patients").text, "/patients")
    assert {n for n, _ in form.fields} >= {"q", "team", "injury", "ho", "stage", "readiness"}
    response = client.get("/patients", params=form.fields)
    assert response.status_code == 200, response.text
    shown = listed_mrns(response.text)
    assert sorted(shown) == sorted(p["mrn"] for p in demo_patients())


def test_every_choice_the_patient_form_offers_is_accepted(client: TestClient) -> None:
    sign_in(client, "clinician")
    form = read_form(client.get("/patients").text, "/patients")
    tried = 0
    for name, options in form.options.items():
        for option in options:
            response = client.get("/patients", params=with_value(form.fields, name, option))
            assert response.status_code == 200, (name, option, response.text[:500])
            assert "Input should" not in response.text
            tried += 1
    assert tried > 20


def test_a_surgeon_filtering_readiness_ready_sees_the_ready_patient(client: TestClient) -> None:
    sign_in(client, "surgeon")
    form = read_form(client.get("/patients").text, "/patients")
    response = client.get("/patients", params=with_value(form.fields, "readiness", "ready"))
    assert response.status_code == 200
    assert "H-READY" in listed_mrns(response.text)
    assert "H-FOP" not in listed_mrns(response.text)


@pytest.mark.parametrize("typed", ["Hughes", "gareth", "h-ready", "Hughes, Gareth"])
def test_a_name_typed_and_enter_pressed_finds_the_patient(client: TestClient, typed: str) -> None:
    sign_in(client, "clinician")
    form = read_form(client.get("/patients").text, "/patients")
    response = client.get("/patients", params=with_value(form.fields, "q", typed))
    assert response.status_code == 200
    assert listed_mrns(response.text) == ["H-READY"]
    assert "HUGHES, Gareth" in response.text  # the name beside the MRN


def test_one_match_is_one_patient_and_two_are_two_patients(client: TestClient) -> None:
    sign_in(client, "clinician")
    families: dict[str, list[str]] = {}
    for p in demo_patients():
        families.setdefault(p["family_name"].lower(), []).append(p["mrn"])
    one = next(name for name, mrns in families.items() if len(mrns) == 1)
    two = next(name for name, mrns in families.items() if len(mrns) == 2)
    singles = [n for n in families if n.startswith(one)]
    pairs = [n for n in families if n.startswith(two)]
    assert singles == [one] and pairs == [two], "pick names no other family name starts with"
    assert caption(client.get("/patients", params={"q": one}).text) == "1 patient, by name"
    assert caption(client.get("/patients", params={"q": two}).text) == "2 patients, by name"


def test_teams_and_injuries_are_shown_in_words(client: TestClient) -> None:
    sign_in(client, "clinician")
    page = client.get("/patients", params={"q": "h-ready"}).text
    body = page.split("<tbody>", 1)[1]
    assert words("spinal_unit") in body and "spinal_unit" not in body
    assert words("spinal_cord_injury") in body and "spinal_cord_injury" not in body
    assert ">spinal_unit</option>" not in page  # the team choices too


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("injury", "xyz", "Injury: ‘xyz’ is not a kind of injury"),
        ("readiness", "maybe", "Readiness: ‘maybe’ is not a readiness"),
        ("stage", "ripe", "Stage: ‘ripe’ is not a stage"),
        ("flag", "odd", "Flag: ‘odd’ is not a flag"),
        ("ho", "perhaps", "HO found: ‘perhaps’ is not an answer"),
        ("team", "no_such_team", "Team: ‘no_such_team’ is not a team"),
        ("q", "x" * 101, "Search: type at most 100 characters"),
    ],
)
def test_a_value_the_form_would_not_send_is_refused_in_a_sentence_naming_the_filter(
    client: TestClient, name: str, value: str, said: str
) -> None:
    sign_in(client, "clinician")
    response = client.get("/patients", params={name: value})
    assert response.status_code == 422
    text = html.unescape(response.text)
    assert said in text
    assert "Input should" not in text and "Cannot read the request" not in text
    assert re.search(rf'name="{name}"[^>]*aria-invalid="true"', response.text)
    assert 'action="/patients"' in response.text  # the form is there to fix it


def test_a_damaged_page_link_says_so(client: TestClient) -> None:
    sign_in(client, "clinician")
    response = client.get("/patients", params={"after": "garbage"})
    assert response.status_code == 400
    assert "page link is damaged" in response.text


# --- paging -----------------------------------------------------------------------------


@pytest.fixture
def crowded(demo_engine: Engine) -> list[dict[str, str]]:
    """The demo plus 130 namesakes: 'Smith, Jo' in two cases and two teams."""
    rows = [
        {"mrn": f"Z{n:04d}", "birth_date": "1970-01-01", "sex": "male",
         "family_name": "Smith" if n % 3 else "SMITH", "given_name": "Jo" if n % 2 else "jo",
         "team": "spinal_unit" if n % 4 else "burns_unit"}
        for n in range(130)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        write_csv(Path(scratch), "patients.csv", rows)  # type: ignore[arg-type]
        import_folder(demo_engine, Path(scratch))
    return rows


def walk_pages(client: TestClient, first: str) -> list[str]:
    """Follow Next from `first`; the pages' bodies in order."""
    pages, url = [], first
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.text)
        url = next_link(response.text)
        assert len(pages) < 20, "Next never ends"
    return pages


def test_next_pages_through_namesakes_fifty_at_a_time_losing_and_repeating_nobody(
    client: TestClient, crowded: list[dict[str, str]]
) -> None:
    sign_in(client, "clinician")
    everyone = {p["mrn"] for p in demo_patients()} | {r["mrn"] for r in crowded}
    pages = walk_pages(client, "/patients")
    listed = [mrn for page in pages for mrn in listed_mrns(page)]
    assert len(listed) == len(set(listed)) and set(listed) == everyone
    assert [len(listed_mrns(p)) for p in pages[:-1]] == [50] * (len(pages) - 1)
    assert caption(pages[0]) == "Patients 1–50, by name; more on the next page"
    last_shown = len(listed_mrns(pages[-1]))
    assert caption(pages[-1]) == f"Patients {len(listed) - last_shown + 1}–{len(listed)}, by name"
    smiths = [m for m in listed if m.startswith("Z")]
    assert smiths == sorted(smiths)  # namesakes in MRN order, across page breaks
    assert 'href="/patients">First page</a>' in pages[1]


def test_next_and_first_keep_the_filters_in_the_url(
    client: TestClient, crowded: list[dict[str, str]]
) -> None:
    sign_in(client, "clinician")
    form = read_form(client.get("/patients").text, "/patients")
    fields = with_value(with_value(form.fields, "q", "smith jo"), "team", "spinal_unit")
    first = client.get("/patients", params=fields)
    onward = next_link(first.text)
    assert onward and "q=smith+jo" in onward and "team=spinal_unit" in onward
    pages = [first.text, *walk_pages(client, onward)]
    listed = [mrn for page in pages for mrn in listed_mrns(page)]
    expected = {
        r["mrn"]
        for r in crowded
        if r["team"] == "spinal_unit" and r["family_name"].lower() == "smith"
    }
    assert set(listed) == expected and len(listed) == len(expected)
    back = re.search(r'<a href="([^"]+)">First page</a>', pages[1])
    assert back and html.unescape(back.group(1)) == "/patients?q=smith+jo&team=spinal_unit"


# --- the stage, readiness and flag filters read the board's stored assessments ---------

AS_OF = dt.date(2026, 11, 2)


def _set_stored(engine: Engine, mrn: str, **values: str) -> None:
    a = table_of(SiteAssessment).c
    with engine.begin() as conn:
        conn.execute(sa.update(table_of(SiteAssessment)).where(a.mrn == mrn).values(**values))


def _stored(engine: Engine, mrn: str) -> list[dict[str, object]]:
    a = table_of(SiteAssessment).c
    with engine.connect() as conn:
        query = sa.select(a.site, a.side, a.stage).where(a.mrn == mrn)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_readiness_ready_lists_the_patients_whose_stored_calls_say_ready(
    demo_engine: Engine,
) -> None:
    refresh_all(engine=demo_engine, as_of=AS_OF, protocol=Protocol())
    _set_stored(demo_engine, "H-FOP", readiness="ready")  # a cohort run would not say so
    with make_client_on(demo_engine, AS_OF) as client:
        sign_in(client, "surgeon")
        form = read_form(client.get("/patients").text, "/patients")
        page = client.get("/patients", params=with_value(form.fields, "readiness", "ready"))
    assert page.status_code == 200
    assert {"H-FOP", "H-READY"} <= set(listed_mrns(page.text))
    row = page.text.split('href="/patients/H-FOP"', 1)[1].split("</tr>", 1)[0]
    assert f", {words('ready')}" in html.unescape(row)  # its sites, as stored
    assert 'id="patients-stale"' not in page.text  # today's calls: nothing to say


def test_stored_calls_of_an_earlier_day_are_announced_as_the_board_does(
    demo_engine: Engine,
) -> None:
    refresh_all(engine=demo_engine, as_of=AS_OF, protocol=Protocol())
    with make_client_on(demo_engine, AS_OF + dt.timedelta(days=5)) as client:
        sign_in(client, "clinician")
        page = client.get("/patients", params={"readiness": "ready"})
        board = client.get("/board")
    said = "Assessed as of 2 Nov 2026; refresh."
    notice = page.text.split('id="patients-stale"', 1)[1].split("</div>", 1)[0]
    assert said in notice and 'href="/board"' in notice
    assert said in board.text  # the board's own words
    assert "H-READY" in listed_mrns(page.text)
    plain = client.get("/patients", params={"q": "hughes"})
    assert 'id="patients-stale"' not in plain.text  # no site filter: nothing stored is read


def test_a_patient_imported_on_the_web_reaches_the_stored_assessments(
    demo_engine: Engine,
) -> None:
    refresh_all(engine=demo_engine, as_of=AS_OF, protocol=Protocol())
    files = {
        "patients.csv": "mrn,birth_date,sex,family_name,given_name,team\n"
        "W-NEW,1980-02-03,male,Imported,Ian,\n",
        "injuries.csv": "mrn,kind,date,notes\nW-NEW,burn,2026-06-01,\n",
        "imaging.csv": (DEMO / "imaging.csv").read_text().splitlines()[0] + "\n"
        "W-NEW,2026-09-10,radiograph,hip,right,present,mass,central,none,no,,,,,55,,\n",
    }
    with make_client_on(demo_engine, AS_OF) as client:
        sign_in(client, "clinician")
        page = client.get("/import")
        sent = client.post(
            "/import",
            data={"csrf_token": csrf_in(page.text)},
            files=[("files", (name, text.encode(), "text/csv")) for name, text in files.items()],
        )
        assert sent.status_code == 200, sent.text
        stored = _stored(demo_engine, "W-NEW")
        assert [(site["site"], site["side"]) for site in stored] == [("hip", "right")]
        found = client.get("/patients", params={"q": "imported", "stage": stored[0]["stage"]})
    assert listed_mrns(found.text) == ["W-NEW"]
    assert "right hip" in found.text
