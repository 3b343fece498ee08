"""Record forms a clinician can fill fast (issue 14): each form opens with the
patient's banner, today's date and its first field focused, and saves with its own
defaults plus what a person types; a finding's feature its modality cannot show is
refused beside it; a bone scan is one form whose study, findings and ratios are
saved together or not at all; "Record it" names the reminder it closes, fills in its
site, side and due date, and goes back to the worklist it came from."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import count_rows
from tests.web.web_support import DEMO, add_role_users, make_client_on, sign_in
from tracker.interchange.csv_import import import_folder
from tracker.protocol import Protocol
from tracker.reminders.planner import plan
from tracker.store import database
from tracker.web.views import satisfying_link

DAY = dt.date(2026, 11, 30)  # the clinic's today in these tests: after the demo's records
WORKLIST = "/worklist?team=spinal_unit&window=overdue"


class FormFields(HTMLParser):
    """What a browser would send for the page's record form: every named, enabled
    input, select and textarea with the value it shows (a select's selected option,
    else its first), the hidden fields, and which input has autofocus."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.focused: list[str] = []
        self.order: list[str] = []  # the inputs a person sees, in page order
        self._forms = 0  # record forms seen
        self._inside = False
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._forms += 1
            self._inside = self._forms == 1 and "record" in a.get("class", "").split()
            if not self._inside:
                self._forms -= 1
        if not self._inside or "disabled" in a:
            return
        name = a.get("name", "")
        if tag in ("input", "select", "textarea") and name:
            if a.get("type") not in ("hidden", "submit", "button"):
                self.order.append(name)
            if "autofocus" in a:
                self.focused.append(name)
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            self.values[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
                self.values.setdefault(self._select, value)
            if "selected" in a:
                self.values[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data


def fields_of(html: str) -> FormFields:
    parsed = FormFields()
    parsed.feed(html)
    return parsed


def submit(client: TestClient, url: str, typed: dict[str, str], **get: Any) -> Any:
    """Open the form at `url`, keep every default it shows, type `typed` over them and
    press Save."""
    page = client.get(url, **get)
    assert page.status_code == 200, page.text[-2000:]
    values = {**fields_of(page.text).values, **typed, "save": "1"}
    return client.post(url, data=values)


def notices(client: TestClient, location: str) -> list[str]:
    page = client.get(location)
    assert page.status_code == 200
    return [re.sub(r"\s+", " ", n) for n in re.findall(r'class="notice"[^>]*>(.*?)</p>', page.text)]


def reminder_row(engine: Engine, mrn: str, rule: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT r.id, p.mrn, r.rule, r.site, r.side, r.due, r.status FROM reminder r"
                    " JOIN patient p ON p.id = r.patient_id WHERE p.mrn = :mrn AND r.rule = :rule"
                    " AND r.status IN ('pending', 'due', 'sent') ORDER BY r.due"
                ),
                {"mrn": mrn, "rule": rule},
            )
            .mappings()
            .first()
        )
    assert row is not None, f"{mrn} has no open {rule} reminder"
    found = dict(row)
    found["due"] = dt.date.fromisoformat(str(found["due"]))
    return found


def status_of(engine: Engine, reminder_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT status FROM reminder WHERE id = :id"), {"id": reminder_id}
            ).scalar_one()
        )


def _demo(engine: Engine) -> Engine:
    import_folder(engine, DEMO)
    add_role_users(engine)
    plan(engine=engine, as_of=DAY, protocol=Protocol())
    return engine


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[Engine]:
    """The demo cohort on SQLite, its reminders planned as of DAY."""
    engine = database.make_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    database.upgrade(engine)
    yield _demo(engine)
    engine.dispose()


@pytest.fixture
def clinician(clinic: Engine) -> Iterator[TestClient]:
    with make_client_on(clinic, DAY) as client:
        sign_in(client, "clinician")
        yield client


# What a person types into each new form beyond its defaults.
TYPED: dict[str, dict[str, str]] = {
    "injuries": {"kind": "burn"},
    "imaging": {"modality": "radiograph", "findings[0].site": "knee",
                "findings[0].side": "left", "findings[0].ho": "present"},
    "bone-scans": {"sites[0].site": "knee", "sites[0].side": "right", "sites[0].ho": "present",
                   "sites[0].delayed_ratio": "2.5"},
    "courses": {"agent": "indomethacin", "intent": "prophylaxis"},
    "procedures": {"kind": "manipulation", "site": "elbow", "side": "left"},
    "labs": {"analyte": "alp", "value": "90", "unit": "U/L"},
}  # fmt: skip
STORED_ON = {
    "injuries": ("injury", "date"),
    "imaging": ("imaging_study", "date"),
    "bone-scans": ("imaging_study", "date"),
    "courses": ("treatment_course", "start_date"),
    "procedures": ("procedure", "date"),
    "labs": ("lab_result", "date"),
}


@pytest.mark.parametrize("slug", sorted(TYPED))
def test_each_new_record_form_saves_with_its_own_defaults_and_the_values_a_clinician_types(
    clinician: TestClient, clinic: Engine, slug: str
) -> None:
    url = f"/patients/H-NONE/{slug}/new"
    shown = fields_of(clinician.get(url).text)
    date_field = STORED_ON[slug][1]
    assert shown.values[date_field] == DAY.isoformat()  # the date is today's already
    before = count_rows(clinic)
    response = submit(clinician, url, TYPED[slug])
    assert response.status_code == 303, response.text[-3000:]
    assert "done=" not in response.headers["location"]
    assert response.headers["location"] == "/patients/H-NONE"
    table, column = STORED_ON[slug]
    assert count_rows(clinic)[table] == before[table] + 1
    with clinic.connect() as conn:
        latest = conn.execute(
            sa.text(f"SELECT {column} FROM {table} ORDER BY id DESC LIMIT 1")  # noqa: S608
        ).scalar_one()
    assert str(latest)[:10] == DAY.isoformat()
    said = notices(clinician, response.headers["location"])
    assert len(said) == 1 and "saved for FLETCHER, Daniel (H-NONE)" in said[0], said
    assert "30 Nov 2026" in said[0]


def test_stopping_a_course_defaults_its_end_to_today_and_shows_whose_course_it_is(
    clinician: TestClient, clinic: Engine
) -> None:
    with clinic.connect() as conn:
        course_id, mrn = conn.execute(
            sa.text(
                "SELECT c.id, p.mrn FROM treatment_course c JOIN patient p ON p.id = c.patient_id"
                " WHERE c.end_date IS NULL AND c.voided_at IS NULL ORDER BY c.id LIMIT 1"
            )
        ).one()
    url = f"/patients/{mrn}/courses/{course_id}/stop"
    page = clinician.get(url)
    assert 'class="patient-banner"' in page.text and f'data-mrn="{mrn}"' in page.text
    shown = fields_of(page.text)
    assert shown.values["end_date"] == DAY.isoformat()
    assert shown.focused == ["end_date"]
    refused = clinician.post(url, data=shown.values)  # no reason given: marked, not saved
    assert refused.status_code == 422
    assert re.search(r'id="f-reason"[^>]*aria-invalid="true"', refused.text)
    response = submit(clinician, url, {"reason": "upper GI bleed on indomethacin"})
    assert response.status_code == 303, response.text[-2000:]
    with clinic.connect() as conn:
        ended = conn.execute(
            sa.text("SELECT end_date FROM treatment_course WHERE id = :id"), {"id": course_id}
        ).scalar_one()
    assert str(ended)[:10] == DAY.isoformat()
    assert any("Course stopped" in n for n in notices(clinician, response.headers["location"]))


FORM_URLS = [f"/patients/H-MINERAL/{slug}/new" for slug in sorted(TYPED)]


@pytest.mark.parametrize("url", FORM_URLS)
def test_every_record_form_opens_with_the_patient_banner_and_its_first_field_focused(
    clinician: TestClient, url: str
) -> None:
    page = clinician.get(url)
    assert page.status_code == 200
    banner = re.search(r'<section class="patient-banner".*?</section>', page.text, re.S)
    assert banner, "no patient banner"
    text = re.sub(r"<[^>]+>", " ", banner.group(0))
    text = re.sub(r"\s+", " ", text)
    # H-MINERAL: Erik Lindqvist, male, born 1985-11-20, spinal unit: 41 on DAY
    for said in ("LINDQVIST, Erik", "H-MINERAL", "20 Nov 1985", "41 years", "male", "spinal unit"):
        assert said in text, (said, text)
    shown = fields_of(page.text)
    assert shown.focused == shown.order[:1]  # the form's first field, and only that one


def test_a_correction_form_carries_the_banner_too(clinician: TestClient, clinic: Engine) -> None:
    with clinic.connect() as conn:
        lab_id = conn.execute(
            sa.text(
                "SELECT l.id FROM lab_result l JOIN patient p ON p.id = l.patient_id"
                " WHERE p.mrn = 'H-MINERAL' ORDER BY l.id LIMIT 1"
            )
        ).scalar_one()
    page = clinician.get(f"/patients/H-MINERAL/labs/{lab_id}/edit")
    assert page.status_code == 200
    assert 'class="patient-banner"' in page.text and "LINDQVIST, Erik" in page.text


def test_a_brooker_grade_on_an_ultrasound_is_refused_beside_the_grade_and_nothing_is_saved(
    clinician: TestClient, clinic: Engine
) -> None:
    url = "/patients/H-NONE/imaging/new"
    before = count_rows(clinic)
    response = submit(
        clinician, url,
        {"modality": "ultrasound", "findings[0].site": "hip", "findings[0].side": "left",
         "findings[0].ho": "present", "findings[0].brooker": "2",
         "findings[0].vascularity": "increased"},
    )  # fmt: skip
    assert response.status_code == 422
    assert count_rows(clinic) == before
    brooker = re.search(r'<select id="r-findings-0-brooker"[^>]*>', response.text)
    assert brooker and 'aria-invalid="true"' in brooker.group(0)
    said = re.search(r'id="r-findings-0-brooker-err">([^<]*)<', response.text)
    assert said and "does not apply to an ultrasound" in said.group(1)
    # the vascularity an ultrasound does show was not refused
    assert 'id="r-findings-0-vascularity-err"' not in response.text


def test_uptake_is_refused_on_a_radiograph_and_accepted_on_a_bone_scan(
    clinician: TestClient, clinic: Engine
) -> None:
    url = "/patients/H-NONE/imaging/new"
    finding = {"findings[0].site": "hip", "findings[0].side": "right",
               "findings[0].ho": "present", "findings[0].uptake": "increased"}  # fmt: skip
    refused = submit(clinician, url, {"modality": "radiograph", **finding})
    assert refused.status_code == 422
    assert re.search(
        r'id="r-findings-0-uptake-err">[^<]*does not apply to a radiograph', refused.text
    )
    saved = submit(clinician, url, {"modality": "bone_scan", **finding})
    assert saved.status_code == 303, saved.text[-2000:]


def test_the_imaging_form_marks_each_feature_with_the_modalities_that_show_it(
    clinician: TestClient,
) -> None:
    page = clinician.get("/patients/H-NONE/imaging/new").text
    marked = re.findall(r'<p data-modalities="([^"]+)"><label for="r-findings-0-(\w+)"', page)
    by_field = {name: set(modalities.split()) for modalities, name in marked}
    assert by_field["brooker"] == {"radiograph", "ct"}
    assert by_field["della_valle"] == {"radiograph", "ct"}
    assert by_field["uptake"] == {"bone_scan", "spect", "pet"}
    assert by_field["vascularity"] == {"ultrasound"}
    assert "ultrasound" not in by_field["cortex"]
    # the site, side and HO apply to every study, so nothing hides them
    assert not {"site", "side", "ho"} & set(by_field)
    assert '<script src="/static/record_form.js"' in page
    assert clinician.get("/static/record_form.js").status_code == 200


# --- a bone scan in one form -----------------------------------------------------------


def _stored_scan(engine: Engine, mrn: str, day: str) -> tuple[list[Any], list[Any]]:
    with engine.connect() as conn:
        findings = conn.execute(
            sa.text(
                "SELECT s.modality, f.site, f.side, f.ho, f.uptake FROM site_finding f"
                " JOIN imaging_study s ON s.id = f.study_id JOIN patient p ON p.id = s.patient_id"
                " WHERE p.mrn = :mrn AND s.date = :day AND s.modality = 'bone_scan'"
                " ORDER BY f.site, f.side"
            ),
            {"mrn": mrn, "day": day},
        ).all()
        ratios = conn.execute(
            sa.text(
                "SELECT m.site, m.side, m.phase, m.ratio, m.reference_region"
                " FROM bone_scan_measurement m JOIN patient p ON p.id = m.patient_id"
                " WHERE p.mrn = :mrn AND m.date = :day ORDER BY m.site, m.side, m.phase"
            ),
            {"mrn": mrn, "day": day},
        ).all()
    return list(findings), list(ratios)


def test_a_bone_scan_is_one_form_its_study_findings_and_ratios_saved_together(
    demo_engine: Engine,
) -> None:
    """SQLite and PostgreSQL: two sites, three phases at one, counts at the other."""
    plan(engine=demo_engine, as_of=DAY, protocol=Protocol())
    with make_client_on(demo_engine, DAY) as client:
        sign_in(client, "clinician")
        response = submit(
            client, "/patients/H-NONE/bone-scans/new",
            {"date": "2026-11-20",
             "sites[0].site": "hip", "sites[0].side": "left", "sites[0].ho": "present",
             "sites[0].uptake": "increased", "sites[0].reference_region": "contralateral femur",
             "sites[0].flow_ratio": "2.4", "sites[0].blood_pool_ratio": "2.1",
             "sites[0].delayed_ratio": "4.5",
             "sites[1].site": "hip", "sites[1].side": "right", "sites[1].ho": "absent",
             "sites[1].delayed_lesion_counts": "1100", "sites[1].delayed_reference_counts": "1000"},
        )  # fmt: skip
        assert response.status_code == 303, response.text[-3000:]
        said = notices(client, response.headers["location"])
        assert said and "Bone scan saved" in said[0] and "left hip, right hip" in said[0]
    findings, ratios = _stored_scan(demo_engine, "H-NONE", "2026-11-20")
    assert [tuple(f) for f in findings] == [
        ("bone_scan", "hip", "left", "present", "increased"),
        ("bone_scan", "hip", "right", "absent", None),
    ]
    assert [(r.side, r.phase, round(r.ratio, 3), r.reference_region) for r in ratios] == [
        ("left", "blood_pool", 2.1, "contralateral femur"),
        ("left", "delayed", 4.5, "contralateral femur"),
        ("left", "flow", 2.4, "contralateral femur"),
        ("right", "delayed", 1.1, None),  # computed from the two counts
    ]


def test_a_bone_scan_with_a_bad_ratio_saves_nothing_and_marks_every_problem(
    clinician: TestClient, clinic: Engine
) -> None:
    before = count_rows(clinic)
    response = submit(
        clinician, "/patients/H-NONE/bone-scans/new",
        {"sites[0].site": "knee", "sites[0].side": "left", "sites[0].delayed_ratio": "3.1",
         "sites[1].site": "knee", "sites[1].side": "right", "sites[1].ho": "absent",
         "sites[1].delayed_ratio": "0"},
    )  # fmt: skip
    assert response.status_code == 422
    assert count_rows(clinic) == before
    for marked in ("r-sites-0-ho", "r-sites-1-delayed_ratio"):
        assert re.search(rf'id="{marked}"[^>]*aria-invalid="true"', response.text), marked
    assert 'value="3.1"' in response.text  # what was typed is still there
    assert "Fix the 2 fields marked below" in response.text


def test_a_bone_scan_refused_after_its_study_was_written_leaves_no_study_behind(
    demo_engine: Engine,
) -> None:
    """SQLite and PostgreSQL: H-EARLY's 2026-10-08 delayed ratio 4.2 at the right hip
    was imported before; the study and its findings are written first in the
    transaction, then the ratio is refused as stored already: all of it rolls back."""
    before = count_rows(demo_engine)
    with make_client_on(demo_engine, DAY) as client:
        sign_in(client, "clinician")
        response = submit(
            client, "/patients/H-EARLY/bone-scans/new",
            {"date": "2026-10-08", "sites[0].site": "hip", "sites[0].side": "right",
             "sites[0].ho": "present", "sites[0].delayed_ratio": "4.2"},
        )  # fmt: skip
    assert response.status_code == 422, response.text[-2000:]
    assert re.search(r'id="r-sites-0-delayed_ratio"[^>]*aria-invalid="true"', response.text)
    assert count_rows(demo_engine) == before


# --- "Record it" from a reminder ------------------------------------------------------


def test_record_it_names_the_reminder_prefills_site_side_and_due_date_and_returns_to_the_worklist(
    clinician: TestClient, clinic: Engine
) -> None:
    reminder = reminder_row(clinic, "H-MATURE", "maturity_bone_scan")
    assert reminder["due"] <= DAY
    link = satisfying_link(reminder, back=WORKLIST)
    assert link is not None
    query = parse_qs(urlsplit(link).query)
    assert query["reminder"] == [str(reminder["id"])] and query["next"] == [WORKLIST]
    page = clinician.get(link)
    assert page.status_code == 200
    due = reminder["due"]
    closes = f"Closes:</strong> bone scan for maturity at {reminder['side']} {reminder['site']}, "
    assert closes + f"due {due.day} {due:%b %Y}" in page.text
    shown = fields_of(page.text)
    assert shown.values["sites[0].site"] == reminder["site"]
    assert shown.values["sites[0].side"] == reminder["side"]
    assert shown.values["date"] == due.isoformat()  # the due date, not today
    assert shown.values["next"] == WORKLIST
    values = {**shown.values, "sites[0].ho": "present", "sites[0].delayed_ratio": "1.9",
              "save": "1"}  # fmt: skip
    response = clinician.post(link, data=values)
    assert response.status_code == 303, response.text[-3000:]
    assert response.headers["location"] == WORKLIST
    assert status_of(clinic, reminder["id"]) == "satisfied"
    said = notices(clinician, response.headers["location"])
    assert said and "Bone scan saved for" in said[0] and "Reminder closed: bone scan for" in said[0]


def test_record_it_for_a_radiograph_fills_in_the_modality_and_the_site(
    clinician: TestClient, clinic: Engine
) -> None:
    reminder = reminder_row(clinic, "H-MINERAL", "monitoring_radiograph")
    link = satisfying_link(reminder)
    assert link is not None and "next=" not in link
    shown = fields_of(clinician.get(link).text)
    assert shown.values["modality"] == "radiograph"
    assert (shown.values["findings[0].site"], shown.values["findings[0].side"]) == ("hip", "left")
    assert shown.values["date"] == min(reminder["due"], DAY).isoformat()
    response = submit(clinician, link, {"findings[0].ho": "present",
                                        "findings[0].calcification": "zonal"})  # fmt: skip
    assert response.status_code == 303, response.text[-3000:]
    assert response.headers["location"] == "/patients/H-MINERAL"  # no `next`: the patient
    assert status_of(clinic, reminder["id"]) == "satisfied"


def test_a_reminder_a_record_does_not_satisfy_is_said_to_be_still_open(
    clinician: TestClient, clinic: Engine
) -> None:
    reminder = reminder_row(clinic, "H-MINERAL", "monitoring_radiograph")
    link = satisfying_link(reminder, back=WORKLIST)
    assert link is not None
    # the clinician changes the site: a knee film does not close the hip's reminder
    response = submit(clinician, link, {"findings[0].site": "knee", "findings[0].ho": "absent"})
    assert response.status_code == 303, response.text[-3000:]
    assert status_of(clinic, reminder["id"]) != "satisfied"
    said = notices(clinician, response.headers["location"])
    assert said and "is still open" in said[0]


def test_a_form_never_names_or_closes_another_patients_reminder(
    clinician: TestClient, clinic: Engine
) -> None:
    other = reminder_row(clinic, "H-MATURE", "maturity_bone_scan")
    url = f"/patients/H-NONE/bone-scans/new?reminder={other['id']}"
    assert clinician.get(url).status_code == 404
    before = count_rows(clinic)
    page = clinician.get("/patients/H-NONE/bone-scans/new")
    values = {**fields_of(page.text).values, **TYPED["bone-scans"], "save": "1",
              "reminder": str(other["id"])}  # fmt: skip
    assert clinician.post("/patients/H-NONE/bone-scans/new", data=values).status_code == 404
    assert count_rows(clinic) == before
    assert status_of(clinic, other["id"]) != "satisfied"


@pytest.mark.parametrize("elsewhere", ["https://evil.example/x", "//evil.example", "/\\evil"])
def test_after_saving_a_form_only_ever_goes_to_a_local_page(
    clinician: TestClient, elsewhere: str
) -> None:
    url = "/patients/H-NONE/labs/new"
    page = clinician.get(url)
    values = {**fields_of(page.text).values, **TYPED["labs"], "next": elsewhere, "save": "1"}
    response = clinician.post(url, data=values)
    assert response.status_code == 303
    assert response.headers["location"] == "/patients/H-NONE"


def test_a_hip_screen_from_its_reminder_offers_both_hips(clinic: Engine) -> None:
    """hip_ultrasound_screen reminders name no side: an ultrasound of both hips."""
    row = {"id": None, "mrn": "H-NONE", "rule": "hip_ultrasound_screen"}
    link = satisfying_link(row)
    assert link == "/patients/H-NONE/imaging/new?modality=ultrasound&site=hip"
    from sqlmodel import Session

    from tracker.store.models import Reminder

    with clinic.connect() as conn:
        patient_id = conn.execute(sa.text("SELECT id FROM patient WHERE mrn = 'H-NONE'")).scalar()
    with Session(clinic) as session:
        session.add(
            Reminder(patient_id=patient_id, rule="hip_ultrasound_screen",
                     due=DAY - dt.timedelta(days=2), status="due")
        )  # fmt: skip
        session.commit()
    reminder = reminder_row(clinic, "H-NONE", "hip_ultrasound_screen")
    link = satisfying_link(reminder)
    assert link is not None
    with make_client_on(clinic, DAY) as client:
        sign_in(client, "clinician")
        page = client.get(link)
        shown = fields_of(page.text)
        assert "Closes:</strong> hip ultrasound screen, due 28 Nov 2026" in page.text
    assert [shown.values[f"findings[{i}].{k}"] for i in (0, 1) for k in ("site", "side")] == [
        "hip", "left", "hip", "right",
    ]  # fmt: skip
    assert shown.values["modality"] == "ultrasound"
