"""Reports for surgeons: one patient's report and the cohort board (issue 5).

The assessment comes from the same functions `assess` uses (`assessment.assess_one`
for a patient, `assessment.assess_all` for the cohort), so a report can never
disagree with the command line. Reminders are read from the reminders module when
it and its table exist; otherwise the report says they are not available.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.errors import TrackerError
from tracker.protocol import Protocol
from tracker.reports.content import (
    BoardReport,
    BoardSite,
    InjuryLine,
    PatientHeader,
    PatientReport,
    ReminderLine,
    TimelineRow,
)
from tracker.reports.figures import BoardPanel, board_figure, trend_figure, write_figure
from tracker.reports.render import html_to_pdf, render_board_html, render_patient_html
from tracker.reports.trends import CourseSpan, course_label, patient_trend
from tracker.services import site_assessments
from tracker.services.assessment import assess_all, assess_one
from tracker.services.patients import display_name, list_patients, timeline
from tracker.staging import assess_patient, to_json
from tracker.staging.assess import MODEL_VERSION
from tracker.staging.cohort import cohort_as_json_sites
from tracker.staging.records import RangeOfMotion
from tracker.store.loaders import patient_records, story_records
from tracker.store.story import PatientStory, load_story

log = logging.getLogger(__name__)

ReportFormat = Literal["html", "pdf", "png", "svg"]
REPORT_FORMATS: tuple[str, ...] = ("html", "pdf", "png", "svg")
OPEN_REMINDERS = ("pending", "due", "sent")  # not yet satisfied, acknowledged or cancelled
# long past when a plan first made it (model-spec 9, v2): never sent, never on a worklist
# or the board's overdue list, but part of the patient's reminder history
LAPSED = "lapsed"
SOON_DAYS = site_assessments.SOON_DAYS  # the board page's, so the two agree
MAX_BOARD_PANELS = 60


def made_now(protocol: Protocol) -> dt.datetime:
    """Now, in the clinic's time zone (an edge: the report is read there)."""
    zone = getattr(getattr(protocol, "reminders", None), "time_zone", "UTC")
    return dt.datetime.now(dt.UTC).astimezone(ZoneInfo(zone))


# --- reminders (decoupled: the reminders module may be absent) --------------------------


def stored_reminders(
    *, engine: Engine, mrn: str | None = None, statuses: Sequence[str] = OPEN_REMINDERS
) -> list[ReminderLine] | None:
    """Reminders in `statuses` (default the open ones: pending, due, sent) of one
    patient or of everyone, oldest due first; None when this installation has no
    reminders module or reminder table."""
    try:
        from tracker.services.worklist import WorklistFilters, every_row, patient_reminders
    except ImportError:
        return None
    try:
        if not sa.inspect(engine).has_table("reminder"):
            return None
        if mrn is not None:
            rows = patient_reminders(engine=engine, mrn=mrn)
        else:
            rows = [
                r
                for s in statuses
                for r in every_row(
                    engine=engine, today=dt.date.today(), filters=WorklistFilters(status=s)
                )
            ]
        lines = [_reminder_line(row) for row in rows if row["status"] in statuses]
    except (sa.exc.SQLAlchemyError, TypeError, KeyError, AttributeError) as error:
        log.warning("reminders could not be read for the report: %s", error)
        return None
    return sorted(lines, key=lambda m: (m.due, m.mrn, m.rule, m.site or "", m.side or ""))


def _reminder_line(row: dict[str, Any]) -> ReminderLine:
    due = row["due"]
    return ReminderLine(
        mrn=str(row["mrn"]),
        rule=str(row["rule"]),
        site=row.get("site"),
        side=row.get("side"),
        due=due if isinstance(due, dt.date) else dt.date.fromisoformat(str(due)),
        status=str(row["status"]),
        team=row.get("team"),
        detail=row.get("detail"),
    )


# --- the patient report ------------------------------------------------------------------


def patient_report(
    *,
    engine: Engine,
    mrn: str,
    as_of: dt.date,
    protocol: Protocol | None = None,
    protocol_name: str = "the spec's defaults",
    made_at: dt.datetime | None = None,
) -> PatientReport:
    """Everything the patient report shows; NotFound for an unknown mrn."""
    protocol = protocol or Protocol()
    assessment = assess_one(engine=engine, mrn=mrn, as_of=as_of, protocol=protocol)
    with Session(engine) as session:
        story = load_story(session, mrn)
    records = story_records(story)
    trend = patient_trend(
        records, assessment, protocol, courses=_course_spans(story, as_of), motion=_motion(story)
    )
    events = timeline(story)
    shown = tuple(
        TimelineRow(e.date, e.kind, e.summary, tuple(e.details)) for e in events if e.date <= as_of
    )
    reminders = stored_reminders(engine=engine, mrn=mrn, statuses=(*OPEN_REMINDERS, LAPSED))
    return PatientReport(
        header=_header(story, as_of),
        as_of=as_of,
        made_at=made_at or made_now(protocol),
        assessment=to_json(assessment),
        trend=trend,
        timeline=shown,
        later_records=len(events) - len(shown),
        reminders=None
        if reminders is None
        else tuple(m for m in reminders if m.status in OPEN_REMINDERS),
        protocol=protocol_name,
        model_version=MODEL_VERSION,
        protocol_fingerprint=protocol.fingerprint,
        lapsed=() if reminders is None else tuple(m for m in reminders if m.status == LAPSED),
    )


def _header(story: PatientStory, as_of: dt.date) -> PatientHeader:
    p = story.patient
    return PatientHeader(
        mrn=p.mrn,
        name=display_name(p.family_name, p.given_name),
        birth_date=p.birth_date,
        age=_age(p.birth_date, as_of),
        sex=p.sex,
        team=p.team,
        injuries=tuple(
            InjuryLine(i.kind, i.date, i.notes)
            for i in sorted(story.injuries, key=lambda i: i.date)
            if i.date <= as_of
        ),
    )


def _age(born: dt.date | None, on: dt.date) -> int | None:
    if born is None or born > on:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _course_spans(story: PatientStory, as_of: dt.date) -> tuple[CourseSpan, ...]:
    """Courses as drawn on the trend: a course recorded for a site shows on that site's
    panel only; one that ends after as_of was still running on as_of."""
    return tuple(
        CourseSpan(
            label=course_label(c.agent, c.intent),
            start=c.start_date,
            end=c.end_date if c.end_date is not None and c.end_date <= as_of else None,
            site=c.site,
            side=c.side,
        )
        for c in sorted(story.courses, key=lambda c: (c.start_date, c.agent))
        if c.start_date <= as_of
    )


def _motion(story: PatientStory) -> tuple[RangeOfMotion, ...]:
    """The range of motion measured at the bedside, drawn under each site's panel."""
    return tuple(
        RangeOfMotion(date=m.date, site=m.site, side=m.side, movement=m.movement, degrees=m.degrees)
        for m in story.range_of_motion
    )


# --- the cohort board ----------------------------------------------------------------------


def board_report(
    *,
    engine: Engine,
    as_of: dt.date,
    protocol: Protocol | None = None,
    protocol_name: str = "the spec's defaults",
    made_at: dt.datetime | None = None,
    soon_days: int = SOON_DAYS,
    max_panels: int = MAX_BOARD_PANELS,
) -> BoardReport:
    """Every patient's sites by stage and readiness (the cohort path), the sites ready
    or forecast to stabilise within `soon_days`, the sites whose forecast date has
    passed (a rescan is due), overdue reminders, and small multiples of the trends
    of the sites with delayed-phase bone scans."""
    protocol = protocol or Protocol()
    frame = assess_all(engine=engine, as_of=as_of, protocol=protocol)
    by_mrn = cohort_as_json_sites(frame)
    teams = {p.mrn: p.team for p in list_patients(engine=engine)}
    sites = tuple(
        BoardSite(mrn, teams.get(mrn), site) for mrn in sorted(by_mrn) for site in by_mrn[mrn]
    )
    horizon = (as_of + dt.timedelta(days=soon_days)).isoformat()

    def soon_key(x: BoardSite) -> tuple[int, str, str]:
        ready = x.site["readiness"] == "ready"
        forecast = x.site["forecast"]["date"] if x.site["forecast"] else "9999"
        return (0 if ready else 1, forecast, x.mrn)

    def passed(x: BoardSite) -> bool:
        return x.site["forecast"] is not None and bool(x.site["forecast"]["passed"])

    soon = tuple(
        sorted(
            (
                x
                for x in sites
                if x.site["readiness"] == "ready"
                or (
                    x.site["forecast"] is not None
                    and not passed(x)
                    and x.site["forecast"]["date"] <= horizon
                )
            ),
            key=soon_key,
        )
    )
    rescan = _with_latest_scans(engine, [x for x in sites if passed(x)], as_of)
    with_scans = [
        x for x in sites if x.site["latest_ratio"] is not None and x.site["stage"] != "none"
    ]
    # the panels: the sites stabilising soon first, then those due a rescan, then the rest
    first = [x for x in soon if x.site["latest_ratio"] is not None] + [
        x for x in sites if passed(x) and x.site["latest_ratio"] is not None
    ]
    first_ids = {id(x) for x in first}
    ordered = first + [x for x in with_scans if id(x) not in first_ids]
    panels = _board_panels(engine, ordered[:max_panels], as_of, protocol)
    reminders = stored_reminders(engine=engine)
    overdue = None if reminders is None else tuple(m for m in reminders if m.due < as_of)
    return BoardReport(
        as_of=as_of,
        made_at=made_at or made_now(protocol),
        patients=len(teams),
        sites=sites,
        soon=soon,
        soon_days=soon_days,
        panels=tuple(panels),
        panels_left_out=max(0, len(ordered) - max_panels),
        reminders=overdue,
        protocol=protocol_name,
        model_version=MODEL_VERSION,
        protocol_fingerprint=protocol.fingerprint,
        rescan=tuple(sorted(rescan, key=lambda x: (x.site["forecast"]["date"], x.mrn))),
        without_sites=len(set(teams) - set(by_mrn)),
    )


def _with_latest_scans(
    engine: Engine, chosen: Sequence[BoardSite], as_of: dt.date
) -> list[BoardSite]:
    """The chosen sites, each with the date of its latest delayed-phase scan on or
    before as_of (one query, whatever the number of sites)."""
    if not chosen:
        return []
    from tracker.store.models import BoneScanMeasurement, Patient, table_of

    scan, patient = table_of(BoneScanMeasurement), table_of(Patient)
    mrns = sorted({x.mrn for x in chosen})
    query = (
        sa.select(patient.c.mrn, scan.c.site, scan.c.side, sa.func.max(scan.c.date))
        .select_from(scan.join(patient, scan.c.patient_id == patient.c.id))
        .where(
            scan.c.phase == "delayed",
            scan.c.date <= as_of,
            scan.c.voided_at.is_(None),
            patient.c.mrn.in_(mrns),
        )
        .group_by(patient.c.mrn, scan.c.site, scan.c.side)
    )
    with engine.connect() as conn:
        latest = {(m, site, side): day for m, site, side, day in conn.execute(query)}
    return [
        replace(x, latest_scan=latest.get((x.mrn, x.site["site"], x.site["side"]))) for x in chosen
    ]


def _board_panels(
    engine: Engine, chosen: Sequence[BoardSite], as_of: dt.date, protocol: Protocol
) -> list[BoardPanel]:
    """The trends of the chosen sites, patient by patient through the one-patient path
    (its answers equal the cohort path's)."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for x in chosen:
        wanted.setdefault(x.mrn, []).append((x.site["site"], x.site["side"]))
    trends = {}
    with Session(engine) as session:
        for mrn, keys in wanted.items():
            records = patient_records(session, mrn)
            assessment = assess_patient(records, as_of, protocol)
            kept = tuple(s for s in assessment.sites if (s.site, s.side) in keys)
            trend = patient_trend(records, replace(assessment, sites=kept), protocol)
            for site in trend.sites:
                trends[(mrn, site.site, site.side)] = site
    return [
        BoardPanel(x.mrn, trends[(x.mrn, x.site["site"], x.site["side"])], as_of) for x in chosen
    ]


# --- writing files ----------------------------------------------------------------------------


def check_format(fmt: str) -> None:
    if fmt not in REPORT_FORMATS:
        raise TrackerError(
            f"--format '{fmt}' is not a report format; use one of {', '.join(REPORT_FORMATS)}."
        )


def safe_name(text: str) -> str:
    """A file-name-safe form of an mrn: letters, digits, '-', '_' and '.' kept."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned or "patient"


def write_patient_report(report: PatientReport, out_dir: Path, fmt: str = "html") -> Path:
    """Write the report (html, pdf) or its trend figure alone (png, svg) into out_dir."""
    check_format(fmt)
    path = out_dir / f"{safe_name(report.header.mrn)}_{report.as_of.isoformat()}"
    if fmt in ("png", "svg"):
        return write_figure(trend_figure(report.trend), path.with_suffix(f".{fmt}"))
    medium: Literal["screen", "print"] = "print" if fmt == "pdf" else "screen"
    html = render_patient_html(report, medium)
    return _write(path.with_suffix(f".{fmt}"), html, fmt)


def write_board_report(board: BoardReport, out_dir: Path, fmt: str = "html") -> Path:
    """Write the board (html, pdf) or its small multiples alone (png, svg) into out_dir."""
    check_format(fmt)
    path = out_dir / f"board_{board.as_of.isoformat()}"
    if fmt in ("png", "svg"):
        return write_figure(board_figure(board.panels), path.with_suffix(f".{fmt}"))
    medium: Literal["screen", "print"] = "print" if fmt == "pdf" else "screen"
    return _write(path.with_suffix(f".{fmt}"), render_board_html(board, medium), fmt)


def _write(path: Path, html: str, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pdf":
        path.write_bytes(html_to_pdf(html))
    else:
        path.write_text(html, encoding="utf-8")
    return path
