"""What a report shows, as plain values: the services fill these in, the templates
read them. Nothing here touches the store or recomputes an assessment: `assessment`
is the engine's `to_json` structure (model-spec section 8), shown as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tracker.reports.figures import BoardPanel
from tracker.reports.trends import PatientTrend

DISCLAIMER = (
    "This report supports a surgical decision; it does not make one. The readiness "
    "verdicts and forecasts follow the clinic protocol from the recorded data only: "
    "the decision rests with the treating team, on the whole clinical picture."
)


@dataclass(frozen=True, slots=True)
class InjuryLine:
    kind: str
    date: date
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class PatientHeader:
    mrn: str
    name: str
    birth_date: date | None
    age: int | None  # whole years on as_of
    sex: str | None
    team: str | None
    injuries: tuple[InjuryLine, ...]


@dataclass(frozen=True, slots=True)
class TimelineRow:
    date: date
    what: str
    summary: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReminderLine:
    """A stored reminder as the reminders module keeps it (model-spec 9): an open one,
    or a lapsed one (long past when first planned, never sent)."""

    mrn: str
    rule: str
    site: str | None
    side: str | None
    due: date
    status: str
    team: str | None = None
    detail: str | None = None
    name: str | None = None  # the patient's name, shown beside the MRN when known


@dataclass(frozen=True)
class PatientReport:
    header: PatientHeader
    as_of: date
    made_at: datetime  # timezone-aware
    assessment: dict[str, Any]  # to_json(assess_patient(...))
    trend: PatientTrend
    timeline: tuple[TimelineRow, ...]  # dated on or before as_of
    later_records: int  # timeline rows after as_of, left out
    reminders: tuple[ReminderLine, ...] | None  # open ones; None: reminders not available
    protocol: str  # where the protocol came from
    model_version: int  # which model made the calls (model-spec 8)
    protocol_fingerprint: str  # which protocol values made them
    lapsed: tuple[ReminderLine, ...] = ()  # history: long past when first planned, not sent


@dataclass(frozen=True, slots=True)
class BoardSite:
    """One site of the cohort board: the engine's site JSON with its patient."""

    mrn: str
    team: str | None
    site: dict[str, Any]  # one entry of to_json(...)["sites"]
    latest_scan: date | None = None  # latest delayed-phase scan (the rescan list)
    name: str | None = None  # the patient's name, shown beside the MRN when known


@dataclass(frozen=True)
class BoardReport:
    as_of: date
    made_at: datetime
    patients: int
    sites: tuple[BoardSite, ...]  # every site of every patient, by mrn, site, side
    soon: tuple[BoardSite, ...]  # ready, or forecast to stabilise within `soon_days`
    soon_days: int
    panels: tuple[BoardPanel, ...]
    panels_left_out: int
    reminders: tuple[ReminderLine, ...] | None  # overdue; None: not available
    protocol: str
    model_version: int  # which model made the calls (model-spec 8)
    protocol_fingerprint: str  # which protocol values made them
    # forecast date already passed: the curve says the site should have stabilised,
    # so it needs a new scan rather than a place on the "soon" list
    rescan: tuple[BoardSite, ...] = ()
    without_sites: int = 0  # patients with no site evidence
    notes: tuple[str, ...] = field(default=())
