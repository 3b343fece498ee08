"""The worklist service (issue 14): most overdue first, paged by (due, id) without
losing or repeating a reminder, filtered by team, rule, status, due window and the
viewer's own team; acknowledgement one at a time or several at once, all or none."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.services.worklist_support import TODAY, Ward, busy_ward
from tracker.errors import Conflict, NotFound, TrackerError, ValidationFailed
from tracker.services.worklist import (
    Cursor,
    DueWindow,
    WorklistFilters,
    acknowledge,
    acknowledge_many,
    every_row,
    patient_reminders,
    worklist,
    worklist_query,
)
from tracker.store.models import AuditEvent, table_of


@pytest.fixture
def ward(engine: Engine) -> Ward:
    return busy_ward(engine)


def ids(rows: list[dict]) -> list[int]:
    return [row["id"] for row in rows]


def walk_forward(engine: Engine, limit: int, **filters: object) -> list[list[int]]:
    pages, after = [], None
    while True:
        page = worklist(
            engine=engine, today=TODAY, filters=WorklistFilters(**filters), after=after,
            limit=limit,
        )  # fmt: skip
        pages.append(ids(page.rows))
        if page.next is None:
            return pages
        after = Cursor.parse(str(page.next))  # as a URL carries it


def test_most_overdue_come_first_then_the_soonest_due(ward: Ward) -> None:
    page = worklist(engine=ward.engine, today=TODAY)
    assert ids(page.rows) == ward.expected()[:50]
    dues = [row["due"] for row in page.rows]
    assert dues == sorted(dues) and dues[0] < TODAY < dues[-1]
    assert page.is_first and page.next is None  # fewer than 50 open here


def test_paging_loses_and_repeats_no_reminder_when_many_share_a_due_date(ward: Ward) -> None:
    pages = walk_forward(ward.engine, limit=5)
    assert all(len(p) == 5 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 5
    seen = [rid for page in pages for rid in page]
    assert seen == ward.expected()  # every open reminder once, in order
    tied = [r for r in ward.made if r["due"] == TODAY - dt.timedelta(days=5)]
    assert len(tied) == 12  # the ties span page boundaries at this page size


def test_previous_goes_back_one_page_and_the_first_page_has_no_way_back(ward: Ward) -> None:
    forward = walk_forward(ward.engine, limit=4)
    assert len(forward) >= 4
    after = None
    pages = []
    for _ in range(3):
        page = worklist(engine=ward.engine, today=TODAY, after=after, limit=4)
        pages.append(page)
        after = page.next
    assert pages[0].previous is None and pages[1].previous is not None
    back = worklist(
        engine=ward.engine, today=TODAY, before=Cursor.parse(str(pages[2].previous)), limit=4
    )
    assert ids(back.rows) == forward[1] and back.previous is not None
    start = worklist(
        engine=ward.engine, today=TODAY, before=Cursor.parse(str(pages[1].previous)), limit=4
    )
    assert ids(start.rows) == forward[0] and start.is_first


def test_going_back_past_the_start_shows_a_full_first_page(ward: Ward) -> None:
    expected = ward.expected()
    rows = worklist(engine=ward.engine, today=TODAY, limit=5).rows
    one_in = Cursor.of(rows[1])  # only one row lies before it
    back = worklist(engine=ward.engine, today=TODAY, before=one_in, limit=5)
    assert ids(back.rows) == expected[:5] and back.is_first


def test_a_page_left_empty_by_acknowledgements_still_offers_the_way_back(ward: Ward) -> None:
    expected = ward.expected()
    last = next(
        row for row in every_row(engine=ward.engine, today=TODAY) if row["id"] == expected[-1]
    )
    emptied = worklist(engine=ward.engine, today=TODAY, after=Cursor.of(last), limit=5)
    assert emptied.rows == [] and not emptied.is_first and emptied.next is None
    back = worklist(engine=ward.engine, today=TODAY, before=emptied.previous, limit=5)
    assert ids(back.rows) == expected[-5:]


def test_a_page_position_round_trips_through_a_url_and_a_made_up_one_is_refused() -> None:
    cursor = Cursor(dt.date(2026, 11, 3), 812)
    assert str(cursor) == "2026-11-03.812"
    assert Cursor.parse("2026-11-03.812") == cursor
    assert Cursor.parse("") is None and Cursor.parse(None) is None
    for bad in ("812", "2026-13-40.5", "2026-11-03", "2026-11-03.x", "'; drop table"):
        with pytest.raises(TrackerError, match="start again from the first page"):
            Cursor.parse(bad)


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({"team": "spinal_unit"}, lambda r: r["team"] == "spinal_unit"),
        ({"rule": "maturity_bone_scan"}, lambda r: r["rule"] == "maturity_bone_scan"),
        ({"status": "due"}, lambda r: r["status"] == "due"),
        ({"status": "sent"}, lambda r: r["status"] == "sent"),
        ({"status": "pending"}, lambda r: r["status"] == "pending"),
        ({"window": DueWindow.overdue}, lambda r: r["due"] < TODAY),
        ({"window": DueWindow.today}, lambda r: r["due"] == TODAY),
        (
            {"window": DueWindow.week},
            lambda r: TODAY <= r["due"] <= TODAY + dt.timedelta(days=6),
        ),
        (
            {"team": "ward_7", "window": DueWindow.overdue, "status": "due"},
            lambda r: r["team"] == "ward_7" and r["due"] < TODAY and r["status"] == "due",
        ),
    ],
    ids=["team", "rule", "due", "sent", "pending", "overdue", "today", "week", "combined"],
)
def test_each_filter_keeps_only_the_reminders_it_names(
    ward: Ward, filters: dict, keep: object
) -> None:
    expected = ward.expected(keep)
    assert expected, "the ward has reminders for this filter"
    assert [rid for page in walk_forward(ward.engine, 3, **filters) for rid in page] == expected


def test_the_week_window_is_today_and_the_six_days_after_it(ward: Ward) -> None:
    page = worklist(engine=ward.engine, today=TODAY, filters=WorklistFilters(window="week"))
    dues = {row["due"] for row in page.rows}
    assert TODAY + dt.timedelta(days=6) in dues and TODAY + dt.timedelta(days=7) not in dues


def test_my_team_shows_the_viewers_own_unit_whatever_team_is_chosen(ward: Ward) -> None:
    mine = WorklistFilters(team="ward_7", mine=True)
    page = worklist(engine=ward.engine, today=TODAY, filters=mine, my_team="spinal_unit")
    assert page.team == "spinal_unit" and page.note is None
    assert ids(page.rows) == ward.expected(lambda r: r["team"] == "spinal_unit")


def test_my_team_for_a_viewer_without_a_team_says_so_and_narrows_nothing(ward: Ward) -> None:
    page = worklist(engine=ward.engine, today=TODAY, filters=WorklistFilters(mine=True))
    assert page.note and "no team" in page.note
    assert ids(page.rows) == ward.expected()


def test_empty_form_values_mean_any_and_unknown_choices_are_refused_in_words() -> None:
    assert WorklistFilters.parse(team="", rule="", status="", window="", mine="") == (
        WorklistFilters()
    )
    parsed = WorklistFilters.parse(status="due", window="today", mine="1")
    assert parsed == WorklistFilters(status="due", window=DueWindow.today, mine=True)
    with pytest.raises(TrackerError, match="Reminder 'bone_scan' is not a reminder rule"):
        WorklistFilters.parse(rule="bone_scan")
    with pytest.raises(TrackerError, match="Status 'lapsed' is not a worklist status"):
        WorklistFilters.parse(status="lapsed")
    with pytest.raises(TrackerError, match="monitoring radiograph"):  # the choices in words
        WorklistFilters.parse(rule="x")


def test_rows_name_the_patient_beside_the_mrn_and_count_days_overdue(ward: Ward) -> None:
    first = worklist(engine=ward.engine, today=TODAY).rows[0]
    assert first["due"] == TODAY - dt.timedelta(days=30) and first["days_overdue"] == 30
    assert (first["mrn"], first["name"]) in {("H-0000", "DOE, Jane"), ("H-0001", "OKAFOR, Ada")}
    later = worklist(engine=ward.engine, today=TODAY, filters=WorklistFilters(status="pending"))
    assert {row["days_overdue"] for row in later.rows} == {0}


def test_closed_and_lapsed_reminders_stay_off_the_worklist_but_in_the_history(
    ward: Ward,
) -> None:
    listed = set(ids(list(every_row(engine=ward.engine, today=TODAY, page_size=7))))
    closed = {r["id"] for r in ward.made if r["status"] not in ("pending", "due", "sent")}
    assert len(closed) == 4 and listed.isdisjoint(closed)
    assert listed == set(ward.expected())
    history = patient_reminders(engine=ward.engine, mrn="H-0000")
    assert {"lapsed", "satisfied", "acknowledged", "cancelled"} <= {r["status"] for r in history}
    assert {r["id"] for r in history} == {r["id"] for r in ward.made if r["mrn"] == "H-0000"}


def test_every_row_can_merge_statuses_in_the_worklist_order(ward: Ward) -> None:
    both = list(every_row(engine=ward.engine, today=TODAY, statuses=("due", "sent"), page_size=4))
    assert ids(both) == ward.expected(lambda r: r["status"] in ("due", "sent"))


# --- acknowledgement -----------------------------------------------------------------


def audit_of(engine: Engine, rid: int) -> list[dict]:
    a = table_of(AuditEvent).c
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(a.username, a.action, a.mrn, a.before, a.after).where(
                a.entity == "reminder", a.entity_id == rid
            )
        ).all()
    return [dict(row._mapping) for row in found]


def as_dict(value: object) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})  # type: ignore[arg-type]


def test_acknowledging_records_who_and_why_and_leaves_an_audit_event(ward: Ward) -> None:
    rid = ward.expected()[0]
    done = acknowledge(engine=ward.engine, reminder_id=rid, by="nurse", reason="seen in clinic")
    assert done.previous in ("due", "sent")
    assert done.description.endswith(f"for {done.name} ({done.mrn})")
    stored = ward.status_of(rid)
    assert (stored["status"], stored["closed_by"], stored["ack_reason"]) == (
        "acknowledged", "nurse", "seen in clinic",
    )  # fmt: skip
    [event] = audit_of(ward.engine, rid)
    assert (event["username"], event["action"], event["mrn"]) == ("nurse", "acknowledge", done.mrn)
    assert as_dict(event["after"])["reason"] == "seen in clinic"
    assert rid not in ids(worklist(engine=ward.engine, today=TODAY).rows)


def test_acknowledging_twice_is_refused_with_the_reminder_named(ward: Ward) -> None:
    rid = ward.expected()[0]
    acknowledge(engine=ward.engine, reminder_id=rid, by="nurse")
    with pytest.raises(Conflict, match=rf"Reminder {rid} \(.+\) is already acknowledged"):
        acknowledge(engine=ward.engine, reminder_id=rid, by="nurse")
    lapsed = next(r["id"] for r in ward.made if r["status"] == "lapsed")
    with pytest.raises(TrackerError, match="is lapsed"):
        acknowledge(engine=ward.engine, reminder_id=lapsed, by="nurse")


def test_bulk_acknowledge_closes_every_one_with_the_reason(ward: Ward) -> None:
    chosen = ward.expected()[:3]
    done = acknowledge_many(
        engine=ward.engine, reminder_ids=chosen, by="nurse", reason="patient transferred"
    )
    assert [d.id for d in done] == chosen
    for rid in chosen:
        stored = ward.status_of(rid)
        assert (stored["status"], stored["ack_reason"]) == ("acknowledged", "patient transferred")
        assert len(audit_of(ward.engine, rid)) == 1


def test_bulk_acknowledge_refuses_the_lot_when_one_is_no_longer_open(ward: Ward) -> None:
    chosen = ward.expected()[:4]
    acknowledge(engine=ward.engine, reminder_id=chosen[2], by="colleague")
    before = {rid: ward.status_of(rid)["status"] for rid in chosen}
    with pytest.raises(Conflict) as refused:
        acknowledge_many(engine=ward.engine, reminder_ids=chosen, by="nurse", reason="moved")
    message = str(refused.value)
    assert f"Reminder {chosen[2]} (" in message and "already acknowledged" in message
    assert "Nothing was acknowledged" in message
    assert {rid: ward.status_of(rid)["status"] for rid in chosen} == before
    assert [len(audit_of(ward.engine, rid)) for rid in chosen] == [0, 0, 1, 0]


def test_bulk_acknowledge_refuses_an_unknown_reminder_and_changes_nothing(ward: Ward) -> None:
    chosen = ward.expected()[:2]
    with pytest.raises(NotFound, match="There is no reminder 999999"):
        acknowledge_many(
            engine=ward.engine, reminder_ids=[*chosen, 999999], by="nurse", reason="moved"
        )
    assert {ward.status_of(rid)["status"] for rid in chosen} <= {"due", "sent"}


def test_bulk_acknowledge_needs_a_reason_and_at_least_one_reminder(ward: Ward) -> None:
    chosen = ward.expected()[:2]
    for blank in (None, "", "   "):
        with pytest.raises(ValidationFailed) as refused:
            acknowledge_many(engine=ward.engine, reminder_ids=chosen, by="nurse", reason=blank)
        assert refused.value.problems[0].field == "reason"
    with pytest.raises(ValidationFailed) as none_ticked:
        acknowledge_many(engine=ward.engine, reminder_ids=[], by="nurse", reason="moved")
    assert none_ticked.value.problems[0].field == "reminders"
    assert {ward.status_of(rid)["status"] for rid in chosen} <= {"due", "sent"}


# --- the first page reads an index, not the table -----------------------------------------


def test_the_first_page_reads_the_open_reminders_index_in_order(engine: Engine) -> None:
    ward = Ward(engine)
    ward.team("ward_7")
    with engine.begin() as conn:  # much closed history, a little open work
        conn.execute(
            sa.text("INSERT INTO patient (mrn, team, version) VALUES (:mrn, 'ward_7', 1)"),
            [{"mrn": f"P{n:05d}"} for n in range(3000)],
        )
        pids = list(conn.execute(sa.text("SELECT id FROM patient")).scalars())
        rows = [
            {"p": pid, "d": dt.date(2020, 1, 1) + dt.timedelta(days=(pid * 7 + k * 53) % 2400),
             "s": "satisfied" if k < 7 else ("pending", "due")[k % 2],
             "site": ("hip", "knee")[k % 2], "side": ("left", "right")[k // 2 % 2]}
            for pid in pids for k in range(8)
        ]  # fmt: skip
        conn.execute(
            sa.text(
                "INSERT INTO reminder (patient_id, rule, site, side, due, status, attempts, late,"
                " version, created_at, updated_at, closed_at) VALUES (:p, 'monitoring_radiograph',"
                " :site, :side, :d, :s, 0, false, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, NULL)"
            ),
            rows,
        )
        conn.exec_driver_sql("ANALYZE")
    query = worklist_query(today=TODAY, filters=WorklistFilters(), team_name=None, limit=51)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {sql}").scalars())
            assert "ix_reminder_open_due_id" in plan and "Sort" not in plan, plan
        else:
            found = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            plan = " | ".join(str(row[-1]) for row in found)
            assert "ix_reminder_open_due_id" in plan and "TEMP B-TREE" not in plan, plan
    first = worklist(engine=engine, today=TODAY)
    assert len(first.rows) == 50 and first.next is not None
