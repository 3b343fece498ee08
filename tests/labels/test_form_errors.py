"""A refused form speaks in sentences, through the real routes: the finding is named
by its number and site, the summary counts only fields that are marked below, and a
study with no finding marks where the first one goes."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO, add_role_users, csrf_in, make_client, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.store import database


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = database.make_engine(f"sqlite:///{tmp_path_factory.mktemp('words') / 't.db'}")
    database.upgrade(engine)
    import_folder(engine, DEMO)
    add_role_users(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clinician(demo_store: Engine) -> Iterator[TestClient]:
    with make_client(demo_store) as client:
        yield sign_in(client, "clinician")


def alert_of(page: str) -> str:
    """The text of the error box at the top of the form."""
    found = re.search(r'<div class="error" role="alert">(.*?)</div>', page, re.S)
    assert found, page[-3000:]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def post_study(client: TestClient, **findings: str) -> str:
    form = client.get("/patients/H-READY/imaging/new")
    assert form.status_code == 200
    data = {"csrf_token": csrf_in(form.text), "date": "2026-09-01", "modality": "radiograph",
            "save": "1", **{k.replace("__", "].").replace("_f", "findings[", 1): v
                             for k, v in findings.items()}}  # fmt: skip
    response = client.post("/patients/H-READY/imaging/new", data=data)
    assert response.status_code == 422, response.text[-2000:]
    return response.text


def test_a_finding_without_ho_is_named_by_its_number_and_site(clinician: TestClient) -> None:
    page = post_study(
        clinician,
        _f0__site="knee", _f0__side="left", _f0__ho="present",
        _f1__site="hip", _f1__side="right",
    )  # fmt: skip
    alert = alert_of(page)
    assert "Finding 2 (right hip): HO is required" in alert
    assert "Fix the 1 field marked below." in alert
    beside = re.search(r'id="r-findings-1-ho-err">([^<]*)<', page)
    assert beside and beside.group(1) == "HO is required"  # inside the "Finding 2" fieldset
    assert "findings[1].ho" not in alert and "is required:" not in alert


def test_a_study_with_no_finding_marks_the_first_findings_site_and_says_why(
    clinician: TestClient,
) -> None:
    page = post_study(clinician)  # a study with no finding at all
    alert = alert_of(page)
    assert "Fix the 1 field marked below." in alert
    assert "Finding 1: Site is required: give at least one finding" in alert
    marked = re.findall(r'<(?:input|select|textarea)[^>]*aria-invalid="true"[^>]*>', page)
    assert len(marked) == 1 and 'name="findings[0].site"' in marked[0]


def test_a_blank_void_reason_says_which_field_is_missing(
    clinician: TestClient, demo_store: Engine
) -> None:
    from tracker.services.patients import patient_story

    story, _ = patient_story(engine=demo_store, mrn="H-READY")
    lab = story.labs[0]
    form = clinician.get(f"/patients/H-READY/labs/{lab.id}/edit")
    version = re.search(r'name="version" value="(\d+)"', form.text)
    assert version
    response = clinician.post(
        f"/patients/H-READY/labs/{lab.id}/void",
        data={"csrf_token": csrf_in(form.text), "version": version.group(1), "reason": " "},
    )
    assert response.status_code == 422
    void_box = response.text.split('id="void-h"', 1)[1]
    assert alert_of(void_box).startswith("Not voided. Reason for voiding is required")
