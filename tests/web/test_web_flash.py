"""Notices after an action belong to the browser session that acted: shown once on its
next page, never to another session, never from text in the URL (issue 14)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.form_walk import forms_in
from tests.web.web_support import make_client, sign_in
from tracker.web.flash import flash_notice


def _notices(html: str) -> list[str]:
    return re.findall(r'<p class="notice" role="status">([^<]*)</p>', html)


def _save_patient_unchanged(client: TestClient) -> str:
    """Send the patient edit form as a browser would, untouched: nothing changed."""
    page = "/patients/H-READY/edit"
    form = next(
        f
        for f in forms_in(client.get(page).text, page)
        if "patient" in (f.id or "") or not f.action
    )
    sent = form.submissions()[0]
    response = client.post(sent.url, data=dict(sent.fields))
    assert response.status_code == 303, response.text[:500]
    return str(response.headers["location"])


def test_a_notice_shows_once_to_the_session_that_acted_and_to_no_other(
    client: TestClient, demo_engine: Engine
) -> None:
    sign_in(client, "clinician")
    with make_client(demo_engine) as other:
        sign_in(other, "clinician")  # the same user in another browser
        back = _save_patient_unchanged(client)
        assert "done=" not in back and "notice=" not in back
        assert _notices(other.get("/worklist").text) == []
        first = _notices(client.get(back).text)
        assert len(first) == 1 and first[0].startswith("Nothing changed for patient")
        assert _notices(client.get(back).text) == []  # shown once
    with demo_engine.connect() as conn:
        assert conn.execute(flash_notice.select()).all() == []


def test_text_in_the_url_is_never_shown_as_a_notice(client: TestClient) -> None:
    sign_in(client, "clinician")
    claim = "FOP ruled out by genetics - safe to resect"
    for path in ("/worklist", "/patients/H-FOP", "/admin/users", "/patients"):
        page = client.get(path, params={"done": claim, "notice": claim})
        assert claim not in page.text
