"""Planning: the reminders the records call for, against the reminders stored.

Reminders are derived from the data, never from memory: every plan reads the whole
story (`read_cohort`), assesses every site (`staging.cohort.assess_cohort`), asks
the rules what is wanted up to as_of + horizon, and then
- inserts wanted reminders that are not stored yet (natural key: patient, rule,
  site, side, due; the database refuses a second copy, so two planners racing
  each other still create one row), unless the record that closes them is logged;
- marks open reminders satisfied when the matching record is logged (closed loop);
- cancels open reminders that no longer apply, keeping the row and the reason
  (screening stops once HO is found: model-spec section 9);
- turns pending reminders due on their date.
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
from tracker.reminders import rules
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
    from tracker.staging.cohort import assess_cohort

    assessed = assess_cohort(frames, as_of, protocol)
    sites = assessed[["mrn", "site", "side", "stage", "readiness"]].copy()
    sites["ready_since"] = np.full(len(sites), None, dtype=object)
    ready = np.flatnonzero((sites["readiness"] == Readiness.ready).to_numpy(bool))
    if len(ready):
        wanted_rows = sites.iloc[ready].to_dict("records")
        records = records_of(frames, {row["mrn"] for row in wanted_rows})
        since = [
            rules.ready_since(
                records[row["mrn"]], row["site"], row["side"], as_of, protocol, ready_now=True
            )
            for row in wanted_rows
        ]
        column = np.full(len(sites), None, dtype=object)
        column[ready] = since
        sites["ready_since"] = column
    return sites


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
    wanted = rules.wanted(inputs, as_of, protocol, cut)
    wanted_keys = natural_keys(wanted, cut)
    stored_keys = natural_keys(stored, cut)

    new = wanted[~np.isin(wanted_keys, stored_keys)]
    if len(new):
        new = new[~rules.satisfied(new, inputs, as_of, protocol, cut)]

    # open stored reminders within the horizon: closed by a record, or no longer wanted
    is_open = stored["status"].isin([s.value for s in OPEN]).to_numpy(bool) & (
        stored["due"].to_numpy() <= horizon
    )
    open_rows, open_keys = stored[is_open], stored_keys[is_open]
    done = rules.satisfied(open_rows, inputs, as_of, protocol, cut)
    satisfied = open_rows[done]
    gone = open_rows[~done & ~np.isin(open_keys, wanted_keys)]
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
    out["due"] = [rules.from_day_number(d) for d in out["due"]]
    return out.reset_index(drop=True)


def cancel_reasons(
    rows: pd.DataFrame, cut: rules.Cut, as_of: date, protocol: Protocol
) -> list[str]:
    """Why each reminder no longer applies, in words kept on the cancelled row."""
    reasons = []
    for row in rows[["mrn", "rule"]].to_dict("records"):
        rule, mrn = str(row["rule"]), str(row["mrn"])
        enabled = getattr(protocol.reminders, rule).enabled
        first_ho = cut.first_ho_day(mrn)
        if not enabled:
            reasons.append(f"the protocol switched {rule} off")
        elif rule == ReminderRule.hip_ultrasound_screen and first_ho is not None:
            found = rules.from_day_number(first_ho).isoformat()
            reasons.append(f"HO found on {found}: screening stops")
        else:
            reasons.append(
                f"no longer applies on {as_of.isoformat()}: the records or the protocol changed"
            )
    return reasons


def _insert(conn: Connection, rows: pd.DataFrame, today: int) -> None:
    if rows.empty:
        return
    ids = dict(conn.execute(sa.select(patient.c.mrn, patient.c.id)).all())
    due = rows["due"].to_numpy()
    values = list(
        zip(
            rows["mrn"].map(ids).tolist(),
            rows["rule"].tolist(),
            [None if pd.isna(v) else v for v in rows["site"].tolist()],
            [None if pd.isna(v) else v for v in rows["side"].tolist()],
            [rules.from_day_number(d).isoformat() for d in due],
            np.where(due <= today, S.due.value, S.pending.value).tolist(),
            rows["detail"].tolist(),
            strict=True,
        )
    )
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    false = "0" if conn.dialect.name == "sqlite" else "false"
    sql = (
        "INSERT INTO reminder (patient_id, rule, site, side, due, status, detail, attempts, "
        f"late, version) VALUES ({', '.join([marker] * 7)}, 0, {false}, 1) "
        "ON CONFLICT DO NOTHING"
    )
    for start in range(0, len(values), 20_000):
        conn.exec_driver_sql(sql, values[start : start + 20_000])


def _close(
    conn: Connection,
    rows: pd.DataFrame,
    status: ReminderStatus,
    reasons: pd.Series | None,
    now: datetime,
) -> None:
    if rows.empty:
        return
    r = reminder.c
    update = (
        reminder.update()
        .where(r.id == sa.bindparam("rid"), r.version == sa.bindparam("v"))
        .where(sa.or_(*[r.status == s.value for s in OPEN]))
        .values(
            status=status.value,
            cancel_reason=sa.bindparam("reason"),
            closed_at=now,
            claimed_by=None,
            claim_token=None,
            claimed_until=None,
            version=r.version + 1,
            updated_at=now,
        )
    )
    reason_list = [None] * len(rows) if reasons is None else reasons.tolist()
    conn.execute(
        update,
        [
            {"rid": int(i), "v": int(v), "reason": why}
            for i, v, why in zip(rows["id"], rows["version"], reason_list, strict=True)
        ],
    )


def _promote(conn: Connection, rows: pd.DataFrame, now: datetime) -> None:
    if rows.empty:
        return
    r = reminder.c
    conn.execute(
        reminder.update()
        .where(r.id == sa.bindparam("rid"), r.status == S.pending.value)
        .values(status=S.due.value, version=r.version + 1, updated_at=now),
        [{"rid": int(i)} for i in rows["id"]],
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
