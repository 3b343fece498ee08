"""The bedside examination form (issue 16, item 3): one joint, its signs and pain and
a row per movement of that joint, with the last value recorded there beside each
field; the exam and its range of motion are saved together or not at all, and a
refusal is shown beside its input in words naming the joint and movement."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from html import unescape

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO, add_role_users, csrf_in, make_client_on, sign_in
from tracker.interchange.csv_import import import_folder

DAY = dt.date(2026, 11, 30)
MRN = "H-NONE"
URL = f"/patients/{MRN}/examination/new"
HIP = {"site": "hip", "side": "right"}
OURS = f"patient_id = (SELECT id FROM patient WHERE mrn = '{MRN}')"


@pytest.fixture
def clinic(engine: Engine) -> Engine:
    """The demo cohort and one user per role, on each backend."""
    import_folder(engine, DEMO)
    add_role_users(engine)
    return engine


@pytest.fixture
def clinician(clinic: Engine) -> Iterator[TestClient]:
    with make_client_on(clinic, DAY) as client:
        sign_in(client, "clinician")
        yield client


def _count(engine: Engine, table: str) -> int:
    """The patient's rows of `table` (the demo may hold examinations of others)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} t JOIN patient p ON p.id = t.patient_id "
                    "WHERE p.mrn = :mrn"
                ),
                {"mrn": MRN},
            ).scalar_one()
        )


def _rows(html: str) -> dict[str, int]:
    """The form's movement rows: movement -> row index."""
    found = re.findall(r'name="measurements\[(\d+)\]\.movement" value="([^"]*)"', html)
    return {movement: int(i) for i, movement in found}


def _post(client: TestClient, typed: dict[str, str], query: dict[str, str] = HIP) -> object:
    page = client.get(URL, params=query)
    assert page.status_code == 200, page.text[-2000:]
    data = {"csrf_token": csrf_in(page.text), "date": DAY.isoformat(), **query, "save": "1"}
    for movement, i in _rows(page.text).items():
        data[f"measurements[{i}].movement"] = movement
        data[f"measurements[{i}].degrees"] = ""
    data.update(typed)
    return client.post(URL, data=data)


def test_the_hip_form_lists_the_hip_movements_with_the_date_of_today(
    clinician: TestClient,
) -> None:
    page = clinician.get(URL, params=HIP)
    assert page.status_code == 200
    assert "Examine the right hip" in page.text
    assert list(_rows(page.text)) == [
        "flexion", "extension", "abduction", "adduction", "internal_rotation",
        "external_rotation",
    ]  # fmt: skip
    assert f'value="{DAY.isoformat()}"' in page.text
    assert "Internal rotation" in page.text and ">internal_rotation<" not in page.text
    assert 'inputmode="numeric"' in page.text
    knee = clinician.get(URL, params={"site": "knee", "side": "left"})
    assert list(_rows(knee.text)) == ["flexion", "extension"]


def test_signs_and_three_movements_are_saved_together_and_shown_as_last_values(
    clinician: TestClient, clinic: Engine
) -> None:
    rows = _rows(clinician.get(URL, params=HIP).text)
    typed = {
        "swelling": "yes", "warmth": "yes", "erythema": "no", "pain": "6",
        f"measurements[{rows['flexion']}].degrees": "100",
        f"measurements[{rows['abduction']}].degrees": "30",
        f"measurements[{rows['internal_rotation']}].degrees": "15",
    }  # fmt: skip
    response = _post(clinician, typed)
    assert response.status_code == 303, response.text[-3000:]  # type: ignore[attr-defined]
    assert _count(clinic, "clinical_exam") == 1
    assert _count(clinic, "range_of_motion") == 3  # the blank movements skipped
    with clinic.connect() as conn:
        exam = conn.execute(sa.text("SELECT swelling, warmth, erythema, pain, site, side "
                                    f"FROM clinical_exam WHERE {OURS}")).one()  # fmt: skip
        assert tuple(exam) == ("yes", "yes", "no", 6, "hip", "right")
        degrees = dict(
            conn.execute(
                sa.text(f"SELECT movement, degrees FROM range_of_motion WHERE {OURS}")
            ).all()
        )
    assert degrees == {"flexion": 100, "abduction": 30, "internal_rotation": 15}
    # the next form for that joint shows what was last recorded beside each field
    again = clinician.get(URL, params=HIP).text
    assert "last: 100° on 30 Nov 2026" in again
    assert "last: yes on 30 Nov 2026" in again
    assert "last: 6 on 30 Nov 2026" in again
    # ... and the patient page says it in words
    patient = clinician.get(f"/patients/{MRN}").text
    assert "Swelling and warmth at the right hip on 30 Nov" in patient
    assert "Hip flexion 100°" in patient


@pytest.mark.parametrize(
    ("typed", "field", "says"),
    [
        ({"flexion": "201"}, "flexion", "Right hip flexion: degrees 201 is outside 0 to 200"),
        ({"pain": "11"}, "pain", "Pain score 11 is outside 0 to 10"),
        ({"twirl": "10"}, "twirl", "Right hip twirl: movement 'twirl' is not one of"),
    ],
)
def test_a_bad_value_is_refused_beside_its_field_and_nothing_is_written(
    clinician: TestClient, clinic: Engine, typed: dict[str, str], field: str, says: str
) -> None:
    rows = _rows(clinician.get(URL, params=HIP).text)
    data = {"swelling": "yes", f"measurements[{rows['extension']}].degrees": "10"}
    for name, value in typed.items():
        if name == "pain":
            data["pain"] = value
        elif name in rows:
            data[f"measurements[{rows[name]}].degrees"] = value
        else:  # a movement the form never lists, as a hand-made request sends it
            data["measurements[9].movement"] = name
            data["measurements[9].degrees"] = value
    response = _post(clinician, data)
    html = response.text  # type: ignore[attr-defined]
    assert response.status_code == 422, html[-3000:]  # type: ignore[attr-defined]
    assert says in unescape(html)
    assert "aria-invalid" in html
    if field in rows or field == "twirl":
        index = rows.get(field, 9)
        marked = re.search(rf'id="r-{index}-degrees"[^>]*aria-invalid="true"', html)
        assert marked, html[-3000:]
    else:
        assert re.search(r'id="f-pain"[^>]*aria-invalid="true"', html)
    assert _count(clinic, "clinical_exam") == 0
    assert _count(clinic, "range_of_motion") == 0


def test_the_form_sent_with_its_defaults_says_there_is_nothing_to_save(
    clinician: TestClient, clinic: Engine
) -> None:
    """Date today and nothing else: a clear message beside the first sign, not a
    refusal of a value the form put there itself."""
    response = _post(clinician, {})
    html = response.text  # type: ignore[attr-defined]
    assert response.status_code == 422
    assert "Nothing to save" in html and "aria-invalid" in html
    assert "is outside" not in html and "not one of" not in html
    assert _count(clinic, "clinical_exam") == 0


def test_the_form_without_a_joint_asks_for_the_site_and_side(
    clinician: TestClient, clinic: Engine
) -> None:
    page = clinician.get(URL)
    assert page.status_code == 200
    assert len(_rows(page.text)) == 10  # every movement until the joint is known
    data = {"csrf_token": csrf_in(page.text), "date": DAY.isoformat(), "swelling": "yes"}
    response = clinician.post(URL, data={**data, "save": "1"})
    assert response.status_code == 422
    assert re.search(r'id="f-site"[^>]*aria-invalid="true"', response.text)
    listed = clinician.post(URL, data={**data, "site": "elbow", "side": "left", "more_rows": "0"})
    assert listed.status_code == 200
    assert list(_rows(listed.text)) == ["flexion", "extension", "pronation", "supination"]
    assert _count(clinic, "clinical_exam") == 0


def test_the_imaging_form_offers_the_indication_in_words(
    clinician: TestClient, clinic: Engine
) -> None:
    page = clinician.get(f"/patients/{MRN}/imaging/new")
    assert 'name="indication"' in page.text
    assert "dvt_query<" not in page.text
    data = {
        "csrf_token": csrf_in(page.text), "date": DAY.isoformat(), "modality": "ultrasound",
        "indication": "dvt_query", "findings[0].site": "hip", "findings[0].side": "left",
        "findings[0].ho": "absent", "save": "1",
    }  # fmt: skip
    response = clinician.post(f"/patients/{MRN}/imaging/new", data=data)
    assert response.status_code == 303, response.text[-3000:]
    with clinic.connect() as conn:
        said = conn.execute(
            sa.text("SELECT indication FROM imaging_study WHERE date = :d"), {"d": DAY}
        ).scalar_one()
    assert said == "dvt_query"


def test_the_patient_page_says_how_much_range_a_joint_lost_since_it_was_first_measured(
    clinician: TestClient, clinic: Engine
) -> None:
    from tracker.services.records import add_range_of_motion

    for day, degrees in (("2026-02-01", "100"), ("2026-03-01", "70")):
        add_range_of_motion(
            engine=clinic, actor="t", mrn=MRN, date=day, site="hip", side="right",
            measurements=[{"movement": "flexion", "degrees": degrees}],
        )  # fmt: skip
    patient = clinician.get(f"/patients/{MRN}").text
    assert "Hip flexion 100° → 70° (−30%) since 1 Feb 2026" in patient
    form = clinician.get(URL, params=HIP).text
    assert "last: 70° on 1 Mar 2026" in form
    # a measurement on a later day is saved beside the earlier ones
    rows = _rows(form)
    response = _post(clinician, {f"measurements[{rows['flexion']}].degrees": "75"})
    assert response.status_code == 303  # type: ignore[attr-defined]
