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

Stopping (issue 14: Ctrl+C took 40 s with thousands due). APScheduler's
`shutdown(wait=False)` does not interrupt a running job, and its default thread
pool is joined when the interpreter exits, so the process used to wait for the job
in hand however long it took. Here a delivery run has a time budget (half its
interval), and `ReminderScheduler.stop()` asks the jobs to end, waits a bounded
time, then releases what is still claimed and hangs up SMTP (`Deliverer.abandon`).
Jobs run in daemon threads (`DaemonThreadExecutor`): a job that still runs after
that (a long plan, a hung database call) ends with the process, as in a crash,
which the design survives (plans are all or nothing, claims have leases).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.base import BaseExecutor, run_job
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
# A delivery run claims no more once this share of its interval is used, so it ends
# well before its next run is due, however many reminders wait (the rest go next).
RUN_SHARE_OF_INTERVAL = 0.5
# On shutdown: how long running jobs get to end by themselves (the message in hand),
# then how long after their claims are released and SMTP is hung up. Together well
# inside the 5 s a person waits for Ctrl+C.
STOP_GRACE_SECONDS = 2.0
CUT_OFF_SECONDS = 1.0


class DaemonThreadExecutor(BaseExecutor):
    """Runs each job run in a daemon thread of its own, so a job can never keep the
    process alive after the scheduler was stopped (see the module doc);
    `shutdown(wait=True)` still waits for the runs under way, as APScheduler's
    pools do."""

    def __init__(self) -> None:
        super().__init__()
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def run() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException:  # noqa: BLE001 - reported to the scheduler, as pools do
                _, error, traceback = sys.exc_info()
                self._run_job_error(job.id, error, traceback)
            else:
                self._run_job_success(job.id, events)
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"job {job.id}", daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        if wait:
            with self._threads_lock:
                running = list(self._threads)
            for thread in running:
                thread.join()


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
        self.stopping = self.deliverer.stopping  # one flag for the jobs and the deliverer
        self._running: Counter[str] = Counter()  # scheduled runs under way, by job
        self._idle = threading.Condition()

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

    @property
    def budget_seconds(self) -> float:
        return self.settings.deliver_interval_seconds * RUN_SHARE_OF_INTERVAL

    def deliver(self) -> DeliveryReport:
        report = self._deliverer.deliver(budget_seconds=self.budget_seconds)
        _log_report("deliver", report)
        return report

    def escalate(self) -> DeliveryReport:
        report = self._deliverer.escalate(budget_seconds=self.budget_seconds)
        _log_report("escalate", report)
        return report

    def digest(self) -> int:
        return self._deliverer.digest()

    def catch_up(self) -> DeliveryReport:
        """What a (re)start does first: plan, deliver what fell due, escalate."""
        self.plan()
        if self.stopping.is_set():
            return DeliveryReport()
        report = self.deliver()
        report.add(self.escalate())
        return report

    # -- running under a scheduler, and stopping --

    def scheduled(self, name: str, job: Callable[[], object]) -> Callable[[], None]:
        """`job` as a scheduler runs it: not at all once stopping, counted while it
        runs (for `stop`), its failure logged (`_guarded`)."""
        guarded = _guarded(name, job)

        def run() -> None:
            with self._idle:
                if self.stopping.is_set():
                    return
                self._running[name] += 1
            try:
                guarded()
            finally:
                with self._idle:
                    self._running[name] -= 1
                    self._idle.notify_all()

        run.__name__ = name
        return run

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no scheduled run is under way."""
        with self._idle:
            return self._idle.wait_for(lambda: not +self._running, timeout)

    def _busy(self) -> str:
        with self._idle:
            return ", ".join(sorted(+self._running))

    def stop(self, *, grace: float = STOP_GRACE_SECONDS, cut_off: float = CUT_OFF_SECONDS) -> bool:
        """End the jobs for a shutdown, within `grace + cut_off` seconds; True if no
        run is left. Runs under way end at their next reminder (`Deliverer.stop`);
        after `grace`, what they still hold unsent is released and SMTP hung up."""
        self._deliverer.stop()
        if self.wait_idle(grace):
            return True
        released = self._deliverer.abandon()
        log.warning(
            "stopping: %s still running after %.0f s; %d claimed reminders released "
            "unsent, SMTP sessions hung up",
            self._busy(), grace, released,
        )  # fmt: skip
        if self.wait_idle(cut_off):
            return True
        log.warning(
            "stopping: %s still running; it ends with the process (a plan writes all or "
            "nothing; a claim runs out after its lease)",
            self._busy(),
        )
        return False


def _log_report(job: str, report: DeliveryReport) -> None:
    if report.sent or report.escalated or report.closed or report.waiting or report.unconfirmed:
        log.info(
            "%s: %d sent (%d late), %d escalated, %d closed on re-check, %d waiting, "
            "%d unconfirmed",
            job, report.sent, report.late, report.escalated, report.closed, report.waiting,
            report.unconfirmed,
        )  # fmt: skip
    if report.deferred:  # out of time (or stopping): the next run goes on from there
        log.info("%s: %d claimed and handed back for the next run", job, report.deferred)
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
        jobs.scheduled("catch_up", jobs.catch_up),
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
            jobs.scheduled(name, job),
            "interval",
            seconds=every.total_seconds(),
            start_date=first,
            next_run_time=first + every,
            id=f"reminders.{name}",
            name=f"reminders {name}",
            replace_existing=True,
            **JOB_DEFAULTS,
        )
    # the board's stored site assessments: each day just after midnight in the clinic,
    # and a minute after start if they are not today's (services/site_assessments.py)
    scheduler.add_job(
        jobs.scheduled("assessments", lambda: refresh_stored_assessments(jobs)),
        "cron",
        hour=0,
        minute=5,
        timezone=jobs.protocol.reminders.zone,
        next_run_time=first + timedelta(minutes=1),
        id="assessments.refresh",
        name="stored site assessments, daily",
        replace_existing=True,
        **JOB_DEFAULTS,
    )
    add_pacs_job(scheduler, jobs, first=first)


# How often the PACS job looks whether a poll is due: the poll itself runs every
# HO_TRACKER_PACS_POLL_MINUTES, or after its back-off (1, 2, 4 ... 60 minutes) once
# it failed; the attempt time is kept in `pacs_poll_state` (tracker.pacs).
PACS_CHECK_SECONDS = 60


def add_pacs_job(
    scheduler: BaseScheduler,
    jobs: ReminderJobs,
    *,
    first: datetime,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Register the PACS poll (issue 17) when `HO_TRACKER_PACS_URL` is set; whether
    it was registered."""
    from tracker.pacs import PacsSettings, poll_if_due

    pacs = PacsSettings.from_environ(os.environ if environ is None else environ)
    if pacs is None:
        return False
    scheduler.add_job(
        jobs.scheduled(
            "pacs", lambda: poll_if_due(engine=jobs.engine, settings=pacs, now=jobs.clock())
        ),
        "interval",
        seconds=PACS_CHECK_SECONDS,
        start_date=first,
        next_run_time=first + timedelta(seconds=PACS_CHECK_SECONDS),
        id="pacs.poll",
        name="PACS poll (DICOMweb)",
        replace_existing=True,
        **JOB_DEFAULTS,
    )
    return True


def refresh_stored_assessments(jobs: ReminderJobs) -> object:
    """Store today's call for every site unless today's are stored (the board's)."""
    from tracker.services.site_assessments import refresh_if_stale

    today = clinic_day(jobs.clock(), jobs.protocol.reminders)
    return refresh_if_stale(engine=jobs.engine, as_of=today, protocol=jobs.protocol)


class ReminderScheduler(BackgroundScheduler):
    """A background scheduler of the reminder jobs that knows them, so that `stop`
    can ask them to end (APScheduler's own `shutdown` leaves running jobs be)."""

    def __init__(self, jobs: ReminderJobs) -> None:
        super().__init__(
            executors={"default": DaemonThreadExecutor()},
            job_defaults=JOB_DEFAULTS,
            timezone="UTC",
        )
        self.reminder_jobs = jobs

    def stop(self, *, grace: float = STOP_GRACE_SECONDS, cut_off: float = CUT_OFF_SECONDS) -> bool:
        """Shut down within `grace + cut_off` seconds (see `ReminderJobs.stop`)."""
        return stop_scheduler(self, self.reminder_jobs, grace=grace, cut_off=cut_off)


def stop_scheduler(
    scheduler: BaseScheduler,
    jobs: ReminderJobs,
    *,
    grace: float = STOP_GRACE_SECONDS,
    cut_off: float = CUT_OFF_SECONDS,
) -> bool:
    """No new runs, and the runs under way ended (`ReminderJobs.stop`); True if none
    is left running."""
    jobs.stopping.set()  # first: a run the scheduler starts meanwhile does nothing
    if scheduler.running:
        scheduler.shutdown(wait=False)
    return jobs.stop(grace=grace, cut_off=cut_off)


def start_background(jobs: ReminderJobs) -> ReminderScheduler:
    """Run the reminder jobs in threads of the calling process (the web app's); end
    them with `.stop()`."""
    scheduler = ReminderScheduler(jobs)
    add_jobs(scheduler, jobs)
    scheduler.start()
    return scheduler


def start_background_scheduler(
    *,
    engine: Engine,
    settings: Settings,
    protocol: Protocol | None = None,
    clock: Clock = utcnow,
) -> ReminderScheduler:
    """Start the reminder jobs in background threads of the calling process (the web
    app) and return the running scheduler; call `.stop()` on exit (it ends within
    a few seconds, whatever the jobs were doing).

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
    """`ho-tracker scheduler`: run the jobs in this process until Ctrl+C or SIGTERM,
    then stop them as the web app does (`stop_scheduler`)."""
    scheduler = BlockingScheduler(
        executors={"default": DaemonThreadExecutor()}, job_defaults=JOB_DEFAULTS, timezone="UTC"
    )
    add_jobs(scheduler, jobs)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            scheduler.start()
    finally:
        stop_scheduler(scheduler, jobs)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
