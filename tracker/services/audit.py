"""The audit trail (issue 6): who did what to which record, when, before and after.

Rows are written inside the transaction of the change they describe, so a change
and its audit row are stored together or not at all. Everything lives in the
database, so any number of app processes share one trail.

Public surface:
    record_view(*, engine, actor, mrn) -> None
    audit_trail(*, engine, mrn=None, username=None, since=None, limit=500) -> list[AuditRow]
    write_event(conn, *, actor, action, entity, entity_id, mrn, before, after) -> None
    audit_page(*, engine, filters, zone, after=None, size=50) -> AuditPage (the web page:
        keyset-paged, each row's record, patient and changes in words)
    record_views(*, engine, actor, mrns, what, search=None) -> None (a list of patients
        shown, or a cohort exported: a row per patient)
    import_recorder(*, actor, source) -> ImportAudit (an import's rows, a row per patient,
        written by the import inside its own transaction)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.errors import TrackerError
from tracker.store.models import AuditEvent, Patient, Reminder, UserAccount, table_of
from tracker.templating import words

audit_event = table_of(AuditEvent)
user_account = table_of(UserAccount)


@dataclass(frozen=True)
class AuditRow:
    """One audit row for display; `before`/`after` are the stored JSON, parsed."""

    id: int
    at: dt.datetime
    username: str | None
    action: str
    entity: str | None
    entity_id: int | None
    mrn: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "username": self.username,
            "action": self.action,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "mrn": self.mrn,
            "before": self.before,
            "after": self.after,
        }


def to_json(value: dict[str, Any] | None) -> str | None:
    """Stable JSON text of a record snapshot (dates as ISO text)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def write_event(
    conn: Connection,
    *,
    actor: str | None,
    action: vocab.AuditAction | str,
    entity: str | None,
    entity_id: int | None,
    mrn: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add one audit row on `conn`, inside the caller's transaction."""
    conn.execute(
        sa.insert(audit_event).values(
            at=dt.datetime.now(dt.UTC),
            username=actor,
            action=str(action),
            entity=entity,
            entity_id=entity_id,
            mrn=mrn,
            before=to_json(before),
            after=to_json(after),
        )
    )


def record_view(*, engine: Engine, actor: str, mrn: str, what: str | None = None) -> None:
    """Log that `actor` opened the record of patient `mrn` (issue 6: every view);
    `what` names the page, figure, form or command it was seen through."""
    with engine.begin() as conn:
        write_event(
            conn,
            actor=actor,
            action=vocab.AuditAction.view,
            entity="patient",
            entity_id=None,
            mrn=mrn,
            after={"what": what} if what else None,
        )


def record_views(
    *,
    engine: Engine,
    actor: str,
    mrns: Iterable[str],
    what: str,
    search: Mapping[str, object] | None = None,
) -> None:
    """Log that `actor` was shown these patients at once (issue 15): a row per patient,
    so that `audit --mrn` and the audit page's MRN filter find every list a patient was
    shown in through the (mrn, at) index, as they find the patient's own page. Each is
    a view (the trail's actions are fixed by the schema); `what` says which list, and
    `search` the filters it was asked with. One insert, one transaction."""
    shown = sorted(set(mrns))
    if not shown:
        return
    after: dict[str, Any] = {"what": what, "shown": len(shown)}
    if search is not None:
        after["search"] = {k: v for k, v in search.items() if v not in (None, "")}
    at, text = dt.datetime.now(dt.UTC), to_json(after)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(audit_event),
            [
                {"at": at, "username": actor, "action": str(vocab.AuditAction.view),
                 "entity": "patient",
                 "entity_id": None, "mrn": mrn, "before": None, "after": text}
                for mrn in shown
            ],
        )  # fmt: skip


def record_cohort_view(*, engine: Engine, actor: str, what: str) -> None:
    """Log a view of every stored patient at once (a cohort export or report)."""
    p = table_of(Patient).c
    with engine.connect() as conn:
        mrns = [str(mrn) for (mrn,) in conn.execute(sa.select(p.mrn))]
    record_views(engine=engine, actor=actor, mrns=mrns, what=what)


def audit_trail(
    *,
    engine: Engine,
    mrn: str | None = None,
    username: str | None = None,
    since: dt.date | dt.datetime | None = None,
    limit: int = 500,
) -> list[AuditRow]:
    """Audit rows matching every filter given, newest first."""
    a = audit_event.c
    query = sa.select(audit_event)
    if mrn:
        query = query.where(a.mrn == mrn)
    if username:
        query = query.where(a.username == username)
    if since is not None:
        if not isinstance(since, dt.datetime):
            since = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
        query = query.where(a.at >= since)
    query = query.order_by(a.at.desc(), a.id.desc()).limit(max(1, limit))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [_audit_row(row) for row in rows]


def last_change(conn: Connection, *, entity: str, entity_id: int) -> tuple[str | None, dt.datetime]:
    """Who last created, corrected or voided a record, and when (for conflict messages)."""
    a = audit_event.c
    row = conn.execute(
        sa.select(a.username, a.at)
        .where(a.entity == entity, a.entity_id == entity_id)
        .where(a.action.in_(["create", "correct", "void"]))
        .order_by(a.at.desc(), a.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, dt.datetime.now(dt.UTC)
    return row.username, _utc(row.at)


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- the audit page: paged, filtered, and told in words (issue 14) -------------------

PAGE_SIZE = 50  # rows a page of the audit trail shows


@dataclass(frozen=True)
class AuditFilters:
    """What the audit page is narrowed to; None means any. Days are the clinic's."""

    since: dt.date | None = None  # from this day, inclusive
    until: dt.date | None = None  # to this day, inclusive
    action: str | None = None
    username: str | None = None
    mrn: str | None = None


@dataclass(frozen=True)
class Change:
    """One line of what an event did to a record: a field with its value before (None
    when there was nothing to compare, as for a new record) and after, in words."""

    field: str
    before: str | None
    after: str

    @property
    def text(self) -> str:
        if self.before is None:
            return f"{self.field}: {self.after}"
        return f"{self.field}: {self.before} → {self.after}"


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as a person reads it."""

    id: int
    at: dt.datetime  # in the clinic's time zone
    username: str | None  # None: the system itself
    action: str  # an AuditAction value (shown through `words`)
    record: str  # "imaging study 238", "patient", "" for none
    mrn: str | None  # the patient it concerns, where there is one
    patient: str | None  # that patient's name
    changes: tuple[Change, ...]

    @property
    def when(self) -> str:
        """To the minute: the seconds and microseconds are the database's business."""
        return f"{self.at:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_after: str | None  # where the next (older) page starts; None on the last


def audit_page(
    *,
    engine: Engine,
    filters: AuditFilters,
    zone: dt.tzinfo,
    after: str | None = None,
    size: int = PAGE_SIZE,
) -> AuditPage:
    """One page of the audit trail, newest first (at, then id, descending), after the
    cursor `after` the previous page returned. At most `size + 1` events are read,
    through the (at), (mrn, at), (username, at) or (action, at) index, however long
    the trail; then one query names the page's patients (and one finds the patients
    of acknowledged reminders, which predate the reminder's MRN in the row)."""
    a = audit_event.c
    query = sa.select(audit_event).where(*_audit_filters(filters, zone))
    if after:
        at, event_id = _audit_cursor(after)
        query = query.where(a.at <= at, sa.or_(a.at < at, a.id < event_id))
    query = query.order_by(a.at.desc(), a.id.desc()).limit(size + 1)
    with engine.connect() as conn:
        found = [_audit_row(row) for row in conn.execute(query).mappings()]
        page = found[:size]
        reminder_mrns = _reminder_patients(conn, page)
        names = _patient_names(conn, {r.mrn for r in page if r.mrn} | set(reminder_mrns.values()))
        users = _usernames(conn, {r.entity_id for r in page if r.entity == "user_account"})
    entries = []
    for row in page:
        mrn = row.mrn or (
            reminder_mrns.get(row.entity_id or 0) if row.entity == "reminder" else None
        )
        entries.append(
            AuditEntry(
                id=row.id,
                at=row.at.astimezone(zone),
                username=row.username,
                action=row.action,
                record=(
                    f"user {users[row.entity_id]}"
                    if row.entity == "user_account" and row.entity_id in users
                    else record_words(row.entity, row.entity_id)
                ),
                mrn=mrn,
                patient=names.get(mrn) if mrn else None,
                changes=changes_of(row.action, row.before, row.after),
            )
        )
    last = page[-1] if page else None
    more = len(found) > size and last is not None
    return AuditPage(entries, _encode_audit_cursor(last.at, last.id) if more and last else None)


def _audit_filters(filters: AuditFilters, zone: dt.tzinfo) -> list[Any]:
    a = audit_event.c
    clauses: list[Any] = []
    if filters.since is not None:
        clauses.append(a.at >= _day_start(filters.since, zone))
    if filters.until is not None:
        clauses.append(a.at < _day_start(filters.until + dt.timedelta(days=1), zone))
    if filters.action:
        clauses.append(a.action == filters.action)
    if filters.username:
        clauses.append(a.username == filters.username)
    if filters.mrn:
        clauses.append(a.mrn == filters.mrn)
    return clauses


def _day_start(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """Midnight starting `day` in the clinic, in UTC (as the trail stores its times)."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _audit_row(row: Any) -> AuditRow:
    return AuditRow(
        id=row["id"],
        at=_utc(row["at"]),
        username=row["username"],
        action=row["action"],
        entity=row["entity"],
        entity_id=row["entity_id"],
        mrn=row["mrn"],
        before=json.loads(row["before"]) if row["before"] else None,
        after=json.loads(row["after"]) if row["after"] else None,
    )


def _reminder_patients(conn: Connection, rows: list[AuditRow]) -> dict[int, str]:
    """reminder id -> its patient's MRN, for the page's acknowledgements."""
    ids = {r.entity_id for r in rows if r.entity == "reminder" and not r.mrn and r.entity_id}
    if not ids:
        return {}
    reminder, patient = table_of(Reminder), table_of(Patient)
    found = conn.execute(
        sa.select(reminder.c.id, patient.c.mrn)
        .join(patient, patient.c.id == reminder.c.patient_id)
        .where(reminder.c.id.in_(ids))
    )
    return {int(rid): str(mrn) for rid, mrn in found}


def _patient_names(conn: Connection, mrns: set[str]) -> dict[str, str]:
    from tracker.services.patients import display_name  # it imports this module

    if not mrns:
        return {}
    p = table_of(Patient).c
    found = conn.execute(
        sa.select(p.mrn, p.family_name, p.given_name).where(p.mrn.in_(sorted(mrns)))
    )
    return {mrn: display_name(family, given) for mrn, family, given in found}


def _usernames(conn: Connection, ids: set[int | None]) -> dict[int, str]:
    """The usernames of the user accounts a page's events name ("user nurse", not
    "user 3"), in one query."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    u = user_account.c
    rows = conn.execute(sa.select(u.id, u.username).where(u.id.in_(wanted)))
    return {int(row.id): str(row.username) for row in rows}


def _encode_audit_cursor(at: dt.datetime, event_id: int) -> str:
    text = json.dumps([at.astimezone(dt.UTC).isoformat(), event_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _audit_cursor(after: str) -> tuple[dt.datetime, int]:
    try:
        padded = after + "=" * (-len(after) % 4)
        at, event_id = json.loads(base64.urlsafe_b64decode(padded).decode())
        moment = dt.datetime.fromisoformat(str(at))
        if moment.tzinfo is None:
            raise ValueError(after)
        return moment.astimezone(dt.UTC), int(event_id)
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise TrackerError(
            "This page link is damaged or incomplete; open the audit trail again from its "
            "first page."
        ) from None


# An import's audit: called by the import on its own connection, inside the transaction
# that stores the rows, with the rows it added per patient and file ({mrn: {file: n}}).
ImportAudit = Callable[[Connection, Mapping[str, Mapping[str, int]]], None]


def import_recorder(*, actor: str | None, source: str) -> ImportAudit:
    """What an import (CSV, FHIR, DICOM; web or CLI) writes to the trail: a row per
    patient it gave records to, with the rows added per file, so that `audit --mrn`
    answers "where did this record come from?" (issue 15). `source` says how it came
    ("CSV upload of patients.csv, imaging.csv", "FHIR Bundle b.json")."""

    def record(conn: Connection, added: Mapping[str, Mapping[str, int]]) -> None:
        at = dt.datetime.now(dt.UTC)
        rows = [
            {"at": at, "username": actor, "action": str(vocab.AuditAction.import_),
             "entity": "patient", "entity_id": None, "mrn": mrn, "before": None,
             "after": to_json({"source": source, "rows_added": dict(counts)})}
            for mrn, counts in sorted(added.items())
            if any(counts.values())
        ]  # fmt: skip
        if rows:
            conn.execute(sa.insert(audit_event), rows)

    return record


# --- before and after, in words ---

# bookkeeping a person does not need to read: who and when are the row's own columns
_HIDDEN = frozenset(
    {"id", "version", "created_at", "updated_at", "patient_id", "study_id"}
    | {"voided_at", "voided_by", "password_hash", "token_hash"}
)
# fields whose values are vocabulary tokens (model-spec section 1), said in words
_VOCABULARY = frozenset(
    {"kind", "modality", "site", "side", "ho", "soft_tissue", "calcification", "cortex"}
    | {"trabeculae", "vascularity", "uptake", "phase", "agent", "intent", "analyte"}
    | {"sex", "team", "role", "status", "rule"}
)
_FIELD_WORDS = {
    "mrn": "MRN",
    "ho": "HO",
    "brooker": "Brooker grade",
    "della_valle": "Della Valle class",
    "size_mm": "size (mm)",
    "ref_low": "reference low",
    "ref_high": "reference high",
    "voided_reason": "reason",
    "stop_reason": "reason stopped",
    "rows_added": "rows added",
    "patients": "patients given records",
    "shown": "patients shown",
    "what": "seen through",
    "search": "search",
    "source": "from",
    "detail": "details",
}
# the order a clinician reads a record in; other fields follow alphabetically
_FIELD_ORDER = (
    "mrn", "family_name", "given_name", "birth_date", "sex", "team", "kind", "modality",
    "accession", "agent", "intent", "analyte", "date", "start_date", "end_date", "site",
    "side", "phase", "ho", "ratio", "value", "unit", "status", "voided_reason", "files",
    "rows_added", "patients", "source", "what", "search", "shown",
)  # fmt: skip
_ENTITY_WORDS = {
    "bone_scan_measurement": "bone scan",
    "site_finding": "finding",
    "user_account": "user",
    "api_token": "API token",
    "dicom_pending_site": "DICOM site awaiting its finding",
}


def record_words(entity: str | None, entity_id: int | None) -> str:
    """The record an event names, in words: "imaging study 238", "patient"."""
    if not entity:
        return ""
    name = _ENTITY_WORDS.get(entity) or words(entity)
    return f"{name} {entity_id}" if entity_id is not None else name


def changes_of(
    action: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[Change, ...]:
    """What an event did, a line per field in words: for a correction or a void only
    the fields that changed (old → new); for anything else the values it recorded."""
    if before and after is not None:
        return _compared(before, after)
    recorded = after if after is not None else before or {}
    lines = [
        Change(_field(name), None, _value(name, recorded[name]))
        for name in _ordered(recorded)
        if name != "findings" and not _blank(recorded[name])
    ]
    for finding in recorded.get("findings") or []:
        lines.append(Change("finding", None, _finding(finding)))
    return tuple(lines)


def _compared(before: dict[str, Any], after: dict[str, Any]) -> tuple[Change, ...]:
    lines = []
    for name in _ordered({**before, **after}):
        old, new = before.get(name), after.get(name)
        if name == "findings" or old == new:
            continue
        shown_before = None if _blank(old) and name == "voided_reason" else _value(name, old)
        lines.append(Change(_field(name), shown_before, _value(name, new)))
    if "findings" in after:
        lines += _finding_changes(before.get("findings") or [], after.get("findings") or [])
    return tuple(lines)


def _finding_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Change]:
    was = {f.get("id"): f for f in before}
    now = {f.get("id"): f for f in after}
    lines = []
    for key, finding in now.items():
        old = was.get(key)
        if old is None:
            lines.append(Change("finding added", None, _finding(finding)))
            continue
        where = f"{words(finding.get('site'))} {words(finding.get('side'))}"
        for name in _ordered({**old, **finding}):
            if old.get(name) != finding.get(name):
                label = f"{where} {_field(name)}"
                lines.append(
                    Change(label, _value(name, old.get(name)), _value(name, finding.get(name)))
                )
    for key, finding in was.items():
        if key not in now:
            lines.append(Change("finding removed", None, _finding(finding)))
    return lines


def _finding(finding: dict[str, Any]) -> str:
    """A finding as a line: "hip left: HO present, cortex well defined, Brooker grade 2"."""
    head = (
        f"{words(finding.get('site'))} {words(finding.get('side'))}: HO {words(finding.get('ho'))}"
    )
    rest = [
        f"{_field(name)} {_value(name, finding[name])}"
        for name in _ordered(finding)
        if name not in ("site", "side", "ho") and not _blank(finding[name])
    ]
    return ", ".join([head, *rest])


def _ordered(record: dict[str, Any]) -> list[str]:
    names = [name for name in record if name not in _HIDDEN]
    rank = {name: i for i, name in enumerate(_FIELD_ORDER)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def _field(name: str) -> str:
    return _FIELD_WORDS.get(name) or words(name)


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _value(name: str, value: Any) -> str:
    if _blank(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_value(name, item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_value(key, item)}" for key, item in value.items())
    if name == "della_valle":
        return str(value).upper()
    if name in _VOCABULARY:
        return words(value)
    return str(value)
