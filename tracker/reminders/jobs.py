"""The scheduled jobs (APScheduler 3): plan, deliver, escalate, daily digest.

The jobs keep no state of their own: what is due lives in the reminder rows, so
plain interval jobs in a memory job store are enough, and a restart loses nothing.
A catch-up run at start plans, delivers and escalates in that order: after downtime
it delivers everything that fell due meanwhile, marked late. `coalesce=True` turns
runs missed while the process was busy or asleep into one, and
`misfire_grace_time=None` runs a late job however late; `max_instances=1` keeps a
job from overlapping itself. Two processes (or the web app and a scheduler) may run
the same jobs on one database: delivery claims each reminder atomically.

`start_background_scheduler(engine=..., settings=...)` runs the same jobs inside
another process (the web app), `start_background` does so for ready-made jobs, and
`run_blocking` is `ho-tracker scheduler`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.engine import Engine

from tracker.config import Settings
from tracker.protocol import Protocol
from tracker.reminders.delivery import Clock, Deliverer, DeliveryReport, clinic_day
from tracker.reminders.planner import PlanResult, plan
from tracker.store.models import utcnow

log = logging.getLogger("tracker.reminders")

JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


@dataclass
class ReminderJobs:
    """The four jobs over one database, with an injectable clock (tests jump it)."""

    engine: Engine
    protocol: Protocol
    settings: Settings
    clock: Clock = utcnow
    deliverer: Deliverer | None = None

    def __post_init__(self) -> None:
        if self.deliverer is None:
            self.deliverer = Deliverer(
                engine=self.engine, protocol=self.protocol, settings=self.settings, clock=self.clock
            )

    @property
    def _deliverer(self) -> Deliverer:
        assert self.deliverer is not None
        return self.deliverer

    def plan(self) -> PlanResult:
        today = clinic_day(self.clock(), self.protocol.reminders)
        result = plan(engine=self.engine, as_of=today, protocol=self.protocol, now=self.clock())
        log.info(
            "plan %s: %d created (%d lapsed), %d satisfied, %d cancelled, %d reopened, "
            "%d now due",
            today, len(result.created), len(result.lapsed), len(result.satisfied),
            len(result.cancelled), len(result.reopened), result.now_due,
        )  # fmt: skip
        return result

    def deliver(self) -> DeliveryReport:
        report = self._deliverer.deliver()
        _log_report("deliver", report)
        return report

    def escalate(self) -> DeliveryReport:
        report = self._deliverer.escalate()
        _log_report("escalate", report)
        return report

    def digest(self) -> int:
        return self._deliverer.digest()

    def catch_up(self) -> DeliveryReport:
        """What a (re)start does first: plan, deliver what fell due, escalate."""
        self.plan()
        report = self.deliver()
        report.add(self.escalate())
        return report


def _log_report(job: str, report: DeliveryReport) -> None:
    if report.sent or report.escalated or report.closed or report.waiting or report.unconfirmed:
        log.info(
            "%s: %d sent (%d late), %d escalated, %d closed on re-check, %d waiting, "
            "%d unconfirmed",
            job, report.sent, report.late, report.escalated, report.closed, report.waiting,
            report.unconfirmed,
        )  # fmt: skip
    for line in summarise_problems(report.problems):
        log.warning("%s: %s", job, line)


def summarise_problems(problems: list[str], examples: int = 3) -> list[str]:
    """One line per distinct problem, with how many reminders it holds back.

    Problems read "reminder ID (MRN): what is wrong"; a unit without an SMTP server
    or a team without an address would otherwise log one line per reminder on every
    run."""
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        who, sep, what = problem.partition(": ")
        if not sep:
            who, what = "", problem
        grouped.setdefault(what, []).append(who)
    lines = []
    for what, whos in grouped.items():
        named = [w for w in whos if w]
        if len(whos) == 1:
            lines.append(f"{named[0]}: {what}" if named else what)
            continue
        shown = ", ".join(named[:examples]) + (", ..." if len(named) > examples else "")
        lines.append(f"{len(whos)} reminders ({shown}): {what}")
    return lines


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """A job that logs its failure instead of dying: the next run tries again."""

    def run() -> None:
        try:
            job()
        except Exception:  # noqa: BLE001 - a scheduler job must survive a bad run
            log.exception("job %s failed; it runs again at its next time", name)

    run.__name__ = name
    return run


def add_jobs(
    scheduler: BaseScheduler, jobs: ReminderJobs, *, start_now: datetime | None = None
) -> None:
    """Register the catch-up run (now) and the plan, deliver, escalate and digest jobs
    (each from one interval later) on `scheduler`."""
    settings = jobs.settings
    first = start_now or datetime.now().astimezone()
    deliver_every = timedelta(seconds=settings.deliver_interval_seconds)
    plan_every = timedelta(seconds=settings.plan_interval_seconds)
    # plan, then deliver what fell due while nothing ran, then escalate: in that order
    scheduler.add_job(
        _guarded("catch_up", jobs.catch_up),
        "date",
        run_date=first,
        id="reminders.catch_up",
        name="reminders catch-up after start",
        replace_existing=True,
        **JOB_DEFAULTS,
    )
    table = [
        ("plan", jobs.plan, plan_every),
        ("deliver", jobs.deliver, deliver_every),
        ("escalate", jobs.escalate, deliver_every),
        ("digest", jobs.digest, deliver_every),
    ]
    for name, job, every in table:
        scheduler.add_job(
            _guarded(name, job),
            "interval",
            seconds=every.total_seconds(),
            start_date=first,
            next_run_time=first + every,
            id=f"reminders.{name}",
            name=f"reminders {name}",
            replace_existing=True,
            **JOB_DEFAULTS,
        )


def start_background(jobs: ReminderJobs) -> BackgroundScheduler:
    """Run the reminder jobs in threads of the calling process (the web app's)."""
    scheduler = BackgroundScheduler(job_defaults=JOB_DEFAULTS, timezone="UTC")
    add_jobs(scheduler, jobs)
    scheduler.start()
    return scheduler


def start_background_scheduler(
    *,
    engine: Engine,
    settings: Settings,
    protocol: Protocol | None = None,
    clock: Clock = utcnow,
) -> BackgroundScheduler:
    """Start the reminder jobs in background threads of the calling process (the web
    app) and return the running scheduler; call `.shutdown()` on exit.

    The protocol defaults to `settings.protocol_file` (else the spec's), as for
    `ho-tracker scheduler`. Safe next to a separate scheduler process on the same
    database: delivery claims each reminder atomically.
    """
    if protocol is None:
        from tracker.services.assessment import protocol_from

        protocol = protocol_from(settings.protocol_file)
    jobs = ReminderJobs(engine=engine, protocol=protocol, settings=settings, clock=clock)
    return start_background(jobs)


def run_blocking(jobs: ReminderJobs) -> None:
    """`ho-tracker scheduler`: run the jobs in this process until stopped."""
    scheduler = BlockingScheduler(job_defaults=JOB_DEFAULTS, timezone="UTC")
    add_jobs(scheduler, jobs)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
