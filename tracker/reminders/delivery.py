"""Delivering due reminders: claimed atomically, re-checked, e-mailed once, logged.

The in-app worklist is the reminder rows themselves (`services.worklist`); e-mail
goes to the patient's team over SMTP. One delivery of one reminder:

1. claim: one conditional UPDATE takes a batch of due rows nobody holds (on
   PostgreSQL the candidates are picked `FOR UPDATE SKIP LOCKED`, so two
   schedulers never wait on or take the same rows; SQLite has a single writer).
   The claim carries a fresh token and a lease (`delivery_lease_seconds`): rows of
   a process that died are claimed again once the lease runs out.
2. re-check: the patient's records are read again and the rules asked whether the
   reminder still applies; a satisfied or no-longer-wanted one is closed, not sent.
3. address: the team's e-mail; a patient without a team or a team without an
   address is a clear message on the row, retried with back-off, never a crash.
4. hand over (see `mail`): the row becomes `sent`, with its Message-ID, in a commit
   made right before the final "." of SMTP DATA, and only if the claim token is
   still ours. So at most one process ever hands a reminder to the server.
5. record: accepted, or refused/failed (back to due, retried later with doubling
   back-off), each attempt in `delivery_attempt`.

One reminder never stops the others (issue 15): one that cannot be composed (an MRN
with a line break, imported before the input rules, cannot go into a Subject; a team
address stored badly is not an address) or whose handling fails in any other way is
marked failed with its reason (`last_error`, a `delivery_attempt` row), its claim
released, retried with the same back-off, and the run goes on with the next. A team
digest is the same: a team name goes into its headers with any control character
written out, and a digest that cannot be sent is logged with its reason and tried
again at the next run.

Escalation works the same way on `sent` rows neither satisfied nor acknowledged
`escalation_grace_days` after their due date, once (`escalated_at`).

A run works in batches and can be cut short (issue 14): by its time budget (the
scheduler gives it half the job's interval, so thousands due never make it overrun)
or by `stop()` (a shutdown), checked before each reminder. What it claimed and
did not send is released at once, for the next run; a message whose final dot is
not yet written when the stop comes is withheld.
`abandon()` (a shutdown that cannot wait) releases the unsent claims from another
thread and hangs up SMTP: every write is conditional on the claim token, so the
run in hand finds its claim gone and hands nothing over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time as timer
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from tracker.addresses import address_problem, shown
from tracker.config import Settings
from tracker.errors import NotFound
from tracker.protocol import Protocol, ReminderRules
from tracker.reminders import mail, rules
from tracker.reminders.mail import Outcome, SendResult, SmtpChannel, Unsendable, compose
from tracker.reminders.planner import (
    Recheck,
    cancel_reasons,
    cohort_sites,
    natural_keys,
    record_inputs,
)
from tracker.services.worklist import WorklistFilters, every_row
from tracker.staging.cohort_records import cohort_frames
from tracker.staging.records import PatientRecords
from tracker.store.loaders import patient_records
from tracker.store.models import (
    DeliveryAttempt,
    Patient,
    Reminder,
    Team,
    TeamDigest,
    table_of,
    utcnow,
)
from tracker.values import CONTROL_RE, control_reason
from tracker.vocab import ReminderStatus

S = ReminderStatus
Clock = Callable[[], datetime]
reminder, patient, team = table_of(Reminder), table_of(Patient), table_of(Team)
attempt_log, digest = table_of(DeliveryAttempt), table_of(TeamDigest)
r = reminder.c
log = logging.getLogger("tracker.reminders")
# The database itself is out of reach: no reminder's fault, so the run ends (its claims
# are released) rather than marking every reminder failed (issue 15: anything else
# that goes wrong with one reminder fails that reminder alone).
DATABASE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; they are stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# --- the clinic's clock -------------------------------------------------------------------


def clinic_day(now: datetime, rules: ReminderRules) -> date:
    return now.astimezone(rules.zone).date()


def send_time(due: date, rules: ReminderRules) -> datetime:
    """When a reminder due on `due` goes out: send_hour that day, clinic time, in UTC."""
    local = datetime.combine(due, time(rules.send_hour), tzinfo=rules.zone)
    return local.astimezone(UTC)


def last_sendable_day(now: datetime, rules: ReminderRules) -> date:
    """The latest due date whose send time has come by `now`."""
    today = clinic_day(now, rules)
    return today if send_time(today, rules) <= now else today - timedelta(days=1)


def is_late(sent: datetime, due: date, rules: ReminderRules) -> bool:
    return sent > send_time(due, rules) + timedelta(minutes=rules.late_after_minutes)


# --- what a run did -------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    late: int = 0
    escalated: int = 0
    closed: int = 0  # satisfied or cancelled by the re-check, not sent
    waiting: int = 0  # refused, failed or without an address: retried later
    unconfirmed: int = 0
    deferred: int = 0  # claimed, then released unsent (stopped, out of time): next run
    problems: list[str] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        names = ("sent", "late", "escalated", "closed", "waiting", "unconfirmed", "deferred")
        for name in names:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems


@dataclass(frozen=True)
class _Kind:
    """A reminder e-mail or its escalation: what may be claimed, what hand-over sets."""

    name: str
    claimable: Callable[[datetime, ReminderRules], Any]
    handed: Callable[[datetime, str, str, bool], dict[str, Any]]
    undo: dict[str, Any]
    accepted_column: str
    message_id: Callable[[int, str], str]
    status_before: ReminderStatus
    unsent: Callable[[], Any]  # a claimed row not (yet) handed over


def _reminder_claimable(now: datetime, rules: ReminderRules) -> Any:
    return sa.and_(r.status == S.due.value, r.due <= last_sendable_day(now, rules))


def _escalation_claimable(now: datetime, rules: ReminderRules) -> Any:
    grace = timedelta(days=rules.escalation_grace_days)
    return sa.and_(
        r.status == S.sent.value,
        r.escalated_at.is_(None),
        r.due <= last_sendable_day(now, rules) - grace,
    )


REMINDER = _Kind(
    name="reminder",
    claimable=_reminder_claimable,
    handed=lambda now, mid, to, late: {
        "status": S.sent.value,
        "sent_at": now,
        "message_id": mid,
        "recipient": to,
        "late": late,
    },
    undo={"status": S.due.value, "sent_at": None, "late": False},
    accepted_column="accepted_at",
    message_id=lambda rid, domain: f"<reminder-{rid}@{domain}>",
    status_before=S.due,
    unsent=lambda: r.status == S.due.value,
)
ESCALATION = _Kind(
    name="escalation",
    claimable=_escalation_claimable,
    handed=lambda now, mid, to, late: {"escalated_at": now, "escalation_message_id": mid},
    undo={"escalated_at": None},
    accepted_column="escalation_accepted_at",
    message_id=lambda rid, domain: f"<reminder-{rid}-escalation@{domain}>",
    status_before=S.sent,
    unsent=lambda: sa.and_(r.status == S.sent.value, r.escalated_at.is_(None)),
)

BATCH = 20  # reminders claimed at a time: each is held (leased) until sent or released


class Deliverer:
    """Delivers due reminders and escalations for one process (`worker`)."""

    def __init__(
        self,
        *,
        engine: Engine,
        protocol: Protocol,
        settings: Settings,
        channel: SmtpChannel | None = None,
        clock: Clock = utcnow,
        worker: str | None = None,
    ) -> None:
        self.engine, self.protocol, self.settings = engine, protocol, settings
        self.rules = protocol.reminders
        if channel is None and settings.smtp_host:
            channel = SmtpChannel(settings)
        self.channel = channel
        self.clock = clock
        self.worker = worker or worker_name()
        self.domain = settings.message_id_domain or (
            settings.smtp_from.rpartition("@")[2].strip("> ") or "ho-tracker.invalid"
        )
        self.stopping = threading.Event()  # set by stop(): runs end before their next one
        self._held: dict[str, _Kind] = {}  # claim tokens of the runs under way
        self._pace: dict[str, float] = {}  # seconds per reminder in the last batch, by kind
        self._held_lock = threading.Lock()
        self.digest_problems: list[str] = []  # why the last digest run left a team out

    # -- jobs --

    def deliver(
        self, *, batch: int = BATCH, max_batches: int = 1000, budget_seconds: float | None = None
    ) -> DeliveryReport:
        """Send every due reminder whose send time has come (and retry failures); with
        `budget_seconds`, claim no more and release the rest once that time is used
        (at least one reminder is tried), and the next run goes on from there."""
        if self.stopping.is_set():
            return DeliveryReport()
        self.promote()
        return self._run(REMINDER, batch, max_batches, budget_seconds)

    def escalate(
        self, *, batch: int = BATCH, max_batches: int = 1000, budget_seconds: float | None = None
    ) -> DeliveryReport:
        """Escalate, once, sent reminders still open after the grace period."""
        return self._run(ESCALATION, batch, max_batches, budget_seconds)

    def stop(self) -> None:
        """Ask the runs under way to end (a shutdown): each finishes the reminder in
        hand, or withholds it if its final dot is not yet written, releases the rest
        of its batch and returns; later runs do nothing."""
        self.stopping.set()

    def abandon(self) -> int:
        """Stop, from another thread, without waiting for the runs under way: release
        every reminder they hold unsent and hang up their SMTP sessions. Safe at any
        moment: a run's hand-over then finds its claim gone and writes no dot.
        Returns how many reminders were released."""
        self.stop()
        with self._held_lock:
            held = list(self._held.items())
        released = sum(self._release_unsent(kind, token) for token, kind in held)
        abort = getattr(self.channel, "abort", None)
        if abort is not None:
            abort()
        return released

    def promote(self) -> int:
        """Pending reminders become due on their date (clinic time)."""
        today = clinic_day(self.clock(), self.rules)
        with self.engine.begin() as conn:
            result = conn.execute(
                reminder.update()
                .where(r.status == S.pending.value, r.due <= today)
                .values(status=S.due.value, version=r.version + 1, updated_at=self.clock())
            )
        return result.rowcount or 0

    def _run(
        self, kind: _Kind, batch: int, max_batches: int, budget_seconds: float | None
    ) -> DeliveryReport:
        report = DeliveryReport()
        deadline = None if budget_seconds is None else timer.monotonic() + budget_seconds
        tried = 0

        def must_end() -> bool:  # before each claim and each reminder, never the first
            out_of_time = deadline is not None and timer.monotonic() >= deadline
            return self.stopping.is_set() or (tried > 0 and out_of_time)

        for _ in range(max_batches):
            if must_end():
                break
            token = uuid.uuid4().hex
            with self._held_lock:  # before the claim, so `abandon` can always see it
                self._held[token] = kind
            started, before = timer.monotonic(), tried
            try:
                _, ids = self.claim(kind, self._claim_size(kind, batch, deadline), token=token)
                rows = self._load(ids, token)
                verdicts, broken = self._recheck_each(rows, clinic_day(self.clock(), self.rules))
                for rid in ids:
                    if must_end():
                        break
                    tried += 1
                    if rid in broken:
                        self._failed_unexpectedly(kind, rid, token, broken[rid], report)
                    elif rid in verdicts:
                        self._deliver_isolated(kind, rid, token, verdicts[rid], report)
            finally:
                report.deferred += self._release_unsent(kind, token)
                with self._held_lock:
                    self._held.pop(token, None)
            if tried > before:
                self._pace[kind.name] = (timer.monotonic() - started) / (tried - before)
            if not ids:
                break
        return report

    def _claim_size(self, kind: _Kind, batch: int, deadline: float | None) -> int:
        """A batch, or fewer when the time left would not send that many at the pace
        of the last batch: claiming (and re-checking) what is then released unsent
        is work thrown away."""
        pace = self._pace.get(kind.name)
        if deadline is None or not pace:
            return batch
        return max(1, min(batch, int((deadline - timer.monotonic()) / pace)))

    def _release_unsent(self, kind: _Kind, token: str) -> int:
        """Hand back what `token` still holds and has not handed over; it is claimable
        at once (no attempt counted, no back-off)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                reminder.update()
                .where(r.claim_token == token, kind.unsent())
                .values(**self._release(), version=r.version + 1)
            )
        return result.rowcount or 0

    # -- 1. claim --

    def claim(self, kind: _Kind, limit: int, *, token: str | None = None) -> tuple[str, list[int]]:
        now = self.clock()
        token = token or uuid.uuid4().hex
        free = sa.or_(r.claimed_until.is_(None), r.claimed_until < now)
        ready = sa.or_(r.next_attempt_at.is_(None), r.next_attempt_at <= now)
        candidates = (
            sa.select(r.id)
            .where(kind.claimable(now, self.rules), free, ready)
            .order_by(r.due, r.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            reminder.update()
            .where(r.id.in_(candidates.scalar_subquery()), free)
            .values(
                claimed_by=self.worker,
                claim_token=token,
                claimed_until=now + timedelta(seconds=self.settings.delivery_lease_seconds),
                version=r.version + 1,
            )
            .returning(r.id)
        )
        with self.engine.begin() as conn:
            ids = sorted(conn.execute(claim).scalars())
        return token, ids

    # -- 2-5. one reminder --

    def _deliver_isolated(
        self,
        kind: _Kind,
        rid: int,
        token: str,
        verdict: tuple[str, str | None] | None,
        report: DeliveryReport,
    ) -> None:
        """`_deliver_one`, where anything but the database going away fails this
        reminder alone."""
        try:
            self._deliver_one(kind, rid, token, verdict, report)
        except DATABASE_DOWN:
            raise
        except Exception as error:  # noqa: BLE001 - one reminder must not stop the run
            log.exception("%s %d could not be delivered", kind.name, rid)
            self._failed_unexpectedly(kind, rid, token, error, report)

    def _failed_unexpectedly(
        self, kind: _Kind, rid: int, token: str, error: BaseException, report: DeliveryReport
    ) -> None:
        """Mark a reminder whose handling raised `error` failed, with the error as its
        reason, retried with back-off. Writes only while the claim is ours and the row
        is as it was claimed, so one already handed over is never sent again."""
        problem = f"could not be delivered ({type(error).__name__}: {shown(str(error))})"
        try:
            with self.engine.connect() as conn:
                found = conn.execute(sa.select(r.attempts).where(r.id == rid)).scalar()
            self._retry_later(rid, token, kind, Outcome.failed.value, problem, int(found or 0))
        except DATABASE_DOWN:
            raise
        except Exception:  # noqa: BLE001 - released unsent at the end of the batch
            log.exception("%s %d: its failure could not be recorded", kind.name, rid)
        report.waiting += 1
        report.problems.append(f"reminder {rid}: {problem}")

    def _recheck_each(
        self, rows: list[dict[str, Any]], today: date
    ) -> tuple[dict[int, tuple[str, str | None] | None], dict[int, Exception]]:
        """`_recheck` for the batch; if it fails, once per reminder, so that a patient
        whose records cannot be read holds back its own reminders only (returned with
        the error, to be marked failed)."""
        try:
            return self._recheck(rows, today), {}
        except DATABASE_DOWN:
            raise
        except Exception:  # noqa: BLE001 - find the reminder it is about
            log.exception("re-checking a batch failed; re-checking its reminders one by one")
        verdicts: dict[int, tuple[str, str | None] | None] = {}
        broken: dict[int, Exception] = {}
        for row in rows:
            try:
                verdicts.update(self._recheck([row], today))
            except DATABASE_DOWN:
                raise
            except Exception as error:  # noqa: BLE001 - this reminder alone
                broken[row["id"]] = error
        return verdicts, broken

    def _unsendable(
        self, kind: _Kind, rid: int, token: str, row: dict[str, Any], problem: str,
        report: DeliveryReport,
    ) -> None:  # fmt: skip
        """A reminder whose e-mail cannot be composed: failed, with the reason, retried
        with back-off (it goes out once the value is corrected)."""
        self._retry_later(rid, token, kind, Outcome.failed.value, problem, row["attempts"])
        report.waiting += 1
        report.problems.append(f"reminder {rid} ({shown(row['mrn'])}): {problem}")

    def _deliver_one(
        self,
        kind: _Kind,
        rid: int,
        token: str,
        verdict: tuple[str, str | None] | None,
        report: DeliveryReport,
    ) -> None:
        """One claimed reminder, with the batch's re-check `verdict` on it."""
        found = self._load([rid], token)  # as it is now, not when the batch began
        if not found or found[0]["status"] != kind.status_before.value:
            return  # claimed by someone else meanwhile, or closed (say, by a re-plan)
        row = found[0]
        now = self.clock()
        if verdict is not None:
            status, reason = verdict
            self._finish(
                rid,
                token,
                kind,
                "stale",
                f"{status}: {reason or 'matching record logged'}",
                {"status": status, "cancel_reason": reason, "closed_at": now},
            )
            report.closed += 1
            return
        recipient, problem = self._recipient(row, kind)
        if recipient is not None and problem is not None:  # an address stored badly
            self._unsendable(kind, rid, token, row, problem, report)
            return
        if self.channel is None:  # the first thing to fix, whatever the team's address
            problem = (
                "no SMTP server configured, so reminders stay on the worklist: set "
                "HO_TRACKER_SMTP_HOST (and _PORT, _TLS, _USER, _PASSWORD, _FROM) to e-mail them"
            )
        if recipient is None or self.channel is None:
            problem = problem or "no recipient"  # _recipient names one when it has none
            self._retry_later(rid, token, kind, "no_address", problem, row["attempts"])
            report.waiting += 1
            report.problems.append(f"reminder {rid} ({shown(row['mrn'])}): {problem}")
            return
        message_id = kind.message_id(rid, self.domain)
        try:
            message = self._message(kind, row, recipient, message_id, now)
        except Unsendable as unsendable:
            self._unsendable(kind, rid, token, row, str(unsendable), report)
            return
        late = is_late(now, row["due"], self.rules)

        def hand_over(write_dot: Callable[[], None]) -> bool:
            if self.stopping.is_set():  # withheld: no dot, the server drops the message
                return False
            return self._hand_over(rid, token, kind, message_id, recipient, late, write_dot)

        result = self.channel.send(message, recipient, hand_over)
        if self.stopping.is_set() and not result.handed_over:
            return  # withheld or hung up by a shutdown: released unsent, no attempt
        self._record(kind, rid, token, row, result, late, report)

    def _load(self, ids: list[int], token: str) -> list[dict[str, Any]]:
        """The rows of `ids` we still hold, with the patient's mrn and team."""
        if not ids:
            return []
        query = (
            sa.select(
                reminder,
                patient.c.mrn,
                patient.c.team.label("team_name"),
                team.c.email.label("team_email"),
                team.c.escalation_email.label("team_escalation_email"),
            )
            .select_from(reminder.join(patient).outerjoin(team, team.c.name == patient.c.team))
            .where(r.id.in_(ids), r.claim_token == token)
            .order_by(r.id)
        )
        with self.engine.connect() as conn:
            return [dict(found) for found in conn.execute(query).mappings()]

    def _recheck(
        self, rows: list[dict[str, Any]], today: date
    ) -> dict[int, tuple[str, str | None] | None]:
        """For each row: None if the reminder still applies, else (new status, reason).
        The patients' records are read again and the rules asked once for the batch."""
        records: dict[str, PatientRecords] = {}
        with Session(self.engine) as session:
            for mrn in sorted({row["mrn"] for row in rows}):
                with contextlib.suppress(NotFound):  # voided or deleted: cancelled below
                    records[mrn] = patient_records(session, mrn)
        verdicts: dict[int, tuple[str, str | None] | None] = {
            row["id"]: (S.cancelled.value, "the patient is no longer stored")
            for row in rows
            if row["mrn"] not in records
        }
        asked = [row for row in rows if row["mrn"] in records]
        keys = [(row["mrn"], row["rule"], row["site"], row["side"], row["due"]) for row in asked]
        answers = recheck_many(list(records.values()), keys, as_of=today, protocol=self.protocol)
        for row, answer in zip(asked, answers, strict=True):
            verdicts[row["id"]] = (
                None if answer.status == S.due else (answer.status.value, answer.reason)
            )
        return verdicts

    def _recipient(self, row: dict[str, Any], kind: _Kind) -> tuple[str | None, str | None]:
        """(address, None); (None, why there is none); or (address, why it cannot be
        used): an address stored before the address rule that is not one."""
        mrn, name = shown(row["mrn"]), row["team_name"]
        if name is None:
            return None, (
                f"patient {mrn} has no team, so its reminders have nowhere to go: "
                f"run `ho-tracker patient set-team {mrn} TEAM`"
            )
        name = shown(name)
        address, option = row["team_email"], "--email"
        if kind is ESCALATION and row["team_escalation_email"]:
            address, option = row["team_escalation_email"], "--escalation-email"
        if not address:
            return None, (
                f"team {name} has no delivery address: run "
                f"`ho-tracker teams add {name} --email ADDRESS`"
            )
        problem = address_problem(address)
        if problem is not None:
            which = "escalation e-mail address" if option != "--email" else "e-mail address"
            return address, (
                f"team {name}'s {which} '{shown(address)}' {problem}: set it again with "
                f"`ho-tracker teams add {name} {option} ADDRESS`"
            )
        return address, None

    def _message(
        self, kind: _Kind, row: dict[str, Any], recipient: str, message_id: str, now: datetime
    ) -> Any:
        found = CONTROL_RE.search(row["mrn"])
        if found:  # stored before the input rules; never a raw CR/LF in the Subject
            raise Unsendable(
                f"the MRN '{shown(row['mrn'])}' {control_reason(found.group())} in an "
                "e-mail: correct the patient's MRN, and the reminder goes out at the next try"
            )
        what, where = mail.reminder_words(row["rule"], row["site"], row["side"])
        due = row["due"].isoformat()
        if kind is ESCALATION:
            subject = f"ESCALATION: {what} for {row['mrn']}{where} due {due} is still open"
            lead = (
                f"This reminder was sent {aware(row['sent_at']):%Y-%m-%d} and is neither "
                f"satisfied nor acknowledged {self.rules.escalation_grace_days} days after "
                "its due date."
            )
        else:
            subject = f"{what} for {row['mrn']}{where} due {due}"
            lead = "A reminder from the HO tracker."
        body = "\n".join(
            [
                lead,
                "",
                f"Patient: {row['mrn']}",
                f"Team: {shown(row['team_name'] or '')}",
                f"What: {what}{where}",
                f"Due: {due}",
                f"Why: {mail.why_words(row['detail'])}",
                "",
                "Log the matching record, or acknowledge it with "
                f"`ho-tracker reminders ack {row['id']}`.",
            ]
        )
        return compose(
            sender=self.settings.smtp_from,
            recipient=recipient,
            subject=subject,
            body=body,
            message_id=message_id,
            when=now,
            headers={"X-HO-Tracker-Reminder": str(row["id"]), "Auto-Submitted": "auto-generated"},
        )

    # -- conditional writes: each only while our claim token is on the row --

    def _update(
        self, conn: Connection, rid: int, token: str, status: ReminderStatus, values: dict[str, Any]
    ) -> bool:
        result = conn.execute(
            reminder.update()
            .where(r.id == rid, r.claim_token == token, r.status == status.value)
            .values(**values, version=r.version + 1, updated_at=self.clock())
        )
        return result.rowcount == 1

    def _log(self, conn: Connection, rid: int, kind: _Kind, outcome: str, detail: str) -> None:
        conn.execute(
            attempt_log.insert().values(
                reminder_id=rid,
                kind=kind.name,
                attempted_at=self.clock(),
                outcome=outcome,
                worker=self.worker[:100],
                detail=detail[:500],
            )
        )

    def _hand_over(
        self,
        rid: int,
        token: str,
        kind: _Kind,
        message_id: str,
        recipient: str,
        late: bool,
        write_dot: Callable[[], None],
    ) -> bool:
        """Commit "handed over" and write the final dot right behind the commit; False
        (and no dot) if the claim is gone."""
        values = kind.handed(self.clock(), message_id, recipient, late)
        with self.engine.connect() as conn:
            transaction = conn.begin()
            if not self._update(conn, rid, token, kind.status_before, values):
                transaction.rollback()
                return False
            if commit_then(conn, write_dot):
                if transaction.is_active:  # committed on the server already: tidy up
                    transaction.commit()
                return True
        # The commit failed after the dot went out: the server may hold the message,
        # so the row must say sent. We still hold the claim; write it again.
        with self.engine.begin() as conn:
            self._update(conn, rid, token, kind.status_before, values)
        return True

    def _release(self) -> dict[str, Any]:
        return {"claimed_by": None, "claim_token": None, "claimed_until": None}

    def _finish(
        self, rid: int, token: str, kind: _Kind, outcome: str, detail: str, values: dict[str, Any]
    ) -> None:
        with self.engine.begin() as conn:
            if self._update(conn, rid, token, kind.status_before, {**values, **self._release()}):
                self._log(conn, rid, kind, outcome, detail)

    def _retry_later(
        self, rid: int, token: str, kind: _Kind, outcome: str, problem: str, attempts: int
    ) -> None:
        delay = min(
            self.settings.retry_max_seconds,
            self.settings.retry_base_seconds * 2 ** max(attempts, 0),
        )
        values = {
            "attempts": attempts + 1,
            "last_error": problem[:500],
            "next_attempt_at": self.clock() + timedelta(seconds=delay),
        }
        self._finish(rid, token, kind, outcome, problem, values)

    def _record(
        self,
        kind: _Kind,
        rid: int,
        token: str,
        row: dict[str, Any],
        result: SendResult,
        late: bool,
        report: DeliveryReport,
    ) -> None:
        sent_status = S.sent  # the row's status once handed over
        if result.outcome == Outcome.lost_claim:
            return
        if result.outcome == Outcome.accepted:
            now = self.clock()
            with self.engine.begin() as conn:
                values = {
                    kind.accepted_column: now,
                    "attempts": row["attempts"] + 1,
                    "last_error": None,
                    "next_attempt_at": None,
                    **self._release(),
                }
                if self._update(conn, rid, token, sent_status, values):
                    self._log(conn, rid, kind, "accepted", result.detail)
            if kind is ESCALATION:
                report.escalated += 1
            else:
                report.sent += 1
                report.late += int(late)
            return
        if result.outcome == Outcome.unconfirmed:
            with self.engine.begin() as conn:
                values = {"last_error": result.detail[:500], **self._release()}
                if self._update(conn, rid, token, sent_status, values):
                    self._log(conn, rid, kind, "unconfirmed", result.detail)
            report.unconfirmed += 1
            report.problems.append(f"reminder {rid}: {result.detail}")
            return
        # refused or failed: back to where it was, retried later with back-off
        if result.handed_over:
            with self.engine.begin() as conn:
                self._update(conn, rid, token, sent_status, dict(kind.undo))
        self._retry_later(rid, token, kind, result.outcome.value, result.detail, row["attempts"])
        report.waiting += 1
        report.problems.append(f"reminder {rid} ({shown(row['mrn'])}): {result.detail}")

    # -- the daily digest --

    def digest(self) -> int:
        """Once a clinic day, from send_hour: each team's open reminders in one e-mail."""
        now = self.clock()
        if self.channel is None or send_time(clinic_day(now, self.rules), self.rules) > now:
            return 0
        day = clinic_day(now, self.rules)
        with self.engine.connect() as conn:
            teams = conn.execute(
                sa.select(team.c.name, team.c.email).where(team.c.email.is_not(None))
            ).all()
            done = set(conn.execute(sa.select(digest.c.team).where(digest.c.day == day)).scalars())
        sent = 0
        self.digest_problems = []
        for name, address in teams:
            if name in done or self.stopping.is_set():
                continue
            problem = address_problem(address)
            if problem is not None:
                self._digest_failed(
                    name,
                    f"its e-mail address '{shown(address)}' {problem}: set it again with "
                    f"`ho-tracker teams add {shown(name)} --email ADDRESS`",
                )
                continue
            items = list(
                every_row(
                    engine=self.engine,
                    today=day,
                    filters=WorklistFilters(team=name),
                    statuses=(S.due.value, S.sent.value),  # pending ones are not due yet
                )
            )
            if not items:
                continue
            try:
                sent += self._send_digest(name, address, day, items, now)
            except DATABASE_DOWN:
                raise
            except Exception as error:  # noqa: BLE001 - one team must not stop the others
                self._digest_failed(name, f"{type(error).__name__}: {shown(str(error))}")
        return sent

    def _digest_failed(self, name: str, problem: str) -> None:
        """A team's digest not sent today (yet): said in the log, tried at the next run."""
        said = f"the daily digest of team {shown(name)} was not sent: {problem}"
        self.digest_problems.append(said)
        log.warning("digest: %s", said)

    def _send_digest(
        self, name: str, address: str, day: date, items: list[dict[str, Any]], now: datetime
    ) -> int:
        assert self.channel is not None
        message_id = f"<digest-{message_id_part(name)}-{day.isoformat()}@{self.domain}>"
        lines = [f"Open reminders for {shown(name)} on {day.isoformat()}: {len(items)}", ""]
        lines += [mail.digest_line(i) for i in items]
        message = compose(
            sender=self.settings.smtp_from,
            recipient=address,
            subject=mail.digest_subject(name, day.isoformat(), len(items)),
            body="\n".join(lines),
            message_id=message_id,
            when=now,
            headers={"Auto-Submitted": "auto-generated"},
        )

        def claim_day(write_dot: Callable[[], None]) -> bool:  # one digest per team and day
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        digest.insert().values(
                            team=name,
                            day=day,
                            message_id=message_id,
                            reminders=len(items),
                            sent_at=self.clock(),
                        )
                    )
            except sa.exc.IntegrityError:
                return False
            write_dot()
            return True

        result = self.channel.send(message, address, claim_day)
        if result.handed_over and result.outcome == Outcome.refused:
            with self.engine.begin() as conn:  # not taken: let a later run try again
                conn.execute(digest.delete().where(digest.c.team == name, digest.c.day == day))
        if result.outcome in (Outcome.refused, Outcome.failed):
            self._digest_failed(name, result.detail)
        return int(result.outcome == Outcome.accepted)


def message_id_part(text: str) -> str:
    """`text` as part of a Message-ID: letters, digits, '-' and '_' as they are, any
    other character (a space, a line break) as %XX of its UTF-8 bytes; stable, so the
    same team's digest of a day always has the same Message-ID."""
    return "".join(
        c if c.isascii() and (c.isalnum() or c in "-_") else
        "".join(f"%{b:02X}" for b in c.encode())
        for c in text
    )  # fmt: skip


def recheck_many(
    records: Sequence[PatientRecords],
    keys: Sequence[tuple[str, str, str | None, str | None, date]],
    *,
    as_of: date,
    protocol: Protocol,
) -> list[Recheck]:
    """`planner.recheck` for many reminders (mrn, rule, site, side, due) of the
    patients in `records` at once: whether each still applies on as_of, asked of the
    same rules over the same cohort frames as `plan` (model-spec section 9), so a batch
    costs one pass of the rules rather than one per reminder."""
    if not keys:
        return []
    frames = cohort_frames(records)
    by_name = {f.name: getattr(frames, f.name) for f in fields(frames)}
    # the bedside rules' inputs (v2), which the cohort frames do not hold: without them
    # a reminder from an examination's signs or a DVT query would look unwanted and be
    # cancelled at the moment of sending
    per_patient = [rules.records_frames(r) for r in records]
    for name in ("exams", "d_dimers"):
        by_name[name] = pd.concat([p[name] for p in per_patient], ignore_index=True)
    found = pd.concat([p["findings"] for p in per_patient], ignore_index=True)
    asked_dvt = (found["modality"] == "ultrasound") & (found["indication"] == "dvt_query")
    by_name["dvt_studies"] = found.loc[asked_dvt.to_numpy(bool), ["mrn", "date"]]
    inputs = record_inputs(by_name)
    cut = rules.cut_at(inputs, as_of, protocol)
    cut = cut.with_sites(cohort_sites(frames, as_of, protocol))
    asked = pd.DataFrame(
        {
            "mrn": pd.Series([k[0] for k in keys], dtype=object),
            "rule": pd.Series([k[1] for k in keys], dtype=object),
            "site": pd.Series([k[2] for k in keys], dtype=object),
            "side": pd.Series([k[3] for k in keys], dtype=object),
            "due": np.array([rules.day_number(k[4]) for k in keys], dtype="float64"),
        }
    )
    done = rules.satisfied(asked, inputs, as_of, protocol, cut)
    wanted, _ = rules.wanted_keys(inputs, as_of, protocol, cut)
    still = np.isin(natural_keys(asked, cut), natural_keys(wanted, cut))
    reasons = iter(cancel_reasons(asked[~done & ~still], cut, as_of, protocol))
    return [
        Recheck(S.satisfied) if is_done else Recheck(S.due) if applies else
        Recheck(S.cancelled, next(reasons))
        for is_done, applies in zip(done, still, strict=True)
    ]  # fmt: skip


def commit_then(conn: Connection, action: Callable[[], None]) -> bool:
    """Commit the connection's transaction and run `action` (write the final dot) the
    moment the COMMIT has left, before waiting for its answer; True if it committed.

    On PostgreSQL (psycopg) the COMMIT is sent on the wire and the dot follows at
    once, so the span in which a killed process has committed "sent" but not handed
    the message over shrinks from a commit round trip (with its WAL flush) to two
    system calls. Elsewhere (SQLite: one local writer) it commits, then acts.
    """
    raw = conn.connection.dbapi_connection
    pgconn = getattr(raw, "pgconn", None)
    if conn.dialect.name != "postgresql" or pgconn is None:
        conn.commit()
        action()
        return True
    from psycopg.pq import ExecStatus

    pgconn.send_query(b"COMMIT")
    while pgconn.flush():  # a non-blocking connection may hold some of it back
        select.select([], [pgconn.socket], [], 1.0)
    try:
        action()
    finally:
        ok = True
        while (result := pgconn.get_result()) is not None:
            ok = ok and result.status == ExecStatus.COMMAND_OK
    return ok
