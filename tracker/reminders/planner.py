"""Planning: the reminders the records call for, against the reminders stored.

Reminders are derived from the data, never from memory: every plan reads the whole
story (`read_cohort`), finds every site's stage and readiness (`sites`: the cohort
staging, column-wise, and for ready sites the day they became ready), asks the rules
what is wanted up to as_of + horizon (keys only: detail texts are written for new
rows alone), compares wanted with stored on the natural key packed into one integer
(a hash semi-join, no loop over patients), and then
- inserts wanted reminders that are not stored yet (natural key: patient, rule,
  site, side, due; the database refuses a second copy, so two planners racing
  each other still create one row), unless the record that closes them is logged;
- marks open reminders satisfied when the matching record is logged (closed loop);
- cancels open reminders that no longer apply, keeping the row and the reason
  (screening stops once HO is found: model-spec section 9);
- turns pending reminders due on their date.
Writes are bulk: multi-row INSERTs of the new rows only, and set-based UPDATEs
(one per reason and chunk of rows) for status changes.
Planning twice changes nothing the second time. A dry run computes the same
changes and writes none, so a protocol change can be previewed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker.protocol import Protocol
from tracker.reminders import rules, sites
from tracker.staging import records as rec
from tracker.staging.readiness import Readiness
from tracker.store.loaders import CohortFrames, read_cohort
from tracker.store.models import Patient, Reminder, table_of, utcnow
from tracker.vocab import ReminderRule, ReminderStatus

reminder = table_of(Reminder)
patient = table_of(Patient)
OPEN = (ReminderStatus.pending, ReminderStatus.due, ReminderStatus.sent)
S = ReminderStatus


@dataclass
class PlanResult:
    """What a plan did (or, dry, would do): one frame per kind of change.

    Each frame has mrn, rule, site, side, due (date), plus detail or reason.
    """

    as_of: date
    created: pd.DataFrame
    satisfied: pd.DataFrame
    cancelled: pd.DataFrame
    now_due: int = 0
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        if self.dry_run:
            return 0
        return len(self.created) + len(self.satisfied) + len(self.cancelled) + self.now_due


# --- sites: stage, readiness and the day it became ready -------------------------------


def cohort_sites(frames: CohortFrames, as_of: date, protocol: Protocol) -> pd.DataFrame:
    """mrn, site, side, stage, readiness, ready_since for every site on as_of."""
    site_frame = sites.stage_and_readiness(frames, as_of, protocol)
    site_frame["ready_since"] = np.full(len(site_frame), None, dtype=object)
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

    finding_columns = [f for f in rec.Finding.__dataclass_fields__]
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


def cohort_inputs(frames: CohortFrames, as_of: date, protocol: Protocol) -> rules.RuleInputs:
    return rules.RuleInputs(
        injuries=frames.injuries,
        findings=frames.findings,
        bone_scans=frames.bone_scans,
        courses=frames.courses,
        procedures=frames.procedures,
        sites=cohort_sites(frames, as_of, protocol),
    )


# --- stored reminders -----------------------------------------------------------------


def _stored(conn: Connection) -> pd.DataFrame:
    """Every stored reminder's key, status and version (straight from the driver)."""
    result = conn.exec_driver_sql(
        "SELECT r.id, p.mrn, r.rule, r.site, r.side, r.due, r.status, r.version "
        "FROM reminder r JOIN patient p ON p.id = r.patient_id"
    )
    columns = ["id", "mrn", "rule", "site", "side", "due", "status", "version"]
    frame = pd.DataFrame(result.cursor.fetchall() if result.cursor else [], columns=columns)
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
) -> PlanResult:
    """Bring the stored reminders in line with the records on as_of (see module doc)."""
    now = now or utcnow()
    with engine.connect() as conn:
        frames = read_cohort(conn)
        stored = _stored(conn)
    inputs = cohort_inputs(frames, as_of, protocol)
    return reconcile(
        engine=engine,
        inputs=inputs,
        stored=stored,
        as_of=as_of,
        protocol=protocol,
        dry_run=dry_run,
        now=now,
    )


def reconcile(
    *,
    engine: Engine,
    inputs: rules.RuleInputs,
    stored: pd.DataFrame,
    as_of: date,
    protocol: Protocol,
    dry_run: bool,
    now: datetime,
) -> PlanResult:
    today = rules.day_number(as_of)
    horizon = today + protocol.reminders.horizon_days
    cut = rules.cut_at(inputs, as_of, protocol)
    wanted, details = rules.wanted_keys(inputs, as_of, protocol, cut)
    wanted_keys = natural_keys(wanted, cut)
    stored_keys = natural_keys(stored, cut)

    new = wanted[~_among(wanted_keys, stored_keys)]
    if len(new):
        new = new[~rules.satisfied(new, inputs, as_of, protocol, cut)]
    new = rules.with_details(new, details)  # words only for the rows written

    # open stored reminders within the horizon: closed by a record, or no longer wanted
    is_open = stored["status"].isin([s.value for s in OPEN]).to_numpy(bool) & (
        stored["due"].to_numpy() <= horizon
    )
    open_rows, open_keys = stored[is_open], stored_keys[is_open]
    done = rules.satisfied(open_rows, inputs, as_of, protocol, cut)
    satisfied = open_rows[done]
    gone = open_rows[~done & ~_among(open_keys, wanted_keys)]
    cancelled = gone.assign(reason=cancel_reasons(gone, cut, as_of, protocol))
    closed = np.union1d(satisfied["id"].to_numpy(), cancelled["id"].to_numpy())
    pending = stored[
        (stored["status"] == S.pending).to_numpy(bool)
        & (stored["due"].to_numpy() <= today)
        & ~np.isin(stored["id"].to_numpy(), closed)
    ]

    result = PlanResult(
        as_of=as_of,
        created=_dated(new),
        satisfied=_dated(satisfied),
        cancelled=_dated(cancelled),
        now_due=len(pending),
        dry_run=dry_run,
    )
    if not dry_run:
        with engine.begin() as conn:
            _insert(conn, new, today)
            _close(conn, satisfied, S.satisfied, None, now)
            _close(conn, cancelled, S.cancelled, cancelled.get("reason"), now)
            _promote(conn, pending, now)
    return result


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
    first_ho = cut.first_ho.reindex(cut.pids(rows["mrn"])).to_numpy("float64")
    screen = (rule == ReminderRule.hip_ultrasound_screen.value) & ~np.isnan(first_ho)
    off = np.isin(rule, switched_off)
    reasons = np.full(
        len(rows),
        f"no longer applies on {as_of.isoformat()}: the records or the protocol changed",
        dtype=object,
    )
    found = np.datetime_as_string(first_ho[screen].astype("int64").astype("datetime64[D]"))
    reasons[screen] = "HO found on " + found.astype(object) + ": screening stops"
    reasons[off] = "the protocol switched " + rule[off] + " off"
    return list(reasons)


def _insert(conn: Connection, rows: pd.DataFrame, today: int) -> None:
    """Bulk insert of the new rows only; ON CONFLICT keeps a racing planner's copy."""
    if rows.empty:
        return
    cursor = conn.exec_driver_sql("SELECT mrn, id FROM patient").cursor
    stored_ids = cursor.fetchall() if cursor else []  # plain tuples, straight from the driver
    mrns = pd.Index([mrn for mrn, _ in stored_ids])
    ids = np.array([pid for _, pid in stored_ids], dtype="int64")
    # in the order of the natural-key indexes: each insert lands next to the previous
    # one in the B-trees (on SQLite, half the time of inserting in any order)
    rows = rows.assign(patient_id=ids[mrns.get_indexer(rows["mrn"])])
    rows = rows.sort_values(["patient_id", "rule", "site", "side", "due"], na_position="first")
    due = rows["due"].to_numpy("float64")

    def nullable(column: pd.Series) -> list[Any]:
        return column.astype(object).where(column.notna(), None).tolist()

    values = list(
        zip(
            rows["patient_id"].tolist(),
            rows["rule"].tolist(),
            nullable(rows["site"]),
            nullable(rows["side"]),
            np.datetime_as_string(due.astype("int64").astype("datetime64[D]"), unit="D").tolist(),
            np.where(due <= today, S.due.value, S.pending.value).tolist(),
            rows["detail"].tolist(),
            strict=True,
        )
    )
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    false = "0" if conn.dialect.name == "sqlite" else "false"
    row = f"({', '.join([marker] * 7)}, 0, {false}, 1)"

    def insert(count: int) -> str:  # many rows per statement: a quarter faster on SQLite
        return (
            "INSERT INTO reminder (patient_id, rule, site, side, due, status, detail, "
            f"attempts, late, version) VALUES {', '.join([row] * count)} ON CONFLICT DO NOTHING"
        )

    full = insert(_ROWS_PER_INSERT)
    for start in range(0, len(values), _ROWS_PER_INSERT):
        chunk = values[start : start + _ROWS_PER_INSERT]
        sql = full if len(chunk) == _ROWS_PER_INSERT else insert(len(chunk))
        conn.exec_driver_sql(sql, tuple(v for one in chunk for v in one))


_ROWS_PER_INSERT = 500  # 3,500 bound values: under SQLite's and PostgreSQL's limits


_CHUNK = 2_000  # rows per set-based UPDATE (two bound values each, well under limits)


def _close(
    conn: Connection,
    rows: pd.DataFrame,
    status: ReminderStatus,
    reasons: pd.Series | None,
    now: datetime,
) -> None:
    """Set-based: one UPDATE per reason and chunk of rows, each row only if it is
    still open and unchanged since it was read (its version)."""
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
                .where(r.status.in_([s.value for s in OPEN]))
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
