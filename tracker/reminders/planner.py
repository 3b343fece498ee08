"""Planning: the reminders the records call for, against the reminders stored.

Reminders are derived from the data, never from memory: every plan reads the whole
story (the `read_cohort` tables, lab results last), finds every site's stage and
readiness (`sites`: the cohort staging, column-wise, and for ready sites the day they
became ready), asks the rules what is wanted up to as_of + horizon (keys only: detail
texts are written for new rows alone), compares wanted with stored on the natural
key packed into one integer (a hash semi-join, no loop over patients), and then
- inserts wanted reminders that are not stored yet (natural key: patient, rule,
  site, side, due; the database refuses a second copy, so two planners racing
  each other still create one row), unless the record that closes them is logged;
  one due more than `lapse_after_days` before as_of is stored `lapsed` (v2: a unit
  importing years of history keeps the adherence record but is not sent years of
  reminders), column-wise like every other status;
- marks open (and lapsed) reminders satisfied when the matching record is logged
  (closed loop: a record that arrives late still shows the care was done);
- cancels open reminders that no longer apply, keeping the row and the reason
  (screening stops once HO is found: model-spec section 9); lapsed ones stay lapsed;
- reopens satisfied or cancelled reminders that are wanted again and that no record
  closes any more (the record that closed them was voided or corrected, or the HO
  finding that stopped screening was), in the state they would have had;
- turns pending reminders due on their date.
`plan_patient` does the same for one patient's rows alone, fast enough to follow a
record saved through a form or the API in the same request.
Writes are bulk: INSERTs of the new rows only, many rows per statement as one JSON
text, and set-based UPDATEs (one per reason and chunk of rows) for status changes.
They are one transaction, made on a thread of their own (`_Writes`) while the plan
goes on: the rules ask in three rounds (records alone, the sites' stage, the day a
site became ready), and each round's rows are inserted while the next is worked out
(the lab results, read by staging alone, are read while the first round is).
Planning twice changes nothing the second time. A dry run computes the same
changes and writes none, so a protocol change can be previewed.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from tracker.errors import NotFound
from tracker.protocol import Protocol
from tracker.reminders import rules, sites
from tracker.staging import records as rec
from tracker.staging.cohort_records import cohort_frames
from tracker.staging.readiness import Readiness
from tracker.store.loaders import TABLES, CohortFrames, patient_records, read_frame, read_table
from tracker.store.models import Patient, Reminder, table_of, utcnow
from tracker.vocab import ReminderRule, ReminderStatus

reminder = table_of(Reminder)
patient = table_of(Patient)
OPEN = (ReminderStatus.pending, ReminderStatus.due, ReminderStatus.sent)
S = ReminderStatus
REOPENABLE = (S.satisfied, S.cancelled)  # closed by the records; acknowledged is a person's


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in rules.KEY})


@dataclass
class PlanResult:
    """What a plan did (or, dry, would do): one frame per kind of change.

    Each frame has mrn, rule, site, side, due (date), plus detail or reason; `created`
    also the status each new row got (pending, due, or lapsed: `lapsed`).
    `reopened` holds closed reminders that are wanted again and no longer closed by a
    record (with the status they got back).
    """

    as_of: date
    created: pd.DataFrame
    satisfied: pd.DataFrame
    cancelled: pd.DataFrame
    now_due: int = 0
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    reopened: pd.DataFrame = field(default_factory=_no_rows)

    @property
    def lapsed(self) -> pd.DataFrame:
        """The created reminders stored lapsed: long past when first planned (v2)."""
        if "status" not in self.created:
            return self.created.iloc[:0]
        return self.created[(self.created["status"] == S.lapsed).to_numpy(bool)]

    @property
    def rows_written(self) -> int:
        if self.dry_run:
            return 0
        changed = len(self.created) + len(self.satisfied) + len(self.cancelled)
        return changed + len(self.reopened) + self.now_due


# --- sites: stage, readiness and the day it became ready -------------------------------


def cohort_sites(frames: CohortFrames, as_of: date, protocol: Protocol) -> pd.DataFrame:
    """mrn, site, side, stage, readiness, ready_since for every site on as_of."""
    return with_ready_since(
        frames, sites.stage_and_readiness(frames, as_of, protocol), as_of, protocol
    )


def with_ready_since(
    frames: CohortFrames, site_frame: pd.DataFrame, as_of: date, protocol: Protocol
) -> pd.DataFrame:
    """The sites of `stage_and_readiness` with the day each ready site became ready
    (None for the others)."""
    site_frame = site_frame.assign(ready_since=np.full(len(site_frame), None, dtype=object))
    ready = np.flatnonzero((site_frame["readiness"] == Readiness.ready).to_numpy(bool))
    if not len(ready):
        return site_frame
    column = np.full(len(site_frame), None, dtype=object)
    if sites.shift_safe(protocol):  # all ready sites in one cohort run
        column[ready] = sites.ready_since(frames, site_frame.iloc[ready], as_of, protocol)
    else:  # calendar-month waiting times count: one site at a time
        wanted_rows = site_frame.iloc[ready].to_dict("records")
        records = records_of(frames, {row["mrn"] for row in wanted_rows})
        column[ready] = [
            rules.ready_since(
                records[row["mrn"]], row["site"], row["side"], as_of, protocol, ready_now=True
            )
            for row in wanted_rows
        ]
    site_frame["ready_since"] = column
    return site_frame


def records_of(frames: CohortFrames, mrns: Iterable[str]) -> dict[str, rec.PatientRecords]:
    """The records readiness reads (injuries, findings, bone scans, procedures and ALP
    results) of a few patients, built from the cohort frames."""
    wanted = set(mrns)

    def build(frame: pd.DataFrame, make: Any, columns: list[str]) -> dict[str, list[Any]]:
        subset = frame.loc[frame["mrn"].isin(wanted), ["mrn", *columns]]
        values = []
        for name in subset.columns:
            column = subset[name]
            if pd.api.types.is_datetime64_any_dtype(column):
                column = column.dt.date
            values.append(column.astype(object).where(column.notna(), None).tolist())
        grouped: dict[str, list[Any]] = {}
        for mrn, *fields in zip(*values, strict=True):
            grouped.setdefault(mrn, []).append(make(*fields))
        return grouped

    def finding(*fields: Any) -> rec.Finding:
        brooker = fields[11]
        values = [*fields[:11], None if brooker is None else int(brooker), *fields[12:]]
        return rec.Finding(*values)

    # (a finding's indication, v2, is read only where a reader gives it)
    finding_columns = [f for f in rec.Finding.__dataclass_fields__ if f in frames.findings]
    labs = frames.labs[frames.labs["analyte"].isin(["alp", "bone_alp"])]
    injuries = build(frames.injuries, rec.Injury, ["kind", "date"])
    findings = build(frames.findings, finding, finding_columns)
    scans = build(frames.bone_scans, rec.BoneScan, ["date", "site", "side", "phase", "ratio"])
    procedures = build(frames.procedures, rec.Procedure, ["kind", "date", "site", "side"])
    results = build(labs, rec.Lab, ["date", "analyte", "value", "ref_high", "unit"])
    return {
        mrn: rec.PatientRecords(
            mrn=mrn,
            injuries=tuple(injuries.get(mrn, ())),
            findings=tuple(findings.get(mrn, ())),
            bone_scans=tuple(scans.get(mrn, ())),
            procedures=tuple(procedures.get(mrn, ())),
            labs=tuple(results.get(mrn, ())),
        )
        for mrn in wanted
    }


def record_inputs(frames: Mapping[str, pd.DataFrame]) -> rules.RuleInputs:
    """The rule inputs from the cohort frames, before the sites are staged."""
    return rules.RuleInputs(
        injuries=frames["injuries"],
        findings=frames["findings"],
        bone_scans=frames["bone_scans"],
        courses=frames["courses"],
        procedures=frames["procedures"],
        # v2, the bedside rules
        **{
            name: frames[name]
            for name in ("exams", "range_of_motion", "dvt_studies", "d_dimers")
            if name in frames
        },
    )


# --- stored reminders -----------------------------------------------------------------


_STORED = ["id", "mrn", "rule", "site", "side", "due", "status", "version"]


def _stored(conn: Connection, mrn: str | None = None) -> pd.DataFrame:
    """Every stored reminder's key, status and version (straight from the driver), or
    those of one patient."""
    if mrn is None:
        result = conn.exec_driver_sql(
            "SELECT r.id, p.mrn, r.rule, r.site, r.side, r.due, r.status, r.version "
            "FROM reminder r JOIN patient p ON p.id = r.patient_id"
        )
        rows = result.cursor.fetchall() if result.cursor else []
    else:
        r = reminder.c
        query = (
            sa.select(r.id, patient.c.mrn, r.rule, r.site, r.side, r.due, r.status, r.version)
            .select_from(reminder.join(patient))
            .where(patient.c.mrn == mrn)
        )
        rows = [tuple(row) for row in conn.execute(query)]
    frame = pd.DataFrame(rows, columns=_STORED)
    frame["due"] = rules.days(frame["due"]) if len(frame) else pd.Series(dtype="float64")
    return frame


def natural_keys(frame: pd.DataFrame, cut: rules.Cut) -> np.ndarray:
    """(patient, rule, site, side, due) packed into one integer per row, so that
    comparing hundreds of thousands of keys is a hash lookup, not a string join."""
    pid = frame["pid"].to_numpy() if "pid" in frame else cut.pids(frame["mrn"])
    pid = pid.astype("int64")
    rule = rules.vocabulary_codes(frame["rule"], rules.RULES)
    site = rules.site_codes(frame["site"], frame["side"]) + 1  # 0: no site
    due = np.asarray(frame["due"], dtype="float64").astype("int64") + (1 << 19)
    return ((pid * 16 + rule.astype("int64")) * 64 + site) * (1 << 20) + due


def _among(keys: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether each packed key is among `others`: an anti/semi join on the natural
    key, as one hash lookup per row (numpy's isin sorts both sides)."""
    if not len(others):
        return np.zeros(len(keys), dtype=bool)
    return np.asarray(pd.Index(others).unique().get_indexer(keys) >= 0)


# --- planning -------------------------------------------------------------------------


def plan(
    *,
    engine: Engine,
    as_of: date,
    protocol: Protocol,
    dry_run: bool = False,
    now: datetime | None = None,
    mrn: str | None = None,
) -> PlanResult:
    """Bring the stored reminders in line with the records on as_of (see module doc);
    with `mrn`, those of that patient alone (`plan_patient`)."""
    if mrn is not None:
        return plan_patient(
            engine=engine, mrn=mrn, as_of=as_of, protocol=protocol, dry_run=dry_run, now=now
        )
    now = now or utcnow()
    with engine.connect() as conn, ThreadPoolExecutor(2, "reminder-plan-read") as pool:
        # the bedside rules' rows (range of motion aside: the cohort frames hold it) are
        # read on a connection of their own while the cohort frames are read here
        bedside_read: Callable[[], dict[str, pd.DataFrame]] = functools.partial(
            bedside_tables, conn, range_of_motion=_NOT_READ
        )
        if not _thread_bound(engine):
            bedside_read = pool.submit(_bedside_tables, engine).result
        frames = {name: read_table(conn, name) for name in TABLES if name != "labs"}
        stored = _stored(conn)
        patient_ids = _patient_ids(conn)
        # the lab results, which only staging reads, are read on a connection of their
        # own while the first rules are asked (see `reconcile`)
        labs: Callable[[], pd.DataFrame] = functools.partial(read_table, conn, "labs")
        if not _thread_bound(engine):
            labs = pool.submit(_read_table, engine, "labs").result

        bedside = {**bedside_read(), "range_of_motion": frames["range_of_motion"]}
        return reconcile(
            engine=engine,
            inputs=record_inputs({**frames, **bedside}),
            cohort=lambda: CohortFrames(**frames, labs=labs()),
            stored=stored,
            patient_ids=patient_ids,
            as_of=as_of,
            protocol=protocol,
            dry_run=dry_run,
            now=now,
        )


def plan_patient(
    *,
    engine: Engine,
    mrn: str,
    as_of: date,
    protocol: Protocol,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PlanResult:
    """`plan` for one patient: the same rules and the same comparison (`reconcile`)
    over that patient's records and stored reminders alone, read in a fixed number of
    queries, so a save can re-plan its patient in the request that stored the record
    (model-spec section 9, v2). Other patients' rows are neither read nor written.

    A voided patient has no records to want anything: its open reminders are
    cancelled, as the cohort plan cancels them. NotFound if no such patient exists."""
    now = now or utcnow()
    with engine.connect() as conn:
        patient_ids = _patient_ids(conn, mrn)
        if patient_ids.empty:
            raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")
        stored = _stored(conn, mrn)
        bedside = bedside_tables(conn, mrn)
    with Session(engine) as session:
        try:
            story = [patient_records(session, mrn)]
        except NotFound:  # voided
            story = []
    frames = cohort_frames(story)
    by_name = {f.name: getattr(frames, f.name) for f in dataclasses.fields(frames)}
    by_name.update(bedside)
    return reconcile(
        engine=engine,
        inputs=record_inputs(by_name),
        cohort=lambda: frames,
        stored=stored,
        patient_ids=patient_ids,
        as_of=as_of,
        protocol=protocol,
        dry_run=dry_run,
        now=now,
        overlap=False,
    )


# v2, the bedside rules (rules.BEDSIDE_RULES): what they read besides the cohort frames
_LIVE = "p.voided_at IS NULL AND {0}.voided_at IS NULL"
_BEDSIDE_SQL = {
    "exams": (
        "SELECT p.mrn, e.date, e.site, e.side, e.swelling, e.warmth, e.erythema "
        "FROM clinical_exam e JOIN patient p ON p.id = e.patient_id WHERE " + _LIVE.format("e")
    ),
    "range_of_motion": (
        "SELECT p.mrn, m.date, m.site, m.side, m.movement, m.degrees FROM range_of_motion m "
        "JOIN patient p ON p.id = m.patient_id WHERE " + _LIVE.format("m")
    ),
    "dvt_studies": (
        "SELECT p.mrn, s.date FROM imaging_study s JOIN patient p ON p.id = s.patient_id "
        "WHERE s.modality = 'ultrasound' AND s.indication = 'dvt_query' AND " + _LIVE.format("s")
    ),
    "d_dimers": (
        "SELECT p.mrn, l.date, l.value, l.ref_high, l.unit FROM lab_result l "
        "JOIN patient p ON p.id = l.patient_id WHERE l.analyte = 'd_dimer' AND " + _LIVE.format("l")
    ),
}


def bedside_tables(
    conn: Connection,
    mrn: str | None = None,
    *,
    range_of_motion: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """The examinations, range of motion, DVT-query ultrasound studies and D-dimer
    results the bedside rules read (`rules.RuleInputs`), of one patient or all.

    All patients' rows come column-wise from the driver, as `read_cohort` reads its
    frames (`read_frame`); `range_of_motion`, when the caller has already read the
    cohort's (the same live rows), is used as it is rather than read a second time."""
    tables = {}
    for name, sql in _BEDSIDE_SQL.items():
        if name == "range_of_motion" and range_of_motion is not None:
            tables[name] = range_of_motion
        elif mrn is None:
            tables[name] = read_frame(conn, sql, ("date",))
        else:
            result = conn.execute(sa.text(sql + " AND p.mrn = :mrn"), {"mrn": mrn})
            tables[name] = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return tables


_NOT_READ = pd.DataFrame()  # a stand-in for the range of motion `plan` reads itself


def _bedside_tables(engine: Engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return bedside_tables(conn, range_of_motion=_NOT_READ)


def _read_table(engine: Engine, name: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_table(conn, name)


def _thread_bound(engine: Engine) -> bool:
    """An in-memory SQLite database: one connection per thread (or one for all), so
    no other thread can read or write it on a connection of its own."""
    return engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")


def reconcile(
    *,
    engine: Engine,
    inputs: rules.RuleInputs,
    cohort: Callable[[], CohortFrames],
    stored: pd.DataFrame,
    patient_ids: pd.Series,
    as_of: date,
    protocol: Protocol,
    dry_run: bool,
    now: datetime,
    overlap: bool = True,
) -> PlanResult:
    """The plan's comparison and writes. `inputs` are the records (sites not staged
    yet), `cohort()` all the cohort frames, lab results included (called once, when
    the sites are staged), `patient_ids` the patient id by mrn.

    The rules ask in three rounds: those that read records alone, those that read
    the sites' stage and readiness, and `readiness_review`, which reads the day a
    site became ready. Each round's new rows go to the writer (`_Writes`), which
    inserts them on its own thread while the next round is worked out here: the
    database works without Python's lock, so the two overlap (as `plan` overlaps
    reading the lab results with the first round). All writes are one transaction,
    committed only if everything succeeds. Without `overlap` (one patient: nothing
    worth overlapping) the sites are staged first and every rule asked in one round,
    which gives the same rows, since the rules of the first round never read sites."""
    today = rules.day_number(as_of)
    horizon = today + protocol.reminders.horizon_days
    cut = rules.cut_at(inputs, as_of, protocol)
    stored = stored.assign(pid=cut.pids(stored["mrn"]))  # numbered once for every lookup
    stored_keys = natural_keys(stored, cut)
    wanted: list[np.ndarray] = []  # natural keys of every wanted reminder
    created: list[pd.DataFrame] = []

    def create(only: Collection[ReminderRule]) -> None:
        keys, details = rules.wanted_keys(inputs, as_of, protocol, cut, only=only)
        wanted.append(natural_keys(keys, cut))
        new = keys[~_among(wanted[-1], stored_keys)]
        if len(new):
            new = new[~rules.satisfied(new, inputs, as_of, protocol, cut)]
        new = rules.with_details(new, details)  # words only for rows written
        new["status"] = new_status(new["due"].to_numpy("float64"), today, protocol)
        created.append(new)
        write.insert(created[-1], patient_ids, now)

    with _Writes(engine, dry_run) as write:
        if overlap:
            create(rules.BY_RECORDS)
            frames = cohort()
            staged = sites.stage_and_readiness(frames, as_of, protocol)
            cut = cut.with_sites(staged.assign(ready_since=None))
            create(rules.BY_STAGE)
            cut = cut.with_sites(with_ready_since(frames, staged, as_of, protocol))
            create([ReminderRule.readiness_review])
        else:
            frames = cohort()
            staged = sites.stage_and_readiness(frames, as_of, protocol)
            cut = cut.with_sites(with_ready_since(frames, staged, as_of, protocol))
            create(list(ReminderRule))
        wanted_keys = np.concatenate(wanted)

        # stored reminders within the horizon: open (or lapsed) ones closed by a record,
        # open ones no longer wanted, and closed ones wanted again that no record closes
        status = stored["status"]
        within = stored["due"].to_numpy() <= horizon
        is_open = status.isin([s.value for s in OPEN]).to_numpy(bool) & within
        is_lapsed = (status == S.lapsed).to_numpy(bool) & within
        is_wanted = _among(stored_keys, wanted_keys)
        is_closed = status.isin([s.value for s in REOPENABLE]).to_numpy(bool) & within & is_wanted
        asked = is_open | is_lapsed | is_closed
        done = np.zeros(len(stored), dtype=bool)
        done[asked] = rules.satisfied(stored[asked], inputs, as_of, protocol, cut)
        satisfied = stored[done & (is_open | is_lapsed)]
        gone = stored[~done & is_open & ~is_wanted]
        cancelled = gone.assign(reason=cancel_reasons(gone, cut, as_of, protocol))
        reopened = stored[~done & is_closed]
        closed = np.union1d(satisfied["id"].to_numpy(), cancelled["id"].to_numpy())
        pending = stored[
            (status == S.pending).to_numpy(bool)
            & (stored["due"].to_numpy() <= today)
            & ~np.isin(stored["id"].to_numpy(), closed)
        ]
        write(_close, satisfied, S.satisfied, None, now, (*OPEN, S.lapsed))
        write(_close, cancelled, S.cancelled, cancelled.get("reason"), now, OPEN)
        write(_reopen, reopened, today, protocol.reminders.lapse_after_days, now)
        write(_promote, pending, now)

    new = pd.concat(created, ignore_index=True)
    new = new.iloc[np.argsort(natural_keys(new, cut), kind="stable")]  # patient, rule, site, due
    return PlanResult(
        as_of=as_of,
        created=_dated(new),
        satisfied=_dated(satisfied),
        cancelled=_dated(cancelled),
        now_due=len(pending),
        dry_run=dry_run,
        reopened=_dated(reopened.rename(columns={"status": "was"})),
    )


def new_status(due: np.ndarray, today: int, protocol: Protocol) -> np.ndarray:
    """The status a reminder gets when a plan on day `today` first creates it (day
    numbers), column-wise: pending before its date, due on or after it, and lapsed
    when it is due more than `lapse_after_days` before `today` (model-spec section 9,
    v2): so long past that a team would only be sent history, it is kept for the
    adherence record but never delivered and not on the worklist."""
    lapse_before = today - protocol.reminders.lapse_after_days
    return np.where(
        due < lapse_before,
        S.lapsed.value,
        np.where(due <= today, S.due.value, S.pending.value),
    ).astype(object)


class _Writes:
    """A plan's writes: one transaction, made on a thread of its own while the plan
    goes on computing, committed when the block ends without error. An error on
    either side rolls everything back, so nothing is half-written.

    A dry run writes nothing. In an in-memory SQLite database (`_thread_bound`) the
    writes run in order at the end, in the planning thread."""

    def __init__(self, engine: Engine, dry_run: bool) -> None:
        self._engine = engine
        self._dry_run = dry_run
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None]
        self._jobs = queue.SimpleQueue()
        self._failed: BaseException | None = None
        self._give_up = False
        self._thread: threading.Thread | None = None
        if not dry_run and not _thread_bound(engine):
            self._thread = threading.Thread(target=self._run, name="reminder-plan-writes")
            self._thread.start()

    def __call__(self, job: Callable[..., None], *args: Any) -> None:
        """Run `job(connection, *args)` in the transaction, after the jobs before it."""
        if not self._dry_run:
            self._jobs.put((job, args))

    def insert(self, rows: pd.DataFrame, patient_ids: pd.Series, now: datetime) -> None:
        """Insert new reminders (the statements are made here, executed by the writer)."""
        if self._dry_run or rows.empty:
            return
        for sql, params in _inserts(self._engine.dialect.name, rows, patient_ids, now):
            self(_execute, sql, params)

    def _run(self) -> None:
        try:
            self._transaction()
        except _GaveUp:
            pass
        except BaseException as error:  # handed to the planning thread in __exit__
            self._failed = error

    def _transaction(self) -> None:
        with self._engine.connect() as conn:
            previous = _page_cache(conn, _WRITER_CACHE_KIB)
            try:
                with conn.begin():
                    self._work(conn)
            finally:
                _page_cache(conn, previous)

    def _work(self, conn: Connection) -> None:
        while (job := self._jobs.get()) is not None:
            function, args = job
            function(conn, *args)
        if self._give_up:
            raise _GaveUp  # leaves the transaction: rolled back

    def __enter__(self) -> _Writes:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._dry_run:
            return
        self._give_up = kind is not None
        self._jobs.put(None)
        if self._thread is None:
            if not self._give_up:
                self._transaction()
            return
        self._thread.join()
        if kind is None and self._failed is not None:
            raise self._failed


class _GaveUp(Exception):
    """The planning thread failed: the writer rolls back."""


_WRITER_CACHE_KIB = -128 * 1024
"""SQLite page cache of the plan's write connection (negative: KiB), room for every
page a plan of 100,000 patients changes. With the default 2 MiB, SQLite writes
changed pages to the WAL while the transaction is still open, which on the
reminders benchmark doubled the writer's time (1.35 s against 0.71 s)."""


def _page_cache(conn: Connection, size: int) -> int:
    """Set an SQLite connection's page cache size, returning the size it had (other
    databases: nothing to set). On the driver connection, outside any transaction."""
    if conn.dialect.name != "sqlite":
        return size
    driver = conn.connection.dbapi_connection
    assert driver is not None
    previous = int(driver.execute("PRAGMA cache_size").fetchone()[0])
    driver.execute(f"PRAGMA cache_size={int(size)}")
    return previous


def _dated(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns=[c for c in ("pid",) if c in frame]).copy()
    # whole days since 1970 -> datetime.date, column-wise
    out["due"] = (
        out["due"].to_numpy("float64").astype("int64").astype("datetime64[D]").astype(object)
    )
    return out.reset_index(drop=True)


def cancel_reasons(
    rows: pd.DataFrame, cut: rules.Cut, as_of: date, protocol: Protocol
) -> list[str]:
    """Why each reminder no longer applies, in words kept on the cancelled row
    (column-wise: switching a rule off may cancel a whole cohort's reminders)."""
    if rows.empty:
        return []
    rule = np.asarray(rows["rule"], dtype=object)
    switched_off = [r for r in pd.unique(rule) if not getattr(protocol.reminders, r).enabled]
    pid = rows["pid"].to_numpy() if "pid" in rows else cut.pids(rows["mrn"])
    first_ho = cut.first_ho.reindex(pid).to_numpy("float64")
    screen = (rule == ReminderRule.hip_ultrasound_screen.value) & ~np.isnan(first_ho)
    off = np.isin(rule, switched_off)
    reasons = np.full(
        len(rows),
        f"no longer applies on {as_of.isoformat()}: the records or the protocol changed",
        dtype=object,
    )
    found = np.datetime_as_string(first_ho[screen].astype("int64").astype("datetime64[D]"))
    reasons[screen] = "HO found on " + found.astype(object) + ": screening stops"
    timing = np.isin(rule, [ReminderRule.maturity_bone_scan, ReminderRule.readiness_review])
    genetic = timing & np.isin(pid, cut.fop)
    reasons[genetic] = "genetic HO (FOP) is never resected: no resection-timing reminders"
    reasons[off] = "the protocol switched " + rule[off] + " off"
    return list(reasons)


def _patient_ids(conn: Connection, mrn: str | None = None) -> pd.Series:
    """Every patient's id by mrn (straight from the driver), or one patient's."""
    if mrn is None:
        cursor = conn.exec_driver_sql("SELECT mrn, id FROM patient").cursor
        pairs = cursor.fetchall() if cursor else []
    else:
        query = sa.select(patient.c.mrn, patient.c.id).where(patient.c.mrn == mrn)
        pairs = [tuple(row) for row in conn.execute(query)]
    return pd.Series(
        np.array([pid for _, pid in pairs], dtype="int64"),
        index=pd.Index([mrn for mrn, _ in pairs], dtype=object),
    )


_INSERT = (
    "INSERT INTO reminder (patient_id, rule, site, side, due, status, detail, "
    "closed_at, attempts, late, version) "
)
_FROM_JSON = {  # each element of one JSON array of rows is a row of 7 values; a lapsed
    # row is closed when it is made (the first bound value: the plan's time)
    "sqlite": _INSERT
    + "SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(7))
    + ", CASE WHEN json_extract(value, '$[5]') = 'lapsed' THEN ? END"
    + ", 0, 0, 1 FROM json_each(?) WHERE true ON CONFLICT DO NOTHING",
    "postgresql": _INSERT
    + "SELECT (e->>0)::integer, e->>1, e->>2, e->>3, (e->>4)::date, e->>5, e->>6, "
    "CASE WHEN e->>5 = 'lapsed' THEN %s::timestamptz END, 0, false, 1 "
    "FROM jsonb_array_elements(%s::jsonb) AS e ON CONFLICT DO NOTHING",
}
_ROWS_PER_INSERT = 20_000


def _driver_time(dialect: str, moment: datetime) -> Any:
    """A timestamp as a bound value of raw SQL: on SQLite the text SQLAlchemy stores
    (UTC, without the zone), elsewhere the aware datetime itself."""
    if dialect != "sqlite":
        return moment
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


def _inserts(
    dialect: str, rows: pd.DataFrame, patient_ids: pd.Series, now: datetime
) -> list[tuple[str, tuple[Any, str]]]:
    """INSERT statements for new rows: each many rows as one JSON text, so the database
    unpacks the values (two bound values per statement, not seven per row). ON
    CONFLICT keeps a racing planner's copy. Each row's status is its `status` column
    (`new_status`)."""
    ids = patient_ids.reindex(pd.Index(np.asarray(rows["mrn"], dtype=object))).to_numpy()
    if np.isnan(ids.astype("float64")).any():
        raise ValueError("reminders for patients not in the database")
    # in patient order, as the natural-key indexes are: each insert lands next to the
    # previous one in the B-trees (on SQLite, half the time of inserting in any order)
    order = np.argsort(ids, kind="stable")
    due = rows["due"].to_numpy("float64")[order]

    def text(name: str) -> np.ndarray:
        return np.asarray(rows[name], dtype=object)[order]

    values = pd.DataFrame(  # object columns: plain Python values for the JSON encoder
        {
            "patient_id": ids[order].astype("int64"),
            "rule": text("rule"),
            "site": text("site"),
            "side": text("side"),
            "due": np.datetime_as_string(due.astype("int64").astype("datetime64[D]"), unit="D"),
            "status": text("status"),
            "detail": text("detail"),
        },
        dtype=object,
    )
    sql, closed = _FROM_JSON[dialect], _driver_time(dialect, now)
    return [
        (sql, (closed, values.iloc[start : start + _ROWS_PER_INSERT].to_json(orient="values")))
        for start in range(0, len(values), _ROWS_PER_INSERT)
    ]


def _execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.exec_driver_sql(sql, params)


_CHUNK = 2_000  # rows per set-based UPDATE (two bound values each, well under limits)


def _close(
    conn: Connection,
    rows: pd.DataFrame,
    status: ReminderStatus,
    reasons: pd.Series | None,
    now: datetime,
    from_statuses: Collection[ReminderStatus] = OPEN,
) -> None:
    """Set-based: one UPDATE per reason and chunk of rows, each row only if it is
    still in one of `from_statuses` and unchanged since it was read (its version)."""
    if rows.empty:
        return
    r = reminder.c
    reason = (
        pd.Series([None] * len(rows), dtype=object)
        if reasons is None
        else reasons.reset_index(drop=True).astype(object)
    )
    keyed = pd.DataFrame(
        {
            "id": rows["id"].to_numpy("int64"),
            "version": rows["version"].to_numpy("int64"),
            "reason": reason.fillna("").to_numpy(),
        }
    )
    for why, group in keyed.groupby("reason", sort=False):
        pairs = list(zip(group["id"].tolist(), group["version"].tolist(), strict=True))
        for start in range(0, len(pairs), _CHUNK):
            conn.execute(
                reminder.update()
                .where(sa.tuple_(r.id, r.version).in_(pairs[start : start + _CHUNK]))
                .where(r.status.in_([s.value for s in from_statuses]))
                .values(
                    status=status.value,
                    cancel_reason=why or None,
                    closed_at=now,
                    claimed_by=None,
                    claim_token=None,
                    claimed_until=None,
                    version=r.version + 1,
                    updated_at=now,
                )
            )


def _reopen(
    conn: Connection, rows: pd.DataFrame, today: int, lapse_after_days: int, now: datetime
) -> None:
    """Closed reminders wanted again with nothing closing them get back the state they
    would have had: sent if they had been delivered (escalation may follow), lapsed if
    they were already long past on the day they were first planned (the v2 rule, with
    the row's creation day, as migration 0005 applies it), else due or pending by their
    date. Only rows still closed
    as read (their version) change. Usually a few rows (a void, a correction); a rule
    switched back on reopens many, read in chunks."""
    if rows.empty:
        return
    r = reminder.c
    ids, versions = rows["id"].astype("int64").tolist(), rows["version"].astype("int64").tolist()
    pairs = list(zip(ids, versions, strict=True))
    closed = r.status.in_([s.value for s in REOPENABLE])
    found = [
        row
        for start in range(0, len(pairs), _CHUNK)
        for row in conn.execute(
            sa.select(r.id, r.due, r.sent_at, r.message_id, r.created_at).where(
                sa.tuple_(r.id, r.version).in_(pairs[start : start + _CHUNK]), closed
            )
        )
    ]
    by_status: dict[str, list[int]] = {}
    for rid, due, sent_at, message_id, created_at in found:
        due_day = rules.day_number(date.fromisoformat(due) if isinstance(due, str) else due)
        created = created_at if isinstance(created_at, datetime) else now
        # the day it was first planned: its creation, or this plan's day if that is
        # earlier (a plan --as-of a past day, a test)
        planned_day = min(rules.day_number(created.date()), today)
        if sent_at is not None and message_id is not None:
            status = S.sent
        elif due_day < planned_day - lapse_after_days:
            status = S.lapsed
        else:
            status = S.due if due_day <= today else S.pending
        by_status.setdefault(status.value, []).append(rid)
    for status_value, ids in by_status.items():
        for start in range(0, len(ids), _CHUNK):
            conn.execute(
                reminder.update()
                .where(r.id.in_(ids[start : start + _CHUNK]), closed)
                .values(
                    status=status_value,
                    cancel_reason=None,
                    closed_at=now if status_value == S.lapsed.value else None,
                    version=r.version + 1,
                    updated_at=now,
                )
            )


def _promote(conn: Connection, rows: pd.DataFrame, now: datetime) -> None:
    """Set-based: pending rows whose day has come become due."""
    if rows.empty:
        return
    r = reminder.c
    ids = rows["id"].astype("int64").tolist()
    for start in range(0, len(ids), _CHUNK):
        conn.execute(
            reminder.update()
            .where(r.id.in_(ids[start : start + _CHUNK]), r.status == S.pending.value)
            .values(status=S.due.value, version=r.version + 1, updated_at=now)
        )


# --- one reminder, right before it goes out ---------------------------------------------


@dataclass(frozen=True)
class Recheck:
    """The verdict on one reminder on a day: still wanted, satisfied, or cancelled."""

    status: ReminderStatus  # due (still applies), satisfied or cancelled
    reason: str | None = None


def recheck(
    records: rec.PatientRecords,
    *,
    rule: str,
    site: str | None,
    side: str | None,
    due: date,
    as_of: date,
    protocol: Protocol,
) -> Recheck:
    """Does the reminder still apply on as_of? The same rules as planning, for one
    patient, so nothing stale is sent (model-spec section 9)."""
    inputs = rules.patient_inputs(records, as_of, protocol)
    key = pd.DataFrame(
        [{"mrn": records.mrn, "rule": rule, "site": site, "side": side,
          "due": float(rules.day_number(due))}]
    )  # fmt: skip
    cut = rules.cut_at(inputs, as_of, protocol)
    if rules.satisfied(key, inputs, as_of, protocol, cut)[0]:
        return Recheck(S.satisfied)
    wanted = rules.wanted(inputs, as_of, protocol, cut)
    if np.isin(natural_keys(key, cut), natural_keys(wanted, cut)).any():
        return Recheck(S.due)
    return Recheck(S.cancelled, cancel_reasons(key, cut, as_of, protocol)[0])
