"""The stored site assessments: every site of every patient as the cohort path
assessed it on one day, kept in `site_assessment` so that the surgeons' board and the
patient search read one page of calls instead of assessing 100,000 patients on every
request (issue 14).

Every row comes from `staging.cohort` or `staging.assess`, so a stored call is the
call `ho-tracker assess` makes. Rows are written three ways:

- `refresh_all`: the whole cohort in one cohort run, the stored columns built column
  by column, the rows sent in bulk (COPY on PostgreSQL, executemany on SQLite);
- `refresh_patient`: one patient's rows from the one-patient path (`staging.assess`,
  whose answers equal the cohort path's), after every save, correction or void of
  that patient's records (`record_store.follow_record`, beside its reminder re-plan);
- `refresh_if_stale`: the daily job's, a refresh when the stored calls are not
  today's or not the protocol's in use.

`assessment_state` says which day and which rules made the stored calls (two index
probes), so a page can say plainly when they are out of date. `site_filters`
validates the stage, readiness and flag a person picked; `patients_with_sites`
turns them into a condition on `patient.id` for the patient search.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from tracker.errors import NotFound, TrackerError
from tracker.progress import NoProgress, Progress
from tracker.protocol import Protocol
from tracker.services.assessment import assess_all
from tracker.staging import assess_patient, to_json
from tracker.staging.assess import MODEL_VERSION
from tracker.staging.flags import Flag
from tracker.staging.readiness import Readiness
from tracker.staging.stage import Stage
from tracker.store.loaders import patient_records
from tracker.store.models import Patient, SiteAssessment, table_of, utcnow
from tracker.templating import words

__all__ = [
    "SOON_DAYS",
    "AssessmentState",
    "BoardGroup",
    "Refreshed",
    "SiteFilters",
    "assessment_rows",
    "assessment_state",
    "patients_with_sites",
    "refresh_all",
    "refresh_if_stale",
    "refresh_patient",
    "site_conditions",
    "site_filters",
]

site_assessment, patient = table_of(SiteAssessment), table_of(Patient)
a = site_assessment.c

SOON_DAYS = 90  # "forecast to stabilise soon": within this many days of as_of
FAR = "9999-12-31"  # the rank date of a site with no date to be ordered by
_CHUNK = 20_000  # rows per bulk write (and per step of the progress bar)


class BoardGroup(IntEnum):
    """Where a site stands on the board, most urgent first (the `priority` column)."""

    ready = 0  # ready for resection
    soon = 1  # forecast to stabilise within SOON_DAYS
    rescan = 2  # the forecast date has passed: a new delayed-phase scan is due
    other = 3  # HO, neither ready nor forecast soon
    no_ho = 4  # stage none: nothing to resect


# --- the stored columns ----------------------------------------------------------------

COLUMNS = (
    "patient_id", "mrn", "site", "side", "stage", "activity", "readiness", "flags",
    "forecast_date", "forecast_low", "forecast_high", "forecast_passed", "priority",
    "rank_date", "as_of", "model_version", "protocol_fingerprint", "assessed_at",
)  # fmt: skip


def assessment_rows(
    frame: pd.DataFrame,
    patient_ids: pd.Series,
    *,
    as_of: dt.date,
    assessed_at: dt.datetime,
    soon_days: int = SOON_DAYS,
) -> pd.DataFrame:
    """The stored columns (COLUMNS) of every row of a cohort frame, in its order,
    column by column. `patient_ids` maps mrn to patient id. Dates are ISO text (the
    frame's own writing), `forecast_passed` is None without a forecast."""
    ids = patient_ids.reindex(pd.Index(frame["mrn"].astype(object)))
    if ids.isna().any():
        raise ValueError("sites of patients not in patient_ids")
    forecast = frame["forecast_date"].astype(object)
    has_forecast = forecast.notna().to_numpy()
    passed = (
        frame["forecast_passed"].astype("boolean").fillna(False).to_numpy(dtype=bool) & has_forecast
    )
    horizon = (as_of + dt.timedelta(days=soon_days)).isoformat()
    dated = forecast.where(forecast.notna(), FAR).astype(str).to_numpy()
    readiness = frame["readiness"].to_numpy(dtype=object)
    priority = np.select(
        [
            readiness == Readiness.ready,
            has_forecast & ~passed & (dated <= horizon),
            passed,
            readiness == Readiness.not_applicable,
        ],
        [BoardGroup.ready, BoardGroup.soon, BoardGroup.rescan, BoardGroup.no_ho],
        default=BoardGroup.other,
    )
    rank_date = np.where(priority <= BoardGroup.rescan, dated, FAR)
    flags = frame["flags"].astype(object)
    return pd.DataFrame(
        {
            "patient_id": ids.to_numpy(dtype="int64"),
            "mrn": frame["mrn"].to_numpy(dtype=object),
            "site": frame["site"].to_numpy(dtype=object),
            "side": frame["side"].to_numpy(dtype=object),
            "stage": frame["stage"].to_numpy(dtype=object),
            "activity": frame["activity"].to_numpy(dtype=object),
            "readiness": readiness,
            "flags": flags.where(flags.notna(), "").to_numpy(dtype=object),
            "forecast_date": _text_or_none(frame["forecast_date"]),
            "forecast_low": _text_or_none(frame["forecast_low"]),
            "forecast_high": _text_or_none(frame["forecast_high"]),
            "forecast_passed": pd.Series(passed).astype(object).where(has_forecast, None),
            "priority": priority.astype("int64"),
            "rank_date": rank_date.astype(object),
            "as_of": as_of.isoformat(),
            "model_version": frame["model_version"].to_numpy(dtype="int64"),
            "protocol_fingerprint": frame["protocol_fingerprint"].to_numpy(dtype=object),
            "assessed_at": assessed_at,
        },
        columns=list(COLUMNS),
    )


def _text_or_none(column: pd.Series) -> np.ndarray:
    values = column.astype(object)
    return values.where(values.notna(), None).to_numpy(dtype=object)


def _write(conn: Connection, rows: pd.DataFrame, progress: Progress | None = None) -> None:
    """Insert the rows in bulk: COPY on PostgreSQL, executemany on SQLite."""
    for start in range(0, len(rows), _CHUNK):
        chunk = rows.iloc[start : start + _CHUNK]
        if conn.dialect.name == "postgresql":
            _copy(conn, chunk)
        else:
            _executemany(conn, chunk)
        if progress is not None:
            progress.advance(len(chunk))


def _copy(conn: Connection, rows: pd.DataFrame) -> None:
    text = io.StringIO()
    out = rows.assign(assessed_at=rows["assessed_at"].map(lambda t: t.isoformat()))
    out.to_csv(text, header=False, index=False, na_rep="\\N")
    sql = f"COPY site_assessment ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            copy.write(text.getvalue())
    finally:
        cursor.close()


def _executemany(conn: Connection, rows: pd.DataFrame) -> None:
    # the text SQLAlchemy itself stores for a timestamp on SQLite (UTC, no zone)
    stamp = rows["assessed_at"].map(lambda t: t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
    columns = [stamp.tolist() if c == "assessed_at" else rows[c].tolist() for c in COLUMNS]
    marks = ", ".join("?" for _ in COLUMNS)
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO site_assessment ({', '.join(COLUMNS)}) VALUES ({marks})",
            list(zip(*columns, strict=True)),
        )
    finally:
        cursor.close()


def _patient_ids(conn: Connection) -> pd.Series:
    rows = conn.execute(sa.select(patient.c.mrn, patient.c.id).where(patient.c.voided_at.is_(None)))
    pairs = rows.all()
    return pd.Series([i for _, i in pairs], index=[m for m, _ in pairs], dtype="int64")


# --- writing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    """What a refresh stored: how many sites of how many patients, as of which day."""

    as_of: dt.date
    sites: int
    patients: int
    protocol_fingerprint: str


def refresh_all(
    *,
    engine: Engine,
    as_of: dt.date,
    protocol: Protocol | None = None,
    progress: Progress | None = None,
    soon_days: int = SOON_DAYS,
) -> Refreshed:
    """Assess every patient on `as_of` (one cohort run) and store every site's call in
    place of the stored ones, in one transaction: readers see the old calls until the
    new ones are all in. A patient whose rows a save refreshed while this ran keeps
    them (they were read later than this run read the cohort)."""
    protocol = protocol or Protocol()
    progress = progress or NoProgress()
    started = utcnow()
    frame = assess_all(engine=engine, as_of=as_of, protocol=protocol, progress=progress)
    with engine.connect() as conn:
        ids = _patient_ids(conn)
    frame = frame[frame["mrn"].isin(ids.index)]  # leaves out a patient voided meanwhile
    rows = assessment_rows(frame, ids, as_of=as_of, assessed_at=started, soon_days=soon_days)
    progress.start("Storing the site assessments", len(rows))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # one refresh at a time; reads go on
            conn.exec_driver_sql("LOCK TABLE site_assessment IN EXCLUSIVE MODE")
        conn.execute(sa.delete(site_assessment).where(a.assessed_at < started))
        kept = set(conn.execute(sa.select(a.patient_id).distinct()).scalars())
        if kept:
            rows = rows[~rows["patient_id"].isin(kept)]
        _write(conn, rows, progress)
    return Refreshed(as_of, len(rows), int(rows["patient_id"].nunique()), protocol.fingerprint)


def refresh_patient(
    *,
    engine: Engine,
    mrn: str,
    as_of: dt.date,
    protocol: Protocol | None = None,
    soon_days: int = SOON_DAYS,
) -> int:
    """Store one patient's calls on `as_of` in place of its stored ones (a voided
    patient's are removed); the number of sites stored. Nothing is written while no
    call is stored at all: the first `refresh_all` stores everyone, and a board of one
    patient would look like the whole cohort. NotFound for an unknown mrn."""
    protocol = protocol or Protocol()
    started = utcnow()
    with engine.connect() as conn:
        if conn.execute(sa.select(a.id).limit(1)).first() is None:
            return 0
        found = conn.execute(sa.select(patient.c.id).where(patient.c.mrn == mrn)).first()
    if found is None:
        raise NotFound(f"No patient with mrn '{mrn}'; check the number or import the patient.")
    patient_id = int(found[0])
    with Session(engine) as session:
        try:
            records = patient_records(session, mrn)
        except NotFound:  # voided: no sites to stand on the board
            records = None
    sites = [] if records is None else to_json(assess_patient(records, as_of, protocol))["sites"]
    rows = assessment_rows(
        _frame_of(mrn, sites, protocol),
        pd.Series([patient_id], index=[mrn], dtype="int64"),
        as_of=as_of,
        assessed_at=started,
        soon_days=soon_days,
    )
    with engine.begin() as conn:
        # one refresh of a patient at a time, and never an older read over a newer one
        conn.execute(sa.select(patient.c.id).where(patient.c.id == patient_id).with_for_update())
        newer = sa.select(a.id).where(a.patient_id == patient_id, a.assessed_at > started)
        if conn.execute(newer.limit(1)).first() is not None:
            return 0
        conn.execute(sa.delete(site_assessment).where(a.patient_id == patient_id))
        _write(conn, rows)
    return len(rows)


def _frame_of(mrn: str, sites: Sequence[Mapping[str, Any]], protocol: Protocol) -> pd.DataFrame:
    """One patient's sites (model-spec section 8 JSON) as the cohort frame's columns
    that `assessment_rows` reads: the same values, written the same way."""
    return pd.DataFrame(
        [
            {
                "mrn": mrn,
                **{key: site[key] for key in ("site", "side", "stage", "activity", "readiness")},
                "flags": ";".join(site["flags"]),
                **{
                    f"forecast_{key}": None if site["forecast"] is None else site["forecast"][key]
                    for key in ("date", "low", "high", "passed")
                },
                "model_version": MODEL_VERSION,
                "protocol_fingerprint": protocol.fingerprint,
            }
            for site in sites
        ],
        columns=FRAME_COLUMNS,
    )


FRAME_COLUMNS = [
    "mrn", "site", "side", "stage", "activity", "readiness", "flags", "forecast_date",
    "forecast_low", "forecast_high", "forecast_passed", "model_version", "protocol_fingerprint",
]  # fmt: skip


def refresh_if_stale(
    *,
    engine: Engine,
    as_of: dt.date,
    protocol: Protocol | None = None,
    progress: Progress | None = None,
) -> Refreshed | None:
    """`refresh_all` unless every stored call is of `as_of` under this protocol and
    model (the daily job; None when nothing needed doing)."""
    protocol = protocol or Protocol()
    if assessment_state(engine=engine).current(as_of, protocol.fingerprint):
        return None
    return refresh_all(engine=engine, as_of=as_of, protocol=protocol, progress=progress)


# --- how current the stored calls are --------------------------------------------------------


@dataclass(frozen=True)
class Made:
    as_of: dt.date
    protocol_fingerprint: str
    model_version: int


@dataclass(frozen=True)
class AssessmentState:
    """The oldest and newest stored call (by day, then rules); both None when nothing
    is stored. Every call is of one day under one protocol exactly when they agree."""

    oldest: Made | None
    newest: Made | None

    @property
    def empty(self) -> bool:
        return self.oldest is None

    @property
    def as_of(self) -> dt.date | None:
        """The day of the oldest stored call: what the board may claim to be as of."""
        return None if self.oldest is None else self.oldest.as_of

    def current(self, today: dt.date, fingerprint: str) -> bool:
        """Every stored call is of `today`, under this protocol and this model."""
        now = Made(today, fingerprint, MODEL_VERSION)
        return self.oldest == now and self.newest == now

    def problem(self, today: dt.date, fingerprint: str) -> str | None:
        """Why the stored calls are not today's calls, in a sentence (None: they are)."""
        if self.oldest is None or self.newest is None:
            return "Not assessed yet: no site's assessment is stored."
        if self.current(today, fingerprint):
            return None
        said = []
        if self.oldest.as_of != today or self.newest.as_of != today:
            said.append(f"assessed as of {spoken_date(self.oldest.as_of)}")
        if {self.oldest.protocol_fingerprint, self.newest.protocol_fingerprint} != {fingerprint}:
            said.append(f"under another protocol than the one in use ({fingerprint})")
        if {self.oldest.model_version, self.newest.model_version} != {MODEL_VERSION}:
            said.append(f"by another model version than this one ({MODEL_VERSION})")
        return f"{'; '.join(said)[:1].upper()}{'; '.join(said)[1:]}; refresh."


def spoken_date(day: dt.date) -> str:
    """'1 Dec 2026': a date as a person reads it in a sentence."""
    return f"{day.day} {day:%b %Y}"


def assessment_state(*, engine: Engine) -> AssessmentState:
    """Which day and rules made the oldest and the newest stored call: one query, two
    probes of an index, whatever the size of the cohort."""
    made = (a.as_of, a.protocol_fingerprint, a.model_version)
    first = sa.select(*made).order_by(*made).limit(1).subquery()
    last = sa.select(*made).order_by(*(c.desc() for c in made)).limit(1).subquery()
    query = sa.union_all(
        sa.select(sa.literal(0).label("end"), *first.c), sa.select(sa.literal(1), *last.c)
    )
    with engine.connect() as conn:
        ends = {row[0]: row[1:] for row in conn.execute(query)}
    if not ends:
        return AssessmentState(None, None)
    return AssessmentState(*(_made(*ends[end]) for end in (0, 1)))


def _made(as_of: dt.date | str, fingerprint: str, model_version: int) -> Made:
    day = as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of))
    return Made(day, fingerprint, int(model_version))


# --- what a person filters by -------------------------------------------------------------


@dataclass(frozen=True)
class SiteFilters:
    """Sites of this stage, this readiness, with this flag; None means any."""

    stage: str | None = None
    readiness: str | None = None
    flag: str | None = None

    @property
    def any(self) -> bool:
        return self.stage is not None or self.readiness is not None or self.flag is not None


STAGES = tuple(s.value for s in Stage)
READINESS = tuple(r.value for r in Readiness)
FLAGS = tuple(f.value for f in Flag)


def site_filters(
    *, stage: str | None = None, readiness: str | None = None, flag: str | None = None
) -> SiteFilters:
    """The filters as a form or URL sends them: empty means any; anything else not a
    value of its list is refused with a sentence naming the field and the choices."""
    return SiteFilters(
        _choice(stage, STAGES, "Stage", "a stage"),
        _choice(readiness, READINESS, "Readiness", "a readiness verdict"),
        _choice(flag, FLAGS, "Flag", "a flag"),
    )


def _choice(value: str | None, allowed: Sequence[str], field: str, what: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if value not in allowed:
        raise TrackerError(
            f"{field} '{value[:40]}' is not {what}; choose one of "
            f"{', '.join(words(v) for v in allowed)}, or leave it empty for any."
        )
    return value


def site_conditions(filters: SiteFilters) -> list[sa.ColumnElement[bool]]:
    """The filters as conditions on `site_assessment` rows."""
    where: list[sa.ColumnElement[bool]] = []
    if filters.stage is not None:
        where.append(a.stage == filters.stage)
    if filters.readiness is not None:
        where.append(a.readiness == filters.readiness)
    if filters.flag is not None:  # flags are ";"-joined names: match a whole name
        where.append((sa.literal(";") + a.flags + sa.literal(";")).like(f"%;{filters.flag};%"))
    return where


def patients_with_sites(filters: SiteFilters) -> sa.ColumnElement[bool] | None:
    """A condition on `patient.id`: the patient has a stored site matching every
    filter (one site meeting them all). None when no filter is set. For the patient
    search: `query.where(patients_with_sites(filters))` keeps its own order and
    paging; the stored calls are as current as `assessment_state` says."""
    where = site_conditions(filters)
    if not where:
        return None
    return patient.c.id.in_(sa.select(a.patient_id).where(*where))
