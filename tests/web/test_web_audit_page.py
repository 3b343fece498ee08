"""The admin's audit page (issue 14): the filter form accepted as it stands, filters
and paging in the URL, before/after as field lines in words, clinic time to the
minute, and a CSV import that says what it added."""

from __future__ import annotations

import csv
import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.test_web_search import read_form, with_value
from tests.web.web_support import DEMO, add_role_users, csrf_in, make_client, sign_in
from tracker.protocol import Protocol
from tracker.services import records
from tracker.services.audit import audit_event

ZONE = Protocol().reminders.zone  # the app runs on the default protocol in these tests
RECENT = (dt.date.today() - dt.timedelta(days=3)).isoformat()


def rows_of(page: str) -> list[str]:
    """Each table row's cells as text, tags dropped."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        html.unescape(" ".join(re.sub(r"<[^>]+>", " ", row).split()))
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def next_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def admin(demo_engine: Engine) -> TestClient:
    return sign_in(make_client(demo_engine), "admin")


def test_the_audit_form_submitted_as_it_stands_shows_the_trail(admin: TestClient) -> None:
    form = read_form(admin.get("/admin/audit").text, "/admin/audit")
    assert {n for n, _ in form.fields} == {"from", "to", "action", "user", "mrn"}
    response = admin.get("/admin/audit", params=form.fields)
    assert response.status_code == 200
    assert any("signed in" in row for row in rows_of(response.text))


def test_every_action_the_audit_form_offers_is_accepted(admin: TestClient) -> None:
    form = read_form(admin.get("/admin/audit").text, "/admin/audit")
    assert len(form.options["action"]) > 5
    for action in form.options["action"]:
        response = admin.get("/admin/audit", params=with_value(form.fields, "action", action))
        assert response.status_code == 200, (action, response.text[:300])


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"from": "2026-13-01"}, "From: ‘2026-13-01’ is not a date"),
        ({"to": "yesterday"}, "To: ‘yesterday’ is not a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "To: 2026-01-01 is before From"),
        ({"action": "delete"}, "Action: ‘delete’ is not an action the trail records"),
        ({"mrn": "M" * 65}, "Patient MRN: type at most 64 characters"),
    ],
)
def test_a_filter_the_form_would_not_send_is_refused_in_a_sentence(
    admin: TestClient, params: dict[str, str], said: str
) -> None:
    response = admin.get("/admin/audit", params=params)
    assert response.status_code == 422
    assert said in html.unescape(response.text)
    assert 'aria-invalid="true"' in response.text and "Input should" not in response.text


def test_the_days_filter_finds_todays_events_and_not_tomorrows(admin: TestClient) -> None:
    today = dt.datetime.now(dt.UTC).astimezone(ZONE).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    shown = admin.get("/admin/audit", params={"from": today.isoformat(), "to": today.isoformat()})
    assert any("admin" in row and "signed in" in row for row in rows_of(shown.text))
    later = admin.get("/admin/audit", params={"from": tomorrow})
    assert rows_of(later.text) == []
    assert "No events match these filters." in later.text


def test_times_are_the_clinics_to_the_minute(admin: TestClient, demo_engine: Engine) -> None:
    with demo_engine.connect() as conn:
        at = conn.execute(sa.select(sa.func.max(audit_event.c.at))).scalar_one()
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    page = admin.get("/admin/audit").text
    first = rows_of(page)[0]
    assert first.startswith(at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M "))
    assert not re.search(r"\d\d:\d\d:\d\d", page.split("<tbody>", 1)[1].split("</tbody>")[0])
    assert f"When ({Protocol().reminders.time_zone})" in page


def test_a_correction_reads_field_old_to_new_with_the_record_and_patient(
    admin: TestClient, demo_engine: Engine
) -> None:
    saved = records.add_lab(
        engine=demo_engine, actor="clinician", mrn="H-READY", date=RECENT,
        analyte="alp", value="100", unit="U/L",
    )  # fmt: skip
    records.correct_lab(
        engine=demo_engine, actor="clinician", record_id=saved.id, expected_version=1,
        changes={"value": "160"},
    )  # fmt: skip
    page = admin.get("/admin/audit", params={"action": "correct", "mrn": "H-READY"}).text
    (row,) = rows_of(page)
    assert f"lab result {saved.id} · H-READY HUGHES, Gareth" in row
    assert row.endswith("value: 100 → 160")
    assert "analyte" not in row and "version" not in row
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert "{" not in body and "&#39;" not in body  # no Python dicts, no JSON


def test_a_void_reads_its_reason(admin: TestClient, demo_engine: Engine) -> None:
    saved = records.add_injury(
        engine=demo_engine, actor="clinician", mrn="H-NONE", kind="burn", date=RECENT
    )
    records.void_record(
        engine=demo_engine, actor="clinician", entity="injury", record_id=saved.id,
        expected_version=1, reason="entered twice",
    )  # fmt: skip
    (row,) = rows_of(admin.get("/admin/audit", params={"action": "void"}).text)
    assert f"injury {saved.id} · H-NONE" in row and row.endswith("reason: entered twice")


def test_next_pages_through_the_trail_keeping_the_filters(
    admin: TestClient, demo_engine: Engine
) -> None:
    # 120 views in one instant: only the id orders them
    at = dt.datetime.now(dt.UTC)
    mrns = [f"Q{n:03d}" for n in range(120)]
    with demo_engine.begin() as conn:
        conn.execute(
            sa.insert(audit_event),
            [
                {"at": at, "username": "clinician", "action": "view", "entity": "patient",
                 "mrn": mrn}
                for mrn in mrns
            ],
        )  # fmt: skip
    url: str | None = "/admin/audit?action=view&user=clinician"
    seen: list[str] = []
    pages = 0
    while url:
        response = admin.get(url)
        assert response.status_code == 200
        pages += 1
        seen += re.findall(r'<a href="/patients/(Q\d+)"', response.text)
        url = next_link(response.text)
        if url:
            assert "action=view" in url and "user=clinician" in url
    assert pages == 3
    assert sorted(seen) == mrns and len(seen) == len(set(seen))
    assert seen == sorted(mrns, reverse=True)  # newest (highest id) first


def test_a_web_import_says_how_many_rows_per_file_and_for_how_many_patients(
    engine: Engine,
) -> None:
    add_role_users(engine)
    clinician = sign_in(make_client(engine), "clinician")
    page = clinician.get("/import")
    files = [("files", (p.name, p.read_bytes(), "text/csv")) for p in sorted(DEMO.glob("*.csv"))]
    imported = clinician.post("/import", files=files, data={"csrf_token": csrf_in(page.text)})
    assert imported.status_code == 200, imported.text[:500]
    admin = sign_in(make_client(engine), "admin")
    rows = rows_of(admin.get("/admin/audit", params={"action": "import"}).text)
    mrns: set[str] = set()
    for path in sorted(DEMO.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            mrns |= {line["mrn"] for line in csv.DictReader(handle)}
    # issue 15: one import row per patient given records, each naming its patient
    assert len(rows) == min(len(mrns), 50)
    assert all(row.split()[2] == "clinician" for row in rows)
    assert all(any(mrn in row for mrn in mrns) for row in rows)
