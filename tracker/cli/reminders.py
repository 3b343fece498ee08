"""`ho-tracker reminders plan|list|ack|deliver` and `ho-tracker scheduler`, which runs
the same reminder jobs on its own until stopped."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tracker.cli.console import clinic_protocol, day_or_today, err, login_name, open_engine, out
from tracker.config import get_settings
from tracker.errors import TrackerError
from tracker.vocab import ReminderStatus

app = typer.Typer(
    help="Screening and follow-up reminders: plan, list, acknowledge, deliver.",
    no_args_is_help=True,
)

ProtocolOption = Annotated[
    Path | None,
    typer.Option(
        help="Clinic protocol TOML file (default: HO_TRACKER_PROTOCOL_FILE or the spec's)."
    ),
]
STATUSES = ", ".join(s.value for s in ReminderStatus)


@app.command("plan")
def plan_command(
    as_of: Annotated[str | None, typer.Option(help="Plan as of this date (default today).")] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be created and cancelled; write nothing."),
    ] = False,
    protocol: ProtocolOption = None,
) -> None:
    """Plan every reminder due up to as_of + 60 days (the protocol's horizon)."""
    from tracker.reminders.planner import plan

    day = day_or_today(as_of, "--as-of")
    result = plan(
        engine=open_engine(), as_of=day, protocol=clinic_protocol(protocol), dry_run=dry_run
    )
    verb = "would be" if dry_run else "were"
    for title, frame, extra in (
        ("created", result.created, "detail"),
        ("satisfied", result.satisfied, None),
        ("cancelled", result.cancelled, "reason"),
    ):
        if dry_run and len(frame):
            table = Table(
                "mrn", "rule", "site", "due", *([extra] if extra else []), title=f"{title}"
            )
            for row in frame.head(200).to_dict("records"):
                where = f"{row['site']} {row['side']}" if row["site"] else ""
                cells = [str(row["mrn"]), str(row["rule"]), where, row["due"].isoformat()]
                table.add_row(*cells, *([str(row[extra])] if extra else []))
            out.print(table)
            if len(frame) > 200:
                out.print(f"... and {len(frame) - 200} more {title}")
    lapsed = len(result.lapsed)
    out.print(
        f"Plan as of {day.isoformat()}: {len(result.created)} reminders {verb} created"
        + (
            f" ({lapsed} of them lapsed: long past when first planned, kept in the "
            "patients' history, never delivered)"
            if lapsed
            else ""
        )
        + f", {len(result.satisfied)} {verb} satisfied, {len(result.cancelled)} {verb} "
        f"cancelled, {len(result.reopened)} {verb} reopened, {result.now_due} {verb} made due."
        + (" (dry run: nothing written)" if dry_run else "")
    )


@app.command("list")
def list_command(
    mrn: Annotated[str | None, typer.Option(help="Only this patient (all statuses).")] = None,
    status: Annotated[str | None, typer.Option(help=f"Only this status: {STATUSES}.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's patients.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """The worklist: open reminders (due, sent), most overdue first, or those of a
    patient (all statuses, lapsed included) or status."""
    from tracker.services.worklist import WorklistFilters, every_row, patient_reminders

    if status and status not in ReminderStatus.__members__:
        raise TrackerError(f"--status '{status}' is not a reminder status; use one of {STATUSES}.")
    engine = open_engine()
    if mrn:
        rows = [
            row
            for row in patient_reminders(engine=engine, mrn=mrn)
            if (not status or row["status"] == status) and (not team or row["team"] == team)
        ]
    else:
        rows = list(
            every_row(
                engine=engine,
                today=dt.date.today(),
                filters=WorklistFilters(team=team, status=status),
                statuses=None if status else (ReminderStatus.due, ReminderStatus.sent),
            )
        )
    from tracker.services.audit import record_views

    asked = {"mrn": mrn, "status": status, "team": team}
    record_views(
        engine=engine, actor=login_name(), mrns=[str(row["mrn"]) for row in rows],
        what="reminder list (command line)", search=asked,
    )  # fmt: skip
    if json_out:
        print(json.dumps([_json(row) for row in rows]))
        return
    from tracker import labels

    table = Table(
        "id", "mrn", "team", "reminder", "site", "due", "status", "why", "note",
        title=f"{len(rows)} reminders",
    )  # fmt: skip
    for row in rows:
        # words, as the worklist page says them (issue 16: no raw vocabulary codes)
        where = f"{labels.words(row['side'])} {labels.words(row['site'])}" if row["site"] else ""
        note = row["cancel_reason"] or row["last_error"] or ("late" if row["late"] else "")
        if row["status"] == ReminderStatus.lapsed:
            note = note or "long past when first planned: never delivered"
        if row["status"] == "sent" and row["accepted_at"] is None and not row["last_error"]:
            note = note or "being sent"
        table.add_row(
            str(row["id"]), row["mrn"], row["team"] or "", labels.rule(row["rule"]), where,
            row["due"].isoformat(), labels.words(row["status"]), row["detail"] or "", note or "",
        )  # fmt: skip
    out.print(table)
    if not status:
        _print_waiting(engine, mrn)


WAITING_SHOWN = 20


def _print_waiting(engine: Any, mrn: str | None) -> None:
    """The studies that arrived (DICOM files, the PACS) and wait for their finding,
    as the worklist page says them (issue 17)."""
    from tracker import labels
    from tracker.services.interop import pending_sites

    waiting = pending_sites(engine=engine, mrn=mrn, limit=WAITING_SHOWN + 1)
    today = dt.date.today()
    for site in waiting[:WAITING_SHOWN]:
        said = labels.arrived(
            site.modality, site.site, site.side, site.date, body_part=site.body_part, today=today
        )
        out.print(f"{site.mrn}: {labels.capital(said)} (`ho-tracker dicom complete {site.id}`).")
    if len(waiting) > WAITING_SHOWN:
        out.print("More studies wait for their finding: `ho-tracker dicom pending` lists them.")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": row["id"],
        "mrn": row["mrn"],
        "team": row["team"],
        "rule": row["rule"],
        "site": row["site"],
        "side": row["side"],
        "due": row["due"].isoformat(),
        "status": row["status"],
        "detail": row["detail"],
        "cancel_reason": row["cancel_reason"],
        "recipient": row["recipient"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "message_id": row["message_id"],
        "sent_at": stamp(row["sent_at"]),
        "accepted_at": stamp(row["accepted_at"]),
        "late": bool(row["late"]),
        "escalated_at": stamp(row["escalated_at"]),
    }


@app.command("ack")
def ack_command(
    reminder_id: Annotated[int, typer.Argument(help="The reminder's id (see list).")],
    reason: Annotated[str | None, typer.Option(help="Why (kept on the reminder).")] = None,
) -> None:
    """Acknowledge a reminder: it is closed and will not be escalated."""
    from tracker.services.worklist import acknowledge

    done = acknowledge(
        engine=open_engine(), reminder_id=reminder_id, by=login_name(), reason=reason
    )
    out.print(f"Reminder {reminder_id} acknowledged (was {done.previous}): {done.description}.")


@app.command("deliver")
def deliver_command(protocol: ProtocolOption = None) -> None:
    """Deliver due reminders and escalations once, now (the scheduler does this on its own)."""
    from tracker.reminders.delivery import Deliverer
    from tracker.reminders.jobs import summarise_problems

    deliverer = Deliverer(
        engine=open_engine(), protocol=clinic_protocol(protocol), settings=get_settings()
    )
    report = deliverer.deliver()
    report.add(deliverer.escalate())
    for line in summarise_problems(report.problems):
        err.print(line)
    out.print(
        f"{report.sent} sent ({report.late} late), {report.escalated} escalated, "
        f"{report.closed} closed on re-check, {report.waiting} waiting for a retry, "
        f"{report.unconfirmed} unconfirmed."
    )


def scheduler_command(protocol: ProtocolOption = None) -> None:
    """Run the reminder jobs (plan, deliver, escalate, daily digest) until stopped."""
    from tracker.reminders.jobs import ReminderJobs, run_blocking

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    if not settings.smtp_host:
        logging.getLogger("tracker.reminders").warning(
            "no SMTP server configured (HO_TRACKER_SMTP_HOST): reminders stay on the worklist"
        )
    engine = open_engine()
    run_blocking(ReminderJobs(engine=engine, protocol=clinic_protocol(protocol), settings=settings))
