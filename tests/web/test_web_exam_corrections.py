"""Correcting and voiding a bedside examination or a range-of-motion measurement on
the web (issue 16): each row of the patient's Examination section offers Correct and
Void; the correction form shows the stored values and saves a new, audited version
(refused when someone saved first); a bad value is refused naming the field in words
and changes nothing; a void needs a reason, and a voided record no longer asks for
imaging (suspected_ho_imaging) or flags a loss of range of motion (rom_loss)."""

from __future__ import annotations

import datetime as dt
import html
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from tests.conftest import write_csv
from tests.web.form_walk import forms_in, marked
from tests.web.web_support import add_role_users, make_client_on, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.services.assessment import assess_one

# The services re-plan a patient as of the clinic's real today after a change, so
# the records are dated relative to it: the reminders they drive are open today.
TODAY = dt.date.today()
MRN = "X-BEDSIDE"
OPEN = ("pending", "due", "sent")


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


@pytest.fixture
def ward(engine: Engine) -> Engine:
    """X-BEDSIDE, a spinal cord injury 60 days ago: swelling and warmth at the left
    knee 5 days ago (pain 6; image the knee: suspected HO), and HO at the right hip
    whose flexion fell 100 -> 70 degrees (rom_loss). Reminders planned as of today."""
    rows: dict[str, list[dict[str, object]]] = {
        "patients.csv": [{"mrn": MRN, "birth_date": "1971-02-03", "sex": "female",
                          "family_name": "Ngata", "given_name": "Ria", "team": "spinal_unit"}],
        "injuries.csv": [{"mrn": MRN, "kind": "spinal_cord_injury", "date": ago(60)}],
        "imaging.csv": [{"mrn": MRN, "date": ago(40), "modality": "radiograph", "site": "hip",
                         "side": "right", "ho": "present"}],
        "exams.csv": [{"mrn": MRN, "date": ago(5), "site": "knee", "side": "left",
                       "swelling": "yes", "warmth": "yes", "erythema": "", "pain": 6,
                       "notes": ""}],
        "rom.csv": [
            {"mrn": MRN, "date": ago(30), "site": "hip", "side": "right",
             "movement": "flexion", "degrees": 100},
            {"mrn": MRN, "date": ago(10), "site": "hip", "side": "right",
             "movement": "flexion", "degrees": 70},
        ],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for name, listed in rows.items():
            write_csv(Path(scratch), name, listed)
        import_folder(engine, Path(scratch))
    add_role_users(engine)
    plan(engine=engine, as_of=TODAY, protocol=Protocol())
    return engine


@pytest.fixture
def clinician(ward: Engine) -> Iterator[TestClient]:
    with make_client_on(ward, TODAY) as client:
        yield sign_in(client, "clinician")


def _table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


def stored(engine: Engine, table: str, **where: object) -> dict[str, object]:
    t = _table(table)
    query = sa.select(t).where(*(t.c[k] == v for k, v in where.items()))
    with engine.connect() as conn:
        (row,) = conn.execute(query).mappings().all()
    return dict(row)


def exam_id(engine: Engine) -> int:
    return int(stored(engine, "clinical_exam", site="knee", side="left")["id"])  # type: ignore[call-overload]


def latest_flexion_id(engine: Engine) -> int:
    return int(stored(engine, "range_of_motion", degrees=70.0)["id"])  # type: ignore[call-overload]


def correction_form(client: TestClient, url: str) -> list[tuple[str, str]]:
    """What a browser sends when Save is pressed on the correction form at `url`,
    every field left as the form shows it."""
    page = client.get(url)
    assert page.status_code == 200, page.text[:500]
    (form,) = [f for f in forms_in(page.text, url) if not f.action]
    saves = [s for s in form.submissions() if ("save", "1") in s.fields]
    return saves[0].fields


def post(client: TestClient, url: str, fields: list[tuple[str, str]]) -> object:
    return client.post(
        url,
        content=urlencode(fields),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def changed(fields: list[tuple[str, str]], **values: str) -> list[tuple[str, str]]:
    return [(k, values.get(k, v)) for k, v in fields]


def open_reminders(engine: Engine, rule: str) -> list[tuple[str, str]]:
    r = _table("reminder")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.c.site, r.c.side).where(r.c.rule == rule, r.c.status.in_(OPEN))
        ).all()
    return [(row.site, row.side) for row in rows]


def audit_actions(engine: Engine, entity: str, record_id: int) -> list[str]:
    a = _table("audit_event")
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(a.c.action)
                .where(a.c.entity == entity, a.c.entity_id == record_id)
                .order_by(a.c.id)
            ).scalars()
        )


def test_each_examination_row_offers_correct_and_void_in_words(
    clinician: TestClient, ward: Engine
) -> None:
    page = clinician.get(f"/patients/{MRN}")
    assert page.status_code == 200
    section = page.text.split('id="exam-h"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr class="exam-record" id="([\w-]+)">(.*?)</tr>', section, re.S)
    assert [key for key, _ in rows] == [
        f"examination-{exam_id(ward)}",
        f"range-of-motion-{latest_flexion_id(ward)}",
        f"range-of-motion-{latest_flexion_id(ward) - 1}",
    ]  # newest first
    exam_row = html.unescape(rows[0][1])
    assert "Left knee" in exam_row and "Clinical examination" in exam_row
    assert "Swelling; warmth; pain 6 of 10" in exam_row
    assert "Flexion 70°" in html.unescape(rows[1][1])
    for key, cells in rows:
        slug, record_id = key.rsplit("-", 1)
        assert f'href="/patients/{MRN}/{slug}/{record_id}/edit">Correct' in cells
        assert f'href="/patients/{MRN}/{slug}/{record_id}/edit#void-h">Void' in cells
    assert "range_of_motion" not in section and "clinical_exam" not in section


def test_an_examination_correction_form_shows_the_stored_values_and_a_void_form(
    clinician: TestClient, ward: Engine
) -> None:
    url = f"/patients/{MRN}/examination/{exam_id(ward)}/edit"
    sent = dict(correction_form(clinician, url))
    assert sent["date"] == ago(5)
    assert (sent["site"], sent["side"]) == ("knee", "left")
    assert (sent["swelling"], sent["warmth"], sent["erythema"], sent["pain"]) == (
        "yes", "yes", "", "6",
    )  # fmt: skip
    page = clinician.get(url).text
    assert "<h1>Correct examination</h1>" in page
    assert f'action="/patients/{MRN}/examination/{exam_id(ward)}/void"' in page


def test_an_unchanged_correction_saves_a_new_audited_version_like_any_record(
    clinician: TestClient, ward: Engine
) -> None:
    for table, record_id, slug in (
        ("clinical_exam", exam_id(ward), "examination"),
        ("range_of_motion", latest_flexion_id(ward), "range-of-motion"),
    ):
        before = stored(ward, table, id=record_id)
        url = f"/patients/{MRN}/{slug}/{record_id}/edit"
        response = post(clinician, url, correction_form(clinician, url))
        assert response.status_code == 303, response.text[-2000:]  # type: ignore[attr-defined]
        assert response.headers["location"] == f"/patients/{MRN}"  # type: ignore[attr-defined]
        after = stored(ward, table, id=record_id)
        keep = ("date", "site", "side", "swelling", "pain", "movement", "degrees")
        assert {k: after.get(k) for k in keep} == {k: before.get(k) for k in keep}
        assert after["version"] == before["version"] + 1  # type: ignore[operator]
        assert audit_actions(ward, table, record_id)[-1] == "correct"
    notice = clinician.get(f"/patients/{MRN}").text
    assert "Range of motion corrected for" in html.unescape(notice)
    assert "right hip flexion 70°" in html.unescape(notice)


def test_a_corrected_examination_is_stored_with_its_new_values(
    clinician: TestClient, ward: Engine
) -> None:
    url = f"/patients/{MRN}/examination/{exam_id(ward)}/edit"
    fields = changed(correction_form(clinician, url), pain="8", erythema="yes")
    response = post(clinician, url, fields)
    assert response.status_code == 303, response.text[-2000:]  # type: ignore[attr-defined]
    row = stored(ward, "clinical_exam", id=exam_id(ward))
    assert (row["pain"], row["erythema"], row["version"]) == (8, "yes", 2)
    page = html.unescape(clinician.get(f"/patients/{MRN}").text)
    assert "Swelling; warmth; erythema; pain 8 of 10" in page


@pytest.mark.parametrize(
    ("slug", "field", "bad", "words"),
    [
        ("examination", "pain", "11", "pain score"),
        ("range-of-motion", "degrees", "250", "degrees"),
    ],
)
def test_a_value_out_of_range_is_refused_naming_the_field_and_nothing_changes(
    clinician: TestClient, ward: Engine, slug: str, field: str, bad: str, words: str
) -> None:
    record_id = exam_id(ward) if slug == "examination" else latest_flexion_id(ward)
    table = "clinical_exam" if slug == "examination" else "range_of_motion"
    before = stored(ward, table, id=record_id)
    url = f"/patients/{MRN}/{slug}/{record_id}/edit"
    response = post(clinician, url, changed(correction_form(clinician, url), **{field: bad}))
    assert response.status_code == 422  # type: ignore[attr-defined]
    text = html.unescape(response.text)  # type: ignore[attr-defined]
    assert "Not saved." in text
    assert field in marked(text)
    error = re.search(rf'id="f-{field}-err">([^<]*)<', text)
    assert error and words in error.group(1).lower() and bad in error.group(1), text[-3000:]
    assert stored(ward, table, id=record_id) == before


def test_a_correction_that_lost_the_race_is_refused_and_keeps_what_was_typed(
    clinician: TestClient, ward: Engine
) -> None:
    record_id = latest_flexion_id(ward)
    url = f"/patients/{MRN}/range-of-motion/{record_id}/edit"
    first = correction_form(clinician, url)
    second = correction_form(clinician, url)
    assert post(clinician, url, changed(first, degrees="72")).status_code == 303  # type: ignore[attr-defined]
    late = post(clinician, url, changed(second, degrees="75"))
    assert late.status_code == 409  # type: ignore[attr-defined]
    assert 'value="75"' in late.text  # type: ignore[attr-defined]
    assert stored(ward, "range_of_motion", id=record_id)["degrees"] == 72


def void_form(client: TestClient, url: str) -> tuple[str, list[tuple[str, str]]]:
    page = client.get(url)
    (form,) = [f for f in forms_in(page.text, url) if (f.action or "").endswith("/void")]
    (submission,) = form.submissions()
    return submission.url, submission.fields


def test_a_void_without_a_reason_is_refused_and_the_examination_stays(
    clinician: TestClient, ward: Engine
) -> None:
    target, fields = void_form(clinician, f"/patients/{MRN}/examination/{exam_id(ward)}/edit")
    response = post(clinician, target, fields)  # the reason left blank, as the form opens
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "reason" in marked(response.text)  # type: ignore[attr-defined]
    assert re.search(r'id="v-reason-err">[^<]*required', response.text)  # type: ignore[attr-defined]
    assert stored(ward, "clinical_exam", id=exam_id(ward))["voided_at"] is None
    assert ("knee", "left") in open_reminders(ward, "suspected_ho_imaging")


def test_a_voided_examination_leaves_the_page_and_no_longer_asks_for_imaging(
    clinician: TestClient, ward: Engine
) -> None:
    record_id = exam_id(ward)
    # the knee's signs and the hip's loss of range each ask for imaging of that joint
    assert sorted(open_reminders(ward, "suspected_ho_imaging")) == [
        ("hip", "right"), ("knee", "left"),
    ]  # fmt: skip
    target, fields = void_form(clinician, f"/patients/{MRN}/examination/{record_id}/edit")
    response = post(clinician, target, changed(fields, reason="examined the other knee"))
    assert response.status_code == 303, response.text[-2000:]  # type: ignore[attr-defined]
    row = stored(ward, "clinical_exam", id=record_id)
    assert row["voided_reason"] == "examined the other knee" and row["voided_by"] == "clinician"
    assert audit_actions(ward, "clinical_exam", record_id)[-1] == "void"
    page = html.unescape(clinician.get(f"/patients/{MRN}").text)
    assert "Examination voided for" in page
    assert f'id="examination-{record_id}"' not in page
    assert "Swelling and warmth at the left knee" not in page
    assert open_reminders(ward, "suspected_ho_imaging") == [("hip", "right")]


def test_voiding_the_measurement_that_shows_the_loss_clears_rom_loss(
    clinician: TestClient, ward: Engine
) -> None:
    def flags() -> list[str]:
        sites = assess_one(engine=ward, mrn=MRN, as_of=TODAY)
        (hip,) = [s for s in sites.sites if (s.site, s.side) == ("hip", "right")]
        return list(hip.flags)

    assert "rom_loss" in flags()
    record_id = latest_flexion_id(ward)
    target, fields = void_form(clinician, f"/patients/{MRN}/range-of-motion/{record_id}/edit")
    response = post(clinician, target, changed(fields, reason="measured the wrong leg"))
    assert response.status_code == 303, response.text[-2000:]  # type: ignore[attr-defined]
    assert "rom_loss" not in flags()
    assert ("hip", "right") not in open_reminders(ward, "suspected_ho_imaging")
    page = html.unescape(clinician.get(f"/patients/{MRN}").text)
    assert "Range of motion voided for" in page and "right hip flexion 70°" in page
    assert f'id="range-of-motion-{record_id}"' not in page
