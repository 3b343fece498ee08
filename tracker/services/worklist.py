"""The worklist: reminders not yet closed, most overdue first, one page at a time
(model-spec section 9; issue 14), and closing them by hand (acknowledgement).

The web page, the JSON API, the CLI and the daily digest read it here. A page is
ordered by (due, id): the most overdue first, then the soonest due, the id breaking
ties, so paging by that key (keyset) never loses or repeats a row, however many rows
share a due date. "More" is known by reading one row past the page; nothing counts
the cohort. The first page reads a partial index of the open rows in that order
(`ix_reminder_open_due_id`), so its cost does not grow with closed history.

A patient's history (`patient_reminders`) is separate: every status, lapsed included
(v2: long past when first planned, kept for the record, never on the worklist).
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.errors import Conflict, NotFound, Problem, TrackerError, ValidationFailed
from tracker.services.audit import write_event
from tracker.services.patients import display_name
from tracker.store.models import REMINDER_OPEN, Patient, Reminder, Team, table_of, utcnow
from tracker.templating import words
from tracker.values import text_problem

__all__ = [
    "ACKNOWLEDGEABLE",
    "MAX_PAGE",
    "OPEN",
    "PAGE_SIZE",
    "Acknowledged",
    "Cursor",
    "DueWindow",
    "WorklistFilters",
    "WorklistPage",
    "acknowledge",
    "acknowledge_many",
    "describe",
    "every_row",
    "patient_reminders",
    "status_counts",
    "team_names",
    "worklist",
    "worklist_query",
]

S = vocab.ReminderStatus
reminder, patient, team = table_of(Reminder), table_of(Patient), table_of(Team)
r, p = reminder.c, patient.c

# Not yet closed: on the worklist until a record satisfies it or someone acknowledges
# it. Pending ones are those not due yet (they come after the overdue and due ones).
OPEN: tuple[str, ...] = (S.pending.value, S.due.value, S.sent.value)
ACKNOWLEDGEABLE = OPEN
PAGE_SIZE = 50
MAX_PAGE = 500
MAX_BULK = 500
REASON_LENGTH = 300  # reminder.ack_reason


class DueWindow(StrEnum):
    """Which due dates a worklist shows, counted from the clinic's today."""

    overdue = "overdue"  # due before today
    today = "today"
    week = "week"  # today and the 6 days after it


WINDOW_WORDS = {
    DueWindow.overdue: "overdue",
    DueWindow.today: "due today",
    DueWindow.week: "due this week (next 7 days)",
}


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; they are stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


# --- where a page starts ----------------------------------------------------------


_CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{1,18})$")


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the worklist's order: a row's due date and id. It reads
    `2026-11-03.812` in a URL."""

    due: dt.date
    id: int

    def __str__(self) -> str:
        return f"{self.due.isoformat()}.{self.id}"

    @classmethod
    def parse(cls, text: str | None, *, name: str = "after") -> Cursor | None:
        """None for an absent or empty value; a sentence for anything this list did
        not make."""
        if not text:
            return None
        found = _CURSOR.match(text.strip())
        due = None
        if found:
            try:
                due = dt.date.fromisoformat(found.group(1))
            except ValueError:
                due = None
        if found is None or due is None:
            raise TrackerError(
                f"The page position {name}='{text[:40]}' is not one this list gives (a due "
                "date and a reminder number, like 2026-11-03.812); start again from the "
                "first page."
            )
        return cls(due, int(found.group(2)))

    @classmethod
    def of(cls, row: dict[str, Any]) -> Cursor:
        return cls(row["due"], int(row["id"]))


# --- what to show ------------------------------------------------------------------


def _choice(value: str | None, allowed: Sequence[str], field: str, plural: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if value not in allowed:
        raise TrackerError(
            f"{field} '{value[:40]}' is not {plural}; choose one of "
            f"{', '.join(words(a) for a in allowed)}, or leave it empty for any."
        )
    return value


@dataclass(frozen=True)
class WorklistFilters:
    """The worklist's filters (they live in the page's URL). None means any; with no
    status, every open one (pending, due, sent)."""

    team: str | None = None
    rule: str | None = None
    status: str | None = None
    window: DueWindow | None = None
    mine: bool = False  # the viewer's own team, whatever `team` says

    @classmethod
    def parse(
        cls,
        *,
        team: str | None = None,
        rule: str | None = None,
        status: str | None = None,
        window: str | None = None,
        mine: str | bool | None = None,
        statuses: Sequence[str] = OPEN,
    ) -> WorklistFilters:
        """From form or query values: an empty value is "any" (an HTML select sends
        `team=`); a value that is not a choice is refused with a sentence."""
        found_window = _choice(window, list(DueWindow), "Due", "a due window")
        if isinstance(mine, str):
            mine = mine.strip().lower() in ("1", "on", "true", "yes")
        return cls(
            team=(team or "").strip() or None,
            rule=_choice(rule, list(vocab.ReminderRule), "Reminder", "a reminder rule"),
            status=_choice(status, statuses, "Status", "a worklist status"),
            window=DueWindow(found_window) if found_window else None,
            mine=bool(mine),
        )

    def query(self) -> dict[str, str]:
        """These filters as URL parameters (empty ones left out)."""
        values = {
            "team": self.team or "",
            "rule": self.rule or "",
            "status": self.status or "",
            "window": self.window.value if self.window else "",
            "mine": "1" if self.mine else "",
        }
        return {k: v for k, v in values.items() if v}

    @property
    def any(self) -> bool:
        return bool(self.query())


@dataclass(frozen=True)
class WorklistPage:
    """One page of the worklist. `next` is the position after the last row when more
    follow; `previous` the position before the first row when this is not the first
    page (open `before=previous` to go back)."""

    rows: list[dict[str, Any]]
    filters: WorklistFilters
    team: str | None  # the team the rows are limited to ("my team" resolved)
    limit: int
    next: Cursor | None = None
    previous: Cursor | None = None
    note: str | None = None  # a filter that could not apply, in a sentence

    @property
    def is_first(self) -> bool:
        return self.previous is None


# --- the query ---------------------------------------------------------------------


_COLUMNS = (
    r.id,
    p.mrn,
    p.family_name,
    p.given_name,
    p.team,
    r.rule,
    r.site,
    r.side,
    r.due,
    r.status,
    r.detail,
    r.cancel_reason,
    r.closed_at,
    r.closed_by,
    r.ack_reason,
    r.recipient,
    r.attempts,
    r.last_error,
    r.message_id,
    r.sent_at,
    r.accepted_at,
    r.late,
    r.escalated_at,
    r.next_attempt_at,
)
_STAMPS = ("sent_at", "accepted_at", "escalated_at", "next_attempt_at", "closed_at")


def _window_clause(window: DueWindow, today: dt.date) -> Any:
    if window == DueWindow.overdue:
        return r.due < today
    if window == DueWindow.today:
        return r.due == today
    return sa.and_(r.due >= today, r.due <= today + dt.timedelta(days=6))


def worklist_query(
    *,
    today: dt.date,
    filters: WorklistFilters,
    team_name: str | None,
    after: Cursor | None = None,
    before: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> sa.Select[Any]:
    """The SELECT behind one page, `limit` rows from the cursor on (backwards, newest
    first, with `before`)."""
    query = sa.select(*_COLUMNS).select_from(reminder.join(patient))
    if filters.status is None or filters.status in OPEN:
        # the partial index's own predicate, in literal SQL: SQLite uses a partial index
        # only for the very same term, and neither can prove a bound parameter's value
        # (a prepared statement's generic plan) implies it
        query = query.where(sa.text(f"reminder.{REMINDER_OPEN}"))
    if filters.status is not None:
        query = query.where(r.status == filters.status)
    if filters.rule:
        query = query.where(r.rule == filters.rule)
    if team_name:
        query = query.where(p.team == team_name)
    if filters.window is not None:
        query = query.where(_window_clause(filters.window, today))
    key = sa.tuple_(r.due, r.id)
    if before is not None:
        return (
            query.where(key < (before.due, before.id))
            .order_by(r.due.desc(), r.id.desc())
            .limit(limit)
        )
    if after is not None:
        query = query.where(key > (after.due, after.id))
    return query.order_by(r.due, r.id).limit(limit)


def _row(found: Any, today: dt.date) -> dict[str, Any]:
    row = dict(found)
    for column in _STAMPS:
        row[column] = _aware(row[column])
    row["name"] = display_name(row.pop("family_name"), row.pop("given_name"))
    row["days_overdue"] = max((today - row["due"]).days, 0)
    row["delivery_problem"] = delivery_problem(row)
    return row


def delivery_problem(row: dict[str, Any]) -> str | None:
    """Why a reminder's e-mail (or its escalation) has not gone out, in words, or None
    (issue 15: a failed delivery shows on screen, not only in a log)."""
    from tracker import labels

    error = row.get("last_error")
    if not error:
        return None
    # a command in backticks is typed as it stands: its words are not made words of
    # (`ho-tracker teams add ...` must not read `HO-tracker ...`)
    said = "".join(
        part if part.startswith("`") else labels.sentence(part) for part in _COMMAND.split(error)
    )
    if row["status"] == S.due.value:
        return f"E-mail not sent: {said}"
    if row["status"] == S.sent.value and row.get("accepted_at") and not row["escalated_at"]:
        return f"Escalation e-mail not sent: {said}"
    return None


_COMMAND = re.compile(r"(`[^`]*`)")


FAILED_SHOWN = 200


def failed_deliveries(
    *, engine: Engine, today: dt.date, limit: int = FAILED_SHOWN
) -> list[dict[str, Any]]:
    """Open reminders whose e-mail or escalation failed and waits for a retry, the next
    try first (the admin's "Failed deliveries"); rows as on the worklist."""
    failed = sa.or_(
        r.status == S.due.value,
        sa.and_(r.status == S.sent.value, r.accepted_at.is_not(None), r.escalated_at.is_(None)),
    )
    query = (
        sa.select(*_COLUMNS)
        .select_from(reminder.join(patient))
        .where(r.last_error.is_not(None), failed)
        .order_by(r.next_attempt_at, r.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [row for row in _rows(conn, query, today) if row["delivery_problem"]]


def _rows(conn: Connection, query: sa.Select[Any], today: dt.date) -> list[dict[str, Any]]:
    return [_row(m, today) for m in conn.execute(query).mappings()]


def worklist(
    *,
    engine: Engine,
    today: dt.date,
    filters: WorklistFilters | None = None,
    my_team: str | None = None,
    after: Cursor | None = None,
    before: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> WorklistPage:
    """One page of open reminders (or of `filters.status`), most overdue first, then
    the soonest due: the rows after `after`, or those just before `before` (a way
    back), else the first page. Each row has id, mrn, name (the patient's display
    name), team, rule, site, side, due, status, detail, days_overdue and the delivery
    columns. `my_team` is the viewer's team, which `filters.mine` selects."""
    filters = filters or WorklistFilters()
    if not 1 <= limit <= MAX_PAGE:
        raise TrackerError(f"A worklist page holds 1 to {MAX_PAGE} rows, not {limit}.")
    team_name, note = filters.team, None
    if filters.mine:
        if my_team:
            team_name = my_team
        else:
            note = (
                "Your account has no team, so “my team” cannot narrow the list; an "
                "administrator can set your team."
            )

    def query(a: Cursor | None = None, b: Cursor | None = None) -> sa.Select[Any]:
        return worklist_query(
            today=today, filters=filters, team_name=team_name, after=a, before=b, limit=limit + 1
        )

    with engine.connect() as conn:
        if before is not None:
            rows = _rows(conn, query(b=before), today)
            if len(rows) > limit:  # a full page back, with more before it
                page = rows[:limit][::-1]
                return WorklistPage(
                    rows=page,
                    filters=filters,
                    team=team_name,
                    limit=limit,
                    next=Cursor.of(page[-1]),
                    previous=Cursor.of(page[0]),
                    note=note,
                )
            after = None  # back at the start: show a full first page
        rows = _rows(conn, query(a=after), today)
    more = len(rows) > limit
    rows = rows[:limit]
    return WorklistPage(
        rows=rows,
        filters=filters,
        team=team_name,
        limit=limit,
        next=Cursor.of(rows[-1]) if more else None,
        previous=None if after is None else Cursor.of(rows[0]) if rows else _just_after(after),
        note=note,
    )


def _just_after(cursor: Cursor) -> Cursor:
    """Past the last row (say, every row of the last page acknowledged), the way back
    is the page that ends with the cursor's own row: ids are whole numbers, so nothing
    lies between (due, id) and (due, id + 1)."""
    return Cursor(cursor.due, cursor.id + 1)


def every_row(
    *,
    engine: Engine,
    today: dt.date,
    filters: WorklistFilters | None = None,
    my_team: str | None = None,
    statuses: Sequence[str] | None = None,
    page_size: int = MAX_PAGE,
) -> Iterator[dict[str, Any]]:
    """The whole worklist for these filters, page by page in the same order (for the
    CLI and the digest, which want every row and not a screenful). With `statuses`,
    the rows of each of those statuses, merged in that order (the digest and the CLI
    list the due and sent ones)."""
    filters = filters or WorklistFilters()
    if statuses is not None:
        walks = [
            every_row(
                engine=engine,
                today=today,
                filters=replace(filters, status=status),
                my_team=my_team,
                page_size=page_size,
            )
            for status in statuses
        ]
        yield from heapq.merge(*walks, key=lambda row: (row["due"], row["id"]))
        return
    after: Cursor | None = None
    while True:
        page = worklist(
            engine=engine,
            today=today,
            filters=filters,
            my_team=my_team,
            after=after,
            limit=page_size,
        )
        yield from page.rows
        if page.next is None:
            return
        after = page.next


def patient_reminders(
    *, engine: Engine, mrn: str, today: dt.date | None = None
) -> list[dict[str, Any]]:
    """One patient's reminder history: every status, lapsed included, by due date;
    rows as on the worklist (closed_at says when it was satisfied, acknowledged,
    cancelled or lapsed; closed_by and ack_reason who acknowledged it and why)."""
    today = today or dt.date.today()
    query = (
        sa.select(*_COLUMNS)
        .select_from(reminder.join(patient))
        .where(p.mrn == mrn)
        .order_by(r.due, r.rule, r.id)
    )
    with engine.connect() as conn:
        return _rows(conn, query, today)


def status_counts(*, engine: Engine) -> dict[str, int]:
    """How many reminders there are in each status (for a summary line, not a page)."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(r.status, sa.func.count()).group_by(r.status)).all()
    return {str(status): int(n) for status, n in found}


def team_names(*, engine: Engine) -> list[str]:
    """The teams a worklist can be limited to (names only: no count over patients)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(team.c.name).order_by(team.c.name)).scalars())


# --- acknowledgement ---------------------------------------------------------------


def describe(row: dict[str, Any]) -> str:
    """A reminder as a person says it: "maturity bone scan at left hip for DOE, Jane
    (H-0012)"."""
    where = f" at {words(row['side'])} {words(row['site'])}" if row.get("site") else ""
    name = row.get("name") or display_name(row.get("family_name"), row.get("given_name"))
    who = f"{name} ({row['mrn']})" if name else str(row["mrn"])
    return f"{words(row['rule'])}{where} for {who}"


@dataclass(frozen=True)
class Acknowledged:
    """A reminder closed by hand: what it was and the status it had."""

    id: int
    previous: str
    rule: str
    mrn: str
    name: str
    site: str | None
    side: str | None
    due: dt.date

    @property
    def description(self) -> str:
        return describe(
            {
                "rule": self.rule,
                "mrn": self.mrn,
                "name": self.name,
                "site": self.site,
                "side": self.side,
            }
        )


def _refusal(row: dict[str, Any], together: bool) -> str | None:
    """Why this reminder cannot be acknowledged, or None."""
    what = f"Reminder {row['id']} ({describe(row)})"
    after = " Nothing was acknowledged; reload the worklist and choose again." if together else ""
    status = row["status"]
    if status == S.lapsed.value:
        return (
            f"{what} is lapsed: it was long past when first planned, so it is kept in the "
            "patient's history but is not on the worklist and cannot be acknowledged." + after
        )
    if status not in ACKNOWLEDGEABLE:
        return (
            f"{what} is already {words(status)}; only pending, due or sent reminders can "
            "be acknowledged." + after
        )
    return None


def _clean_reason(reason: str | None, *, required: bool) -> str | None:
    reason = (reason or "").strip() or None
    if reason is None and required:
        raise ValidationFailed(
            [
                Problem(
                    "acknowledge",
                    None,
                    "reason",
                    "Give a reason for acknowledging these reminders together (for example "
                    "“patient transferred”).",
                )
            ]
        )
    if reason is not None and len(reason) > REASON_LENGTH:
        raise ValidationFailed(
            [
                Problem(
                    "acknowledge",
                    None,
                    "reason",
                    f"Keep the reason to {REASON_LENGTH} characters (it has {len(reason)}).",
                )
            ]
        )
    problem = None if reason is None else text_problem(reason, limit=REASON_LENGTH)
    if problem is not None:  # a control character, a line break too (one line of text)
        said = f"The reason {problem}; write it on one line of plain text."
        raise ValidationFailed([Problem("acknowledge", None, "reason", said)])
    return reason


def _lock(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    query = (
        sa.select(r.id, r.status, r.rule, r.site, r.side, r.due, p.mrn, p.family_name, p.given_name)
        .select_from(reminder.join(patient))
        .where(r.id.in_(ids))
    )
    if conn.dialect.name == "postgresql":  # no delivery or colleague may change them meanwhile
        query = query.with_for_update(of=reminder)
    found = {}
    for m in conn.execute(query).mappings():
        row = dict(m)
        row["name"] = display_name(row.pop("family_name"), row.pop("given_name"))
        found[int(row["id"])] = row
    return found


def acknowledge_many(
    *,
    engine: Engine,
    reminder_ids: Sequence[int],
    by: str,
    reason: str | None,
    now: dt.datetime | None = None,
    reason_required: bool = True,
) -> list[Acknowledged]:
    """Close several reminders by hand (model-spec section 9), all or none, in one
    transaction: an unknown id or one not open refuses the lot with a sentence naming
    it. Each records who (`by`) and why (`reason`, required unless
    `reason_required=False`) and adds an audit event."""
    ids = list(dict.fromkeys(int(i) for i in reminder_ids))
    if not ids:
        raise ValidationFailed(
            [Problem("acknowledge", None, "reminders", "Tick at least one reminder.")]
        )
    if len(ids) > MAX_BULK:
        raise TrackerError(f"Acknowledge at most {MAX_BULK} reminders at once, not {len(ids)}.")
    reason = _clean_reason(reason, required=reason_required)
    together = len(ids) > 1
    now = now or utcnow()
    with engine.begin() as conn:
        found = _lock(conn, ids)
        for rid in ids:
            if rid not in found:
                lot = " Nothing was acknowledged." if together else ""
                raise NotFound(
                    f"There is no reminder {rid}; `ho-tracker reminders list` shows them.{lot}"
                )
            refused = _refusal(found[rid], together)
            if refused:
                raise Conflict(refused)
        changed = conn.execute(
            reminder.update()
            .where(r.id.in_(ids), r.status.in_(ACKNOWLEDGEABLE))
            .values(
                status=S.acknowledged.value,
                closed_at=now,
                closed_by=by[:200],
                ack_reason=reason,
                claimed_by=None,
                claim_token=None,
                claimed_until=None,
                version=r.version + 1,
                updated_at=now,
            )
        ).rowcount
        if changed != len(ids):  # only where a row lock is not available (SQLite: one writer)
            raise Conflict("The reminders changed while they were acknowledged; try again.")
        for rid in ids:
            row = found[rid]
            write_event(
                conn,
                actor=by,
                action=vocab.AuditAction.acknowledge,
                entity="reminder",
                entity_id=rid,
                mrn=row["mrn"],
                before={"status": row["status"]},
                after={"status": S.acknowledged.value, "reason": reason},
            )
    return [
        Acknowledged(
            id=rid,
            previous=str(found[rid]["status"]),
            rule=str(found[rid]["rule"]),
            mrn=str(found[rid]["mrn"]),
            name=str(found[rid]["name"]),
            site=found[rid]["site"],
            side=found[rid]["side"],
            due=found[rid]["due"],
        )
        for rid in ids
    ]


def acknowledge(
    *,
    engine: Engine,
    reminder_id: int,
    by: str,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> Acknowledged:
    """Close one reminder by hand (model-spec section 9), recording who and, if given,
    why; the returned `previous` is the status it had."""
    [done] = acknowledge_many(
        engine=engine,
        reminder_ids=[reminder_id],
        by=by,
        reason=reason,
        now=now,
        reason_required=False,
    )
    return done
