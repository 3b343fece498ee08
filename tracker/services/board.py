"""The surgeons' board, one page at a time (issue 14): every site in the board's
priority order (ready first, then forecast to stabilise soon, then due a rescan, then
the other sites with HO, then those without), read from the stored site assessments.

A page is ordered by (priority, rank date, mrn, id): the id breaks every tie, so
paging by that key (keyset) never loses or repeats a site. "More" is known by reading
one row past the page; nothing counts the cohort. The stored calls say which day and
rules made them (`site_assessments.assessment_state`); the page passes that on so
the board can say when they are out of date. An explicit as-of other than theirs is
assessed live, through the same cohort path and the same columns, and paged the same
way, so the two never disagree.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import TrackerError
from tracker.protocol import Protocol
from tracker.services.assessment import assess_all
from tracker.services.patients import display_name
from tracker.services.site_assessments import (
    SOON_DAYS,
    AssessmentState,
    BoardGroup,
    SiteFilters,
    assessment_rows,
    assessment_state,
    refresh_all,
    site_conditions,
)
from tracker.staging.assess import MODEL_VERSION
from tracker.store.models import (
    BOARD_ORDER,
    BoneScanMeasurement,
    Patient,
    SiteAssessment,
    table_of,
    utcnow,
)

__all__ = ["PAGE_SIZE", "SECTIONS", "BoardCursor", "BoardPage", "BoardRow", "board_page"]

PAGE_SIZE = 50
MAX_PAGE = 500
site_assessment, patient = table_of(SiteAssessment), table_of(Patient)
scan = table_of(BoneScanMeasurement)
a = site_assessment.c

# the board's sections, each a run of priority groups
SECTIONS: tuple[tuple[str, frozenset[int]], ...] = (
    ("soon", frozenset({BoardGroup.ready, BoardGroup.soon})),
    ("rescan", frozenset({BoardGroup.rescan})),
    ("all", frozenset({BoardGroup.other, BoardGroup.no_ho})),
)


# --- where a page starts ----------------------------------------------------------------

_CURSOR = re.compile(r"^([0-4])\.(\d{4}-\d{2}-\d{2})\.(\d{1,18})\.(.+)$", re.S)


@dataclass(frozen=True, order=True)
class BoardCursor:
    """A place in the board's order: a site's group, rank date, mrn and id. It reads
    `1.2026-12-27.812.H-MATURE` in a URL (the mrn last: it may hold any character)."""

    priority: int
    rank_date: dt.date
    mrn: str
    id: int

    def __str__(self) -> str:
        return f"{self.priority}.{self.rank_date.isoformat()}.{self.id}.{self.mrn}"

    @classmethod
    def parse(cls, text: str | None) -> BoardCursor | None:
        """None for an absent or empty value; a sentence for anything the board did
        not make."""
        if not text:
            return None
        found = _CURSOR.match(text)
        day = None
        if found:
            try:
                day = dt.date.fromisoformat(found.group(2))
            except ValueError:
                day = None
        if found is None or day is None:
            raise TrackerError(
                f"The page position after='{text[:40]}' is not one the board gives; start "
                "again from the first page."
            )
        return cls(int(found.group(1)), day, found.group(4), int(found.group(3)))


# --- what a page holds --------------------------------------------------------------------


@dataclass(frozen=True)
class BoardRow:
    """One site on the board: the stored call, the patient's name and team, and the
    date of the site's latest delayed-phase scan on or before the call's day."""

    id: int
    patient_id: int
    mrn: str
    name: str
    team: str | None
    site: str
    side: str
    stage: str
    activity: str
    readiness: str
    flags: tuple[str, ...]
    forecast_date: dt.date | None
    forecast_low: dt.date | None
    forecast_high: dt.date | None
    forecast_passed: bool | None
    priority: int
    rank_date: dt.date
    as_of: dt.date
    latest_scan: dt.date | None = None

    @property
    def cursor(self) -> BoardCursor:
        return BoardCursor(self.priority, self.rank_date, self.mrn, self.id)


@dataclass(frozen=True)
class BoardSection:
    """The rows of one section on this page; `continued` when it began on an earlier
    page. A section with no rows is shown only where the page spans all of it (it is
    empty under these filters)."""

    key: str
    rows: tuple[BoardRow, ...]
    continued: bool


@dataclass(frozen=True)
class BoardPage:
    as_of: dt.date
    live: bool  # assessed for this request (an explicit as-of), not read from the store
    state: AssessmentState
    stale: str | None  # why the stored calls are not today's, in a sentence
    filters: SiteFilters
    rows: tuple[BoardRow, ...]
    sections: tuple[BoardSection, ...]
    next_after: BoardCursor | None
    first_page: bool
    soon_days: int
    model_version: int
    protocol_fingerprint: str


def board_page(
    *,
    engine: Engine,
    today: dt.date,
    protocol: Protocol | None = None,
    as_of: dt.date | None = None,
    filters: SiteFilters | None = None,
    after: BoardCursor | None = None,
    limit: int = PAGE_SIZE,
    soon_days: int = SOON_DAYS,
) -> BoardPage:
    """One page of the board. Without `as_of` it reads the stored calls, whatever day
    they are of (`stale` says so); when none is stored yet, it stores today's first.
    An `as_of` the stored calls are not all of (or not under this protocol) is
    assessed live. A fixed number of queries, whatever the size of the cohort."""
    protocol = protocol or Protocol()
    filters = filters or SiteFilters()
    limit = max(1, min(limit, MAX_PAGE))
    fingerprint = protocol.fingerprint
    state = assessment_state(engine=engine)
    if as_of is None and state.empty:
        refresh_all(engine=engine, as_of=today, protocol=protocol, soon_days=soon_days)
        state = assessment_state(engine=engine)
    live = as_of is not None and not state.current(as_of, fingerprint)
    if live:
        assert as_of is not None
        rows = _live_rows(engine, as_of, protocol, filters, after, limit + 1, soon_days)
        day = as_of
    else:
        rows = _stored_rows(engine, filters, after, limit + 1)
        day = state.as_of or today
    more = len(rows) > limit
    shown = _completed(engine, rows[:limit], live)
    following = rows[limit]["priority"] if more else None
    return BoardPage(
        as_of=day,
        live=live,
        state=state,
        stale=None if live else state.problem(today, fingerprint),
        filters=filters,
        rows=tuple(shown),
        sections=_sections(shown, after, following),
        next_after=shown[-1].cursor if more else None,
        first_page=after is None,
        soon_days=soon_days,
        model_version=MODEL_VERSION,
        protocol_fingerprint=fingerprint,
    )


def _stored_rows(
    engine: Engine, filters: SiteFilters, after: BoardCursor | None, limit: int
) -> list[dict[Any, Any]]:
    order = [a[name] for name in BOARD_ORDER]
    query = sa.select(site_assessment).where(*site_conditions(filters))
    if after is not None:
        bound = (after.priority, after.rank_date, after.mrn, after.id)
        query = query.where(
            sa.tuple_(*order)
            > sa.tuple_(*(sa.literal(v, c.type) for v, c in zip(bound, order, strict=True)))
        )
    with engine.connect() as conn:
        found = conn.execute(query.order_by(*order).limit(limit)).mappings().all()
    return [dict(r) for r in found]


def _live_rows(
    engine: Engine,
    as_of: dt.date,
    protocol: Protocol,
    filters: SiteFilters,
    after: BoardCursor | None,
    limit: int,
    soon_days: int,
) -> list[dict[Any, Any]]:
    """The stored columns of a cohort run on `as_of`, filtered, ordered and cut as the
    stored ones are; the id is the site's place in the run's (mrn, site, side) order."""
    frame = assess_all(engine=engine, as_of=as_of, protocol=protocol)
    with engine.connect() as conn:
        pairs = conn.execute(
            sa.select(patient.c.mrn, patient.c.id).where(patient.c.voided_at.is_(None))
        ).all()
    ids = pd.Series([i for _, i in pairs], index=[m for m, _ in pairs], dtype="int64")
    frame = frame[frame["mrn"].isin(ids.index)].reset_index(drop=True)
    rows = assessment_rows(frame, ids, as_of=as_of, assessed_at=utcnow(), soon_days=soon_days)
    rows["id"] = np.arange(1, len(rows) + 1)
    keep = np.ones(len(rows), dtype=bool)
    if filters.stage is not None:
        keep &= (rows["stage"] == filters.stage).to_numpy()
    if filters.readiness is not None:
        keep &= (rows["readiness"] == filters.readiness).to_numpy()
    if filters.flag is not None:
        keep &= (";" + rows["flags"] + ";").str.contains(f";{filters.flag};", regex=False)
    if after is not None:
        keep &= _after(rows, after)
    chosen = rows[keep].sort_values(list(BOARD_ORDER), kind="stable").head(limit)
    return chosen.to_dict("records")


def _after(rows: pd.DataFrame, c: BoardCursor) -> np.ndarray:
    """Rows past the cursor in (priority, rank_date, mrn, id) order."""
    p, r = rows["priority"].to_numpy(), rows["rank_date"].to_numpy(dtype=object)
    m, i = rows["mrn"].to_numpy(dtype=object), rows["id"].to_numpy()
    day = c.rank_date.isoformat()
    return np.asarray(
        (p > c.priority)
        | (
            (p == c.priority)
            & ((r > day) | ((r == day) & ((m > c.mrn) | ((m == c.mrn) & (i > c.id)))))
        )
    )


def _day(value: object) -> dt.date | None:
    if value is None or value is pd.NA or value != value:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _row(
    r: Mapping[Any, Any], name: str, team: str | None, latest_scan: dt.date | None
) -> BoardRow:
    flags = str(r["flags"] or "")
    passed = r["forecast_passed"]
    rank_date, as_of = _day(r["rank_date"]), _day(r["as_of"])
    assert rank_date is not None and as_of is not None
    return BoardRow(
        id=int(r["id"]),
        patient_id=int(r["patient_id"]),
        mrn=str(r["mrn"]),
        name=name,
        team=team,
        site=str(r["site"]),
        side=str(r["side"]),
        stage=str(r["stage"]),
        activity=str(r["activity"]),
        readiness=str(r["readiness"]),
        flags=tuple(flags.split(";")) if flags else (),
        forecast_date=_day(r["forecast_date"]),
        forecast_low=_day(r["forecast_low"]),
        forecast_high=_day(r["forecast_high"]),
        forecast_passed=None if passed is None else bool(passed),
        priority=int(r["priority"]),
        rank_date=rank_date,
        as_of=as_of,
        latest_scan=latest_scan,
    )


def _completed(engine: Engine, rows: Sequence[Mapping[Any, Any]], live: bool) -> list[BoardRow]:
    """The page's rows with their patients' names and teams and each site's latest
    delayed-phase scan on or before its call's day: two queries, each answering at
    most one row per site of the page."""
    if not rows:
        return []
    ids = sorted({int(r["patient_id"]) for r in rows})
    names = sa.select(patient.c.id, patient.c.family_name, patient.c.given_name, patient.c.team)
    latest = sa.func.max(scan.c.date)
    delayed = (scan.c.phase == "delayed", scan.c.voided_at.is_(None))
    if live:  # one day for the whole page
        as_of = _day(rows[0]["as_of"])
        scans = sa.select(scan.c.patient_id, scan.c.site, scan.c.side, latest).where(
            scan.c.patient_id.in_(ids), scan.c.date <= as_of, *delayed
        )
    else:  # each stored call's own day
        on_site = sa.and_(
            scan.c.patient_id == a.patient_id,
            scan.c.site == a.site,
            scan.c.side == a.side,
            scan.c.date <= a.as_of,
        )
        scans = (
            sa.select(a.patient_id, a.site, a.side, latest)
            .select_from(site_assessment.join(scan, on_site))
            .where(a.id.in_([int(r["id"]) for r in rows]), *delayed)
        )
    with engine.connect() as conn:
        people = {
            i: (display_name(f, g), t)
            for i, f, g, t in conn.execute(names.where(patient.c.id.in_(ids)))
        }
        dated = {
            (pid, site, side): _day(day)
            for pid, site, side, day in conn.execute(scans.group_by(*scans.selected_columns[:3]))
        }
    out = []
    for r in rows:
        name, team = people.get(int(r["patient_id"]), ("", None))
        out.append(_row(r, name, team, dated.get((int(r["patient_id"]), r["site"], r["side"]))))
    return out


def _sections(
    rows: Sequence[BoardRow], after: BoardCursor | None, following: int | None
) -> tuple[BoardSection, ...]:
    """The page's rows by section. The page spans the groups from just past the
    cursor's to just before the next page's first row (`following`, its group); a
    section inside that span with no rows is empty under these filters, and says so."""
    start = after.priority if after is not None else -1
    end = following if following is not None else len(BoardGroup)
    out = []
    for key, groups in SECTIONS:
        mine = tuple(r for r in rows if r.priority in groups)
        if mine or (start < min(groups) and max(groups) < end):
            out.append(BoardSection(key, mine, continued=start in groups))
    return tuple(out)
