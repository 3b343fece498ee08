"""Adding and editing a patient in the web app and the API, and what the patient page
shows a team: the FOP banner, whole treatment courses with their stop reason, an edit
link on every timeline row, corrections and voids in view, and the as-of control."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import api_token, make_client_on, sign_in

TODAY = dt.date(2026, 11, 2)  # a few days after the demo's latest records


@pytest.fixture
def clinic(demo_engine: Engine) -> Iterator[TestClient]:
    """A clinician signed in, on a fixed clinic day."""
    with make_client_on(demo_engine, TODAY) as client:
        yield sign_in(client, "clinician")


def form_values(page: str, action: str | None = None) -> dict[str, str]:
    """What a browser would send for the form on `page` as it stands: each input's
    value and each select's selected option (the first form posting to `action`)."""
    forms = re.findall(r"(?s)<form\b([^>]*)>(.*?)</form>", page)
    body = next(
        inner
        for attrs, inner in forms
        if 'method="post"' in attrs
        and (action is None or f'action="{action}"' in attrs)
        and "signout" not in attrs
    )
    values: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", body):
        name = re.search(r'name="([^"]+)"', tag)
        if name:
            value = re.search(r'value="([^"]*)"', tag)
            values[name.group(1)] = html.unescape(value.group(1)) if value else ""
    for name, options in re.findall(r'(?s)<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', body):
        chosen = re.search(r'<option value="([^"]*)" selected', options)
        values[name] = html.unescape(chosen.group(1)) if chosen else ""
    return values


def visible(page: str) -> str:
    """The page's text as a reader sees it (no tags, attributes or scripts)."""
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def marked(page: str) -> set[str]:
    return set(re.findall(r'name="([^"]+)"[^>]*aria-invalid="true"', page))


def patient_row(engine: Engine, mrn: str) -> dict[str, object] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT mrn, family_name, given_name, birth_date, sex, team, version "
                    "FROM patient WHERE mrn = :mrn"
                ),
                {"mrn": mrn},
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    return {**row, "birth_date": str(row["birth_date"]) if row["birth_date"] else None}


def patient_audit(engine: Engine, mrn: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT username, action, before, after FROM audit_event "
                "WHERE entity = 'patient' AND mrn = :mrn AND action <> 'view' ORDER BY id"
            ),
            {"mrn": mrn},
        ).mappings()
        return [
            {
                **row,
                "before": json.loads(row["before"]) if row["before"] else None,
                "after": json.loads(row["after"]) if row["after"] else None,
            }
            for row in rows
        ]


# --- adding a patient ----------------------------------------------------------------------


def test_a_clinician_adds_a_patient_and_lands_on_their_page_with_a_one_time_notice(
    clinic: TestClient, demo_engine: Engine
) -> None:
    form = clinic.get("/patients/new")
    assert form.status_code == 200
    values = form_values(form.text)
    values.update(
        mrn="N-0001", family_name="Newman", given_name="Ann", birth_date="1980-01-31",
        sex="female", team="spinal_unit",
    )  # fmt: skip
    saved = clinic.post("/patients/new", data=values)

    assert saved.status_code == 303 and saved.headers["location"] == "/patients/N-0001"
    page = clinic.get("/patients/N-0001")
    assert "Patient N-0001 (NEWMAN, Ann) added." in visible(page.text)
    assert "spinal unit" in visible(page.text) and "spinal_unit" not in visible(page.text)
    assert "added." not in visible(clinic.get("/patients/N-0001").text)  # said once
    assert patient_row(demo_engine, "N-0001") == {
        "mrn": "N-0001",
        "family_name": "Newman",
        "given_name": "Ann",
        "birth_date": "1980-01-31",
        "sex": "female",
        "team": "spinal_unit",
        "version": 1,
    }
    (created,) = patient_audit(demo_engine, "N-0001")
    assert (created["username"], created["action"], created["before"]) == (
        "clinician",
        "create",
        None,
    )
    assert created["after"]["team"] == "spinal_unit"  # type: ignore[index]


def test_the_add_form_sent_with_its_defaults_marks_only_the_mrn(
    clinic: TestClient, demo_engine: Engine
) -> None:
    form = clinic.get("/patients/new")
    defaults = form_values(form.text)
    assert defaults["mrn"] == "" and defaults["birth_date"] == ""  # no made-up birth date

    refused = clinic.post("/patients/new", data=defaults)

    assert refused.status_code == 422
    assert marked(refused.text) == {"mrn"}
    assert "MRN is required" in visible(refused.text)
    assert "Fix the 1 field marked below." in visible(refused.text)


def test_the_add_form_chooses_the_users_own_team(
    demo_engine: Engine,
) -> None:
    with demo_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE user_account SET team = 'burns_unit' WHERE username = 'clinician'")
        )
    with make_client_on(demo_engine, TODAY) as client:
        sign_in(client, "clinician")
        assert form_values(client.get("/patients/new").text)["team"] == "burns_unit"


def test_a_taken_mrn_is_refused_in_words_and_what_was_typed_is_kept(
    clinic: TestClient, demo_engine: Engine
) -> None:
    values = form_values(clinic.get("/patients/new").text)
    values.update(mrn="H-FOP", family_name="Someone", birth_date="2040-01-01")

    refused = clinic.post("/patients/new", data=values)

    assert refused.status_code == 422
    said = visible(refused.text)
    assert "MRN: H-FOP is already taken by SATO, Yuki; open that patient instead" in said
    assert "Birth date 2040-01-01 is in the future" in said  # every problem at once
    assert marked(refused.text) == {"mrn", "birth_date"}
    assert 'value="Someone"' in refused.text
    assert patient_row(demo_engine, "H-FOP")["family_name"] == "Sato"  # type: ignore[index]


def test_a_birth_date_that_is_not_a_date_gets_the_csv_imports_refusal(
    clinic: TestClient,
) -> None:
    values = form_values(clinic.get("/patients/new").text)
    values.update(mrn="N-0002", birth_date="1980-02-30")
    refused = clinic.post("/patients/new", data=values)
    assert refused.status_code == 422 and marked(refused.text) == {"birth_date"}
    assert "Birth date '1980-02-30' is not a date" in visible(refused.text)


def test_surgeons_and_admins_may_not_add_or_edit_patients(demo_engine: Engine) -> None:
    for role in ("surgeon", "admin"):
        with make_client_on(demo_engine, TODAY) as client:
            sign_in(client, role)
            assert client.get("/patients/new").status_code == 403
            assert client.get("/patients/H-FOP/edit").status_code == 403
            assert "/patients/H-FOP/edit" not in client.get("/patients/H-FOP").text


# --- editing a patient ---------------------------------------------------------------------


def test_an_edit_form_sent_unchanged_saves_nothing_and_says_so(
    clinic: TestClient, demo_engine: Engine
) -> None:
    page = clinic.get("/patients/H-READY/edit")
    assert page.status_code == 200
    assert "mrn" not in form_values(page.text)  # the MRN is shown, never an input

    sent = clinic.post("/patients/H-READY/edit", data=form_values(page.text))

    assert sent.status_code == 303 and sent.headers["location"] == "/patients/H-READY"
    assert "Nothing changed for patient H-READY (HUGHES, Gareth)." in visible(
        clinic.get("/patients/H-READY").text
    )
    assert patient_row(demo_engine, "H-READY")["version"] == 1  # type: ignore[index]
    assert patient_audit(demo_engine, "H-READY") == []


def test_an_edit_of_the_team_is_versioned_and_audited_before_and_after(
    clinic: TestClient, demo_engine: Engine
) -> None:
    values = form_values(clinic.get("/patients/H-READY/edit").text)
    values.update(team="trauma_ward", given_name="Gareth John")

    assert clinic.post("/patients/H-READY/edit", data=values).status_code == 303

    page = visible(clinic.get("/patients/H-READY").text)
    assert "Patient H-READY (HUGHES, Gareth John) saved." in page
    assert "trauma ward" in page
    stored = patient_row(demo_engine, "H-READY")
    assert stored is not None and (stored["team"], stored["version"]) == ("trauma_ward", 2)
    (edit,) = patient_audit(demo_engine, "H-READY")
    assert (edit["username"], edit["action"]) == ("clinician", "correct")
    before, after = edit["before"], edit["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert (before["team"], after["team"]) == ("spinal_unit", "trauma_ward")
    assert (before["given_name"], after["given_name"]) == ("Gareth", "Gareth John")
    # the correction is in view on the patient page, in words
    assert "Team: spinal unit → trauma ward" in page


def test_a_stale_edit_is_refused_naming_who_saved_first(
    clinic: TestClient, demo_engine: Engine
) -> None:
    first = form_values(clinic.get("/patients/H-READY/edit").text)
    second = dict(first)
    first.update(sex="unknown")
    assert clinic.post("/patients/H-READY/edit", data=first).status_code == 303

    second.update(family_name="Hughes-Jones")
    refused = clinic.post("/patients/H-READY/edit", data=second)

    assert refused.status_code == 409
    assert "Patient H-READY was changed by clinician" in visible(refused.text)
    assert "Reload the patient as stored now" in visible(refused.text)
    stored = patient_row(demo_engine, "H-READY")
    assert stored is not None
    assert (stored["family_name"], stored["sex"], stored["version"]) == ("Hughes", "unknown", 2)


def test_an_edit_to_an_unknown_team_is_refused_beside_the_team(clinic: TestClient) -> None:
    values = form_values(clinic.get("/patients/H-READY/edit").text)
    values["team"] = "ward_99"
    refused = clinic.post("/patients/H-READY/edit", data=values)
    assert refused.status_code == 422 and marked(refused.text) == {"team"}
    assert "not one of the clinic's teams" in visible(refused.text)


# --- the patient page ----------------------------------------------------------------------


FOP_BANNER = "Fibrodysplasia ossificans progressiva (FOP), recorded 2019-06-15: never resect."


def test_the_fop_banner_stands_at_the_top_of_an_fop_patients_page_only(
    clinic: TestClient,
) -> None:
    fop = clinic.get("/patients/H-FOP").text
    assert FOP_BANNER in visible(fop)
    assert "avoid biopsy and intramuscular injections" in visible(fop)
    assert fop.index('id="fop-banner"') < fop.index('id="sites-h"')
    for mrn in ("H-MINERAL", "H-READY", "H-RESECTED"):
        page = clinic.get(f"/patients/{mrn}").text
        assert 'id="fop-banner"' not in page and "never resect" not in visible(page)


def test_a_stopped_course_shows_its_site_plan_stop_date_and_reason(
    clinic: TestClient,
) -> None:
    page = clinic.get("/patients/H-EARLY").text
    running = re.search(r"/patients/H-EARLY/courses/(\d+)/stop", page)
    assert running, "H-EARLY has a running course"
    form = clinic.get(running.group(0))
    values = form_values(form.text)
    values.update(end_date="2026-10-20", reason="upper GI bleed on indomethacin")
    assert clinic.post(running.group(0), data=values).status_code == 303

    page = clinic.get("/patients/H-EARLY").text
    row = re.search(rf'(?s)<tr id="course-{running.group(1)}">.*?</tr>', page)
    assert row
    said = visible(row.group(0))
    for shown in ("etidronate", "treatment", "2026-10-09", "12 weeks", "2026-10-20"):
        assert shown in said
    assert "upper GI bleed on indomethacin" in said
    assert "etidronate treatment ended: upper GI bleed on indomethacin" in visible(page)


def test_a_site_specific_course_shows_its_site_in_words(clinic: TestClient) -> None:
    page = visible(clinic.get("/patients/H-MINERAL").text)
    assert "physiotherapy treatment left hip 2026-04-06 12 weeks" in page


def test_every_timeline_row_has_an_edit_link_that_opens_its_record(clinic: TestClient) -> None:
    page = clinic.get("/patients/H-MINERAL").text
    timeline = re.search(r'(?s)<table class="timeline">.*?</table>', page)
    assert timeline
    rows = re.findall(r"(?s)<tr class=\"[a-z_]+\">.*?</tr>", timeline.group(0))
    links = [re.search(r'href="(/patients/H-MINERAL/[^"]+/edit)"', r) for r in rows]
    assert len(rows) > 10 and all(links)
    for link in {m.group(1) for m in links if m}:
        assert clinic.get(link).status_code == 200, link
    assert "<details" not in page  # nothing to correct hides in a folded list


def test_names_injuries_and_findings_are_in_words_on_the_patient_page(
    clinic: TestClient,
) -> None:
    said = visible(clinic.get("/patients/H-MINERAL").text)
    assert "LINDQVIST, Erik" in said
    assert "spinal cord injury 2026-02-14" in said
    for token in ("spinal_cord_injury", "blood_pool", "well_defined", "spinal_unit", "not_ready"):
        assert token not in said


def test_corrections_and_voids_are_listed_on_the_page_with_their_reasons(
    clinic: TestClient, demo_engine: Engine
) -> None:
    from tracker.services import records
    from tracker.services.patients import patient_story

    story, _ = patient_story(engine=demo_engine, mrn="H-MINERAL")
    lab = story.labs[0]
    records.void_record(
        engine=demo_engine, actor="clinician", entity="lab_result", record_id=lab.id,
        expected_version=lab.version, reason="sample haemolysed",
    )  # fmt: skip
    injury = story.injuries[0]
    records.correct_injury(
        engine=demo_engine, actor="clinician", record_id=injury.id,
        expected_version=injury.version, changes={"notes": "C6 AIS B"},
    )  # fmt: skip

    page = clinic.get("/patients/H-MINERAL").text
    section = re.search(r'(?s)<section aria-labelledby="changes-h">.*?</section>', page)
    assert section
    said = visible(section.group(0))
    assert "voided lab result (ALP 2026-03-28)" in said and "sample haemolysed" in said
    assert "corrected injury (spinal cord injury 2026-02-14)" in said
    assert "Notes: C6 AIS A → C6 AIS B" in said
    assert said.index("corrected injury") < said.index("voided lab result")  # newest first


def test_a_notice_in_the_address_is_never_shown(clinic: TestClient) -> None:
    page = clinic.get("/patients/H-FOP?done=FOP+ruled+out+by+genetics+-+safe+to+resect")
    assert page.status_code == 200
    assert "FOP ruled out" not in page.text


def test_the_as_of_form_sent_with_its_default_shows_today(clinic: TestClient) -> None:
    page = clinic.get("/patients/H-MINERAL")
    default = re.search(r'<input id="as-of" name="as_of" type="date" value="([^"]*)"', page.text)
    assert default and default.group(1) == TODAY.isoformat()

    for sent in (default.group(1), ""):
        shown = clinic.get("/patients/H-MINERAL", params={"as_of": sent})
        assert shown.status_code == 200
        assert f"Assessed as of {TODAY.isoformat()} (today)" in visible(shown.text)


def test_an_earlier_as_of_date_reassesses_the_patient_on_that_day(clinic: TestClient) -> None:
    today = clinic.get("/patients/H-MINERAL").text
    before_imaging = clinic.get("/patients/H-MINERAL", params={"as_of": "2026-03-01"})

    assert before_imaging.status_code == 200
    assert 'class="site"' in today
    assert 'class="site"' not in before_imaging.text
    said = visible(before_imaging.text)
    assert "Assessed as of 2026-03-01" in said and "Back to today" in said
    assert "report.pdf?as_of=2026-03-01" in before_imaging.text


def test_an_as_of_that_is_not_a_date_marks_the_field_and_shows_today(
    clinic: TestClient,
) -> None:
    shown = clinic.get("/patients/H-MINERAL", params={"as_of": "yesterday"})
    assert shown.status_code == 422
    assert 'aria-invalid="true"' in shown.text
    said = visible(shown.text)
    assert "'yesterday' is not a date in the form YYYY-MM-DD; showing today" in said
    assert f"Assessed as of {TODAY.isoformat()}" in said


# --- the API -------------------------------------------------------------------------------


def test_the_api_adds_a_patient_and_edits_them_under_the_version_check(
    demo_engine: Engine,
) -> None:
    with make_client_on(demo_engine, TODAY) as client:
        auth = {"Authorization": f"Bearer {api_token(demo_engine, 'clinician')}"}
        added = client.post(
            "/api/v1/patients",
            json={"mrn": "A-0001", "family_name": "Api", "birth_date": "1975-05-05",
                  "team": "orthopaedics"},
            headers=auth,
        )  # fmt: skip
        assert added.status_code == 201, added.text
        assert added.json()["version"] == 1
        again = client.post("/api/v1/patients", json={"mrn": "A-0001"}, headers=auth)
        assert again.status_code == 422
        assert again.json()["detail"][0]["loc"] == ["body", "mrn"]

        read = client.get("/api/v1/patients/A-0001", headers=auth).json()
        edit = client.patch(
            "/api/v1/patients/A-0001",
            json={"version": read["version"], "sex": "male", "given_name": "Al"},
            headers=auth,
        )
        assert edit.status_code == 200 and edit.json() == {
            "mrn": "A-0001",
            "version": 2,
            "changed": True,
        }
        stale = client.patch(
            "/api/v1/patients/A-0001", json={"version": 1, "sex": "female"}, headers=auth
        )
        assert stale.status_code == 409
        renamed = client.patch(
            "/api/v1/patients/A-0001", json={"version": 2, "mrn": "A-0002"}, headers=auth
        )
        assert renamed.status_code == 422
        surgeon = {"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"}
        assert (
            client.post("/api/v1/patients", json={"mrn": "A-0003"}, headers=surgeon).status_code
            == 403
        )
    stored = patient_row(demo_engine, "A-0001")
    assert stored is not None
    assert (stored["sex"], stored["given_name"], stored["team"]) == ("male", "Al", "orthopaedics")
