"""The closed loop (issue 17): a monitoring radiograph that arrives in the PACS is on
the worklist in words, and recording its finding closes the pending site and the
reminder it satisfies. The admin sees the feed's health on a page and in /healthz."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from tests.orthanc import OrthancServer, make_study
from tests.reminders.reminder_support import add_patient, lite, reminders  # noqa: F401
from tests.web.web_support import add_role_users, api_token, make_client, sign_in
from tracker import labels
from tracker.cli import run
from tracker.pacs import PacsFault, PacsSettings, poll
from tracker.protocol import Protocol
from tracker.reminders.jobs import add_pacs_job
from tracker.reminders.planner import plan
from tracker.services.interop import complete_pending_site, pending_sites

PROTOCOL = Protocol()
TODAY = dt.date.today()  # the services refuse record dates after the server's today
FOUND = TODAY - dt.timedelta(days=50)  # the right hip's first evidence (ultrasound)
MONITOR_DUE = FOUND + dt.timedelta(days=42)


def monitoring(engine: Engine) -> dict[dt.date, str]:
    rows = reminders(engine)
    return {r["due"]: r["status"] for r in rows if r["rule"] == "monitoring_radiograph"}


@pytest.fixture
def clinic(lite: Engine) -> Engine:  # noqa: F811
    """An early right hip found on ultrasound 50 days ago: its monitoring radiograph
    is 8 days overdue."""
    add_role_users(lite)
    injured = (TODAY - dt.timedelta(days=100)).isoformat()
    add_patient(
        lite, "E1", injuries=[{"kind": "spinal_cord_injury", "d": injured}],
        findings=[{"date": FOUND.isoformat(), "modality": "ultrasound", "ho": "present"}],
    )  # fmt: skip
    plan(engine=lite, as_of=TODAY, protocol=PROTOCOL)
    assert monitoring(lite) == {MONITOR_DUE: "due"}
    return lite


def settings_for(pacs: OrthancServer) -> PacsSettings:
    settings = PacsSettings.from_environ({"HO_TRACKER_PACS_URL": pacs.dicomweb_url})
    assert settings is not None
    return settings


def test_a_radiograph_from_the_pacs_is_worded_on_the_worklist_and_its_finding_closes_the_reminder(
    clinic: Engine,
    orthanc: OrthancServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orthanc.load(make_study("E1", TODAY, "CR", "HIP", "R", accession="ACC-MON"))
    report = poll(engine=clinic, settings=settings_for(orthanc), since=FOUND, today=TODAY)
    assert report.created == 1 and report.sites_added == 1

    [waiting] = pending_sites(engine=clinic, mrn="E1")
    said = f"Radiograph of the right hip arrived on {TODAY.day} {TODAY:%b}: record the finding"
    with make_client(clinic) as client:
        sign_in(client, "clinician")
        page = client.get("/worklist")
        assert page.status_code == 200 and said in page.text
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    assert run(["--database-url", str(clinic.url), "reminders", "list"]) == 0
    assert f"E1: {said} (`ho-tracker dicom complete {waiting.id}`)." in capsys.readouterr().out

    done = complete_pending_site(
        engine=clinic, actor="clinician", pending_id=waiting.id,
        finding={"ho": "present", "calcification": "peripheral"}, protocol=PROTOCOL,
    )  # fmt: skip

    assert done.status == "completed"
    assert pending_sites(engine=clinic, mrn="E1") == []
    assert monitoring(clinic)[MONITOR_DUE] == "satisfied"
    with make_client(clinic) as client:
        sign_in(client, "clinician")
        assert said not in client.get("/worklist").text


def test_the_worklist_words_say_the_site_side_and_day_of_every_pending_site() -> None:
    day = dt.date(2026, 3, 3)
    assert (
        labels.arrived("radiograph", "hip", "right", day, today=dt.date(2026, 4, 1))
        == "radiograph of the right hip arrived on 3 Mar: record the finding"
    )
    assert labels.arrived("ct", "pelvis", "midline", day, today=dt.date(2027, 1, 1)) == (
        "CT of the pelvis arrived on 3 Mar 2026: record the finding"
    )
    assert labels.arrived("mri", None, "left", day, body_part="CHEST", today=day) == (
        "MRI of body part chest (left) arrived on 3 Mar: record the finding"
    )


def test_the_admin_sees_the_last_success_and_the_last_error_on_a_page_and_in_healthz(
    clinic: Engine, orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(orthanc)
    monkeypatch.setenv("HO_TRACKER_PACS_URL", orthanc.dicomweb_url)
    poll(engine=clinic, settings=settings, since=FOUND, today=TODAY)
    orthanc.stop()
    with pytest.raises(PacsFault):
        poll(engine=clinic, settings=settings, since=FOUND, today=TODAY)
    error = f"PACS not reachable at {orthanc.dicomweb_url}"

    with make_client(clinic) as client:
        assert client.get("/healthz").json() == {"status": "ok"}  # a probe: no detail
        token = api_token(clinic, "admin")
        detail = client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).json()
        assert detail["detail"]["pacs"]["last_error"] == error
        assert detail["detail"]["pacs"]["last_success_at"] is not None
        clinician = api_token(clinic, "clinician")
        said = client.get("/healthz", headers={"Authorization": f"Bearer {clinician}"}).json()
        assert said == {"status": "ok"}

        sign_in(client, "admin")
        page = client.get("/admin/pacs")
        assert page.status_code == 200
        assert error in page.text and "none yet" not in page.text
        sign_in(client, "clinician")
        assert client.get("/admin/pacs").status_code == 403


def test_the_scheduler_polls_the_pacs_only_when_one_is_configured(clinic: Engine) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from tracker.config import Settings
    from tracker.reminders.jobs import ReminderJobs

    jobs = ReminderJobs(engine=clinic, protocol=PROTOCOL, settings=Settings())
    scheduler = BackgroundScheduler()
    first = dt.datetime.now(dt.UTC)
    assert not add_pacs_job(scheduler, jobs, first=first, environ={})
    assert scheduler.get_job("pacs.poll") is None
    environ = {"HO_TRACKER_PACS_URL": "http://127.0.0.1:9/dicom-web"}
    assert add_pacs_job(scheduler, jobs, first=first, environ=environ)
    assert scheduler.get_job("pacs.poll") is not None
