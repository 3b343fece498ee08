"""The audit trail as a paged service list (issue 14): newest first by (at, id),
filtered by clinic day, action, user and MRN, each event's record and changes told
in words."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.records.record_support import TODAY, add_patient
from tracker.errors import TrackerError
from tracker.services import records
from tracker.services.audit import (
    AuditFilters,
    Change,
    audit_event,
    audit_page,
    changes_of,
    record_words,
)
from tracker.store.models import Reminder, table_of

LONDON = ZoneInfo("Europe/London")


def add_events(engine: Engine, moments: list[dt.datetime], **values: object) -> None:
    """Audit rows at exactly these moments (several share one, as busy seconds do)."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(audit_event),
            [{"at": at, "action": "view", "entity": "patient", **values} for at in moments],
        )


def event_ids(engine: Engine) -> list[int]:
    """Every event, newest first, as the page must order them."""
    a = audit_event.c
    with engine.connect() as conn:
        return list(conn.execute(sa.select(a.id).order_by(a.at.desc(), a.id.desc())).scalars())


def walk(engine: Engine, filters: AuditFilters, size: int) -> list[list[int]]:
    pages, after = [], None
    while True:
        page = audit_page(engine=engine, filters=filters, zone=LONDON, after=after, size=size)
        pages.append([entry.id for entry in page.entries])
        if page.next_after is None:
            return pages
        after = page.next_after


def test_paging_through_events_of_the_same_instant_loses_and_repeats_none(
    engine: Engine,
) -> None:
    base = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
    moments = [base + dt.timedelta(microseconds=n % 3) for n in range(37)]
    moments += [base + dt.timedelta(hours=1)] * 12
    add_events(engine, moments, username="ana", mrn="A001")
    pages = walk(engine, AuditFilters(), size=10)
    assert [len(p) for p in pages] == [10, 10, 10, 10, 9]
    assert [i for p in pages for i in p] == event_ids(engine)


def test_days_are_the_clinics_from_its_midnight_to_its_midnight(engine: Engine) -> None:
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (summer time)
    late = dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.UTC)
    add_events(engine, [late - dt.timedelta(hours=1), late], mrn="A001")
    july = AuditFilters(since=dt.date(2026, 7, 1), until=dt.date(2026, 7, 1))
    (entry,) = audit_page(engine=engine, filters=july, zone=LONDON).entries
    assert entry.when == "2026-07-01 00:30"
    june = AuditFilters(until=dt.date(2026, 6, 30))
    (earlier,) = audit_page(engine=engine, filters=june, zone=LONDON).entries
    assert earlier.when == "2026-06-30 23:30"


def test_times_are_told_to_the_minute(engine: Engine) -> None:
    add_events(engine, [dt.datetime(2026, 1, 5, 8, 7, 59, 999999, tzinfo=dt.UTC)])
    (entry,) = audit_page(engine=engine, filters=AuditFilters(), zone=LONDON).entries
    assert entry.when == "2026-01-05 08:07"


def test_the_action_user_and_mrn_filters_each_narrow_the_page(engine: Engine) -> None:
    add_patient(engine)
    add_patient(engine, "B002")
    records.add_injury(
        engine=engine, actor="bob", mrn="B002", kind="burn", date="2025-01-01", today=TODAY
    )
    records.add_injury(
        engine=engine, actor="ana", mrn="A001", kind="burn", date="2025-01-02", today=TODAY
    )
    add_events(engine, [dt.datetime.now(dt.UTC)], username="ana", mrn="B002")

    def shown(**filters: object) -> list[tuple[str | None, str, str | None]]:
        page = audit_page(engine=engine, filters=AuditFilters(**filters), zone=LONDON)  # type: ignore[arg-type]
        return sorted((e.username, e.action, e.mrn) for e in page.entries)

    assert shown(action="create") == [("ana", "create", "A001"), ("bob", "create", "B002")]
    assert shown(username="ana") == [("ana", "create", "A001"), ("ana", "view", "B002")]
    assert shown(mrn="B002") == [("ana", "view", "B002"), ("bob", "create", "B002")]
    assert shown(action="create", username="ana", mrn="B002") == []


def test_a_correction_shows_only_the_fields_it_changed_old_to_new(engine: Engine) -> None:
    add_patient(engine)
    saved = records.add_lab(
        engine=engine, actor="ana", mrn="A001", date="2025-05-01", analyte="alp",
        value="100", unit="U/L", ref_high="130", today=TODAY,
    )  # fmt: skip
    records.correct_lab(
        engine=engine, actor="ana", record_id=saved.id, expected_version=1,
        changes={"value": "160"}, today=TODAY,
    )  # fmt: skip
    corrected, created = audit_page(engine=engine, filters=AuditFilters(), zone=LONDON).entries
    assert [c.text for c in corrected.changes] == ["value: 100 → 160"]
    assert corrected.record == f"lab result {saved.id}" and corrected.mrn == "A001"
    said = [c.text for c in created.changes]
    assert "value: 100" in said and "reference high: 130" in said
    assert not any("version" in line or "{" in line or "_" in line for line in said)


def test_a_void_says_why_and_a_finding_says_where(engine: Engine) -> None:
    add_patient(engine)
    saved = records.add_injury(
        engine=engine, actor="ana", mrn="A001", kind="spinal_cord_injury", date="2025-01-01",
        today=TODAY,
    )  # fmt: skip
    records.void_record(
        engine=engine, actor="ana", entity="injury", record_id=saved.id, expected_version=1,
        reason="entered on the wrong patient",
    )  # fmt: skip
    void, create = audit_page(engine=engine, filters=AuditFilters(), zone=LONDON).entries
    assert [c.text for c in void.changes] == ["reason: entered on the wrong patient"]
    assert "kind: spinal cord injury" in [c.text for c in create.changes]


def test_a_study_correction_names_the_finding_it_changed() -> None:
    finding = {"id": 7, "study_id": 3, "site": "hip", "side": "left", "ho": "present"}
    before = {"id": 3, "version": 1, "date": "2025-01-01", "findings": [{**finding, "brooker": 2}]}
    after = {
        "id": 3,
        "version": 2,
        "date": "2025-01-01",
        "findings": [
            {**finding, "brooker": 3},
            {"id": 8, "study_id": 3, "site": "knee", "side": "right", "ho": "absent"},
        ],
    }
    assert [c.text for c in changes_of("correct", before, after)] == [
        "hip left Brooker grade: 2 → 3",
        "finding added: knee right: HO absent",
    ]


def test_values_are_words_and_absent_values_a_dash() -> None:
    lines = changes_of(
        "correct",
        {"team": "spinal_unit", "active": True, "notes": None},
        {"team": "burns_unit", "active": False, "notes": "seen in clinic"},
    )
    assert Change("active", "yes", "no") in lines
    assert Change("notes", "—", "seen in clinic") in lines
    team = next(c for c in lines if c.field == "team")
    assert "_" not in team.text


def test_records_are_named_in_words() -> None:
    assert record_words("imaging_study", 238) == "imaging study 238"
    assert record_words("patient", None) == "patient"
    assert record_words(None, None) == ""


def test_an_acknowledged_reminder_names_its_patient(engine: Engine) -> None:
    add_patient(engine)
    with engine.begin() as conn:
        pid = conn.execute(sa.text("SELECT id FROM patient WHERE mrn = 'A001'")).scalar_one()
        rid = conn.execute(
            sa.insert(table_of(Reminder))
            .values(patient_id=pid, rule="readiness_review", due=dt.date(2025, 6, 1))
            .values(status="due", attempts=0, late=False, version=1)
            .returning(table_of(Reminder).c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(audit_event).values(
                at=dt.datetime.now(dt.UTC), action="acknowledge", entity="reminder", entity_id=rid
            )
        )
    (entry,) = audit_page(engine=engine, filters=AuditFilters(), zone=LONDON).entries
    assert entry.mrn == "A001" and entry.record == f"reminder {rid}"


def test_a_damaged_page_link_is_refused_in_a_sentence(engine: Engine) -> None:
    with pytest.raises(TrackerError, match="page link is damaged"):
        audit_page(engine=engine, filters=AuditFilters(), zone=LONDON, after="zz")


def test_a_page_reads_at_most_one_more_event_than_it_shows(engine: Engine) -> None:
    add_events(engine, [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 30, mrn="A001")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    audit_page(engine=engine, filters=AuditFilters(), zone=LONDON, size=5)
    events = [s for s in statements if "FROM audit_event" in s]
    assert len(events) == 1 and "LIMIT" in events[0].upper()
    assert len(statements) <= 3  # the events, the patients' names, reminders' patients


def test_a_user_account_is_named_by_its_username_not_its_row_number(engine: Engine) -> None:
    from tracker.services.users import add_user, set_role

    add_user(
        engine=engine, username="nurse", role="clinician", password="a long password", actor="boss"
    )
    set_role(engine=engine, username="nurse", role="surgeon", actor="boss")
    page = audit_page(engine=engine, filters=AuditFilters(), zone=LONDON, after=None, size=50)
    about_nurse = [e.record for e in page.entries if e.username == "boss"]
    assert about_nurse == ["user nurse", "user nurse"]
