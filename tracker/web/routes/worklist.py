"""The worklist of open reminders, a page at a time, and their acknowledgement.

Filters and the page position live in the URL (`services.worklist`); an empty
filter value is "any", so the filter form's own defaults are always accepted. After
an acknowledgement the browser comes back to the same filtered page, at the row
after the one acknowledged (`#reminder-ID`), and a one-time notice names what was
closed in words (`web.flash`, never text from the URL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tracker import vocab
from tracker.errors import Conflict, NotFound, TrackerError, ValidationFailed
from tracker.services.audit import record_views
from tracker.services.interop import pending_sites
from tracker.services.worklist import (
    OPEN,
    WINDOW_WORDS,
    Acknowledged,
    Cursor,
    DueWindow,
    WorklistFilters,
    WorklistPage,
    team_names,
    worklist,
)
from tracker.web.actions import acknowledge_reminder, acknowledge_reminders, may_acknowledge
from tracker.web.auth import CAN_EDIT, Viewer
from tracker.web.clinic import safe_next, today
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.flash import flash
from tracker.web.render import render
from tracker.web.views import satisfying_link

router = APIRouter(include_in_schema=False)

Param = Annotated[str | None, Query(max_length=100)]
FILTER_KEYS = ("team", "rule", "status", "window", "mine")
PAGE_KEYS = (*FILTER_KEYS, "after", "before")
NAMED_IN_NOTICE = 10  # a bulk notice names this many reminders, then counts the rest


PENDING_SHOWN = 20  # studies waiting for their finding, shown under the reminders


@router.get("/")
def home(viewer: PageViewer) -> Response:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
def worklist_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    team: Param = None,
    rule: Param = None,
    status: Param = None,
    window: Param = None,
    mine: Param = None,
    after: Param = None,
    before: Param = None,
) -> Response:
    values = {
        "team": team,
        "rule": rule,
        "status": status,
        "window": window,
        "mine": mine,
        "after": after,
        "before": before,
    }
    return _show(request, viewer, engine, values)


def _show(
    request: Request,
    viewer: Viewer,
    engine: Any,
    values: Mapping[str, str | None],
    *,
    status: int = 200,
    error: str | None = None,
    error_field: str | None = None,
    ticked: Sequence[int] = (),
    reason: str = "",
) -> Response:
    """The worklist page for these URL values (also re-shown, with the error marked,
    when a bulk acknowledgement is refused)."""
    filters = WorklistFilters.parse(
        team=values.get("team"),
        rule=values.get("rule"),
        status=values.get("status"),
        window=values.get("window"),
        mine=values.get("mine"),
    )
    day = today(request)
    page = worklist(
        engine=engine,
        today=day,
        filters=filters,
        my_team=viewer.team,
        after=Cursor.parse(values.get("after"), name="after"),
        before=Cursor.parse(values.get("before"), name="before"),
    )
    here = {k: v for k, v in values.items() if k in PAGE_KEYS and v}
    back = "/worklist" + (f"?{urlencode(here)}" if here else "")
    rows = _rows(page, viewer, back)
    # studies that arrived (DICOM files, the PACS) and wait for their finding: the
    # oldest on the first page of the worklist (issue 17)
    first_page = not (values.get("after") or values.get("before"))
    waiting = pending_sites(engine=engine, limit=PENDING_SHOWN + 1) if first_page else []
    # a row per patient shown on this page (issue 15): one insert, however many rows
    record_views(
        engine=engine, actor=viewer.username,
        mrns=[str(row["mrn"]) for row in page.rows] + [s.mrn for s in waiting[:PENDING_SHOWN]],
        what="worklist", search=filters.query(),
    )  # fmt: skip
    return render(
        request,
        "worklist.j2",
        {
            "page": page,
            "rows": rows,
            "f": filters,
            "teams": team_names(engine=engine),
            "rules": [rule.value for rule in vocab.ReminderRule],
            "statuses": OPEN,
            "windows": [(w.value, WINDOW_WORDS[w]) for w in DueWindow],
            "today": day,
            "back": back,
            "links": _links(page),
            "may_bulk": any(r["may_ack"] for r in rows),
            "error": error,
            "error_field": error_field,
            "ticked": set(ticked),
            "reason": reason,
            "waiting": waiting[:PENDING_SHOWN],
            "more_waiting": len(waiting) > PENDING_SHOWN,
        },
        status=status,
    )


def _rows(page: WorklistPage, viewer: Viewer, back: str) -> list[dict[str, Any]]:
    rows = []
    for i, found in enumerate(page.rows):
        row = dict(found)
        # "Record it" comes back to this very page once the record is saved
        row["record_link"] = satisfying_link(row, back) if viewer.may(CAN_EDIT) else None
        row["may_ack"] = may_acknowledge(viewer, row["rule"]) and row["status"] in OPEN
        # where the page should come back to once this row is gone
        neighbour = page.rows[i + 1] if i + 1 < len(page.rows) else page.rows[i - 1] if i else None
        row["next_row"] = neighbour["id"] if neighbour else ""
        rows.append(row)
    return rows


def _links(page: WorklistPage) -> dict[str, str | None]:
    """First / previous / next, each keeping the filters."""
    base = page.filters.query()

    def url(**position: str) -> str:
        query = urlencode({**base, **position})
        return "/worklist" + (f"?{query}" if query else "")

    return {
        "first": None if page.is_first else url(),
        "previous": url(before=str(page.previous)) if page.previous else None,
        "next": url(after=str(page.next)) if page.next else None,
    }


# --- acknowledging ------------------------------------------------------------------


def _back(request: Request, back: str | None) -> str:
    """Where the form was sent from: its `back` field, else the Referer's path."""
    if back:
        return safe_next(back)
    referer = request.headers.get("referer", "")
    return safe_next(referer.partition(str(request.base_url)[:-1])[2])


def _worklist_values(back: str) -> dict[str, str | None] | None:
    """The worklist URL values of `back`, or None when it is not a worklist page."""
    parts = urlsplit(back)
    if parts.path != "/worklist":
        return None
    return {k: v for k, v in parse_qsl(parts.query) if k in PAGE_KEYS}


def _status_of(error: TrackerError) -> int:
    if isinstance(error, ValidationFailed):
        return 422
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 400


def _notice(done: Sequence[Acknowledged], reason: str | None) -> str:
    if len(done) == 1:
        return f"Acknowledged: {done[0].description}."
    named = "; ".join(d.description for d in done[:NAMED_IN_NOTICE])
    rest = len(done) - NAMED_IN_NOTICE
    more = f"; and {rest} more" if rest > 0 else ""
    why = f" ({reason.strip()})" if reason and reason.strip() else ""
    return f"Acknowledged {len(done)} reminders{why}: {named}{more}."


def _returning(back: str, anchor: int | None) -> RedirectResponse:
    target = back.partition("#")[0]
    return RedirectResponse(f"{target}#reminder-{anchor}" if anchor else target, status_code=303)


def _number(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) <= 12 else None


@router.post("/reminders/{reminder_id}/acknowledge")
def acknowledge_page(
    reminder_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    back: Annotated[str | None, Form(max_length=2000)] = None,
    next_row: Annotated[str | None, Form(max_length=20)] = None,
    reason: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    target = _back(request, back)
    try:
        done = acknowledge_reminder(
            engine=engine, viewer=viewer, reminder_id=reminder_id, reason=reason
        )
    except TrackerError as error:
        values = _worklist_values(target)
        if values is None:
            raise
        return _show(request, viewer, engine, values, status=_status_of(error), error=str(error))
    flash(request, _notice([done], reason))
    return _returning(target, _number(next_row))


@router.post("/worklist/acknowledge")
def acknowledge_several_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    reminder: Annotated[list[str] | None, Form()] = None,
    reason: Annotated[str | None, Form(max_length=2000)] = None,
    back: Annotated[str | None, Form(max_length=2000)] = None,
    page_rows: Annotated[str | None, Form(max_length=20000)] = None,
) -> Response:
    """Bulk acknowledge: the ticked reminders with one reason, all or none."""
    target = _back(request, back)
    values = _worklist_values(target) or {}
    ticked = [n for n in (_number(t) for t in reminder or []) if n is not None]
    if len(ticked) != len(reminder or []):
        raise TrackerError("A ticked reminder is not a reminder number; reload the worklist.")
    try:
        done = acknowledge_reminders(
            engine=engine, viewer=viewer, reminder_ids=ticked, reason=reason
        )
    except TrackerError as error:
        field = None
        message = str(error)
        if isinstance(error, ValidationFailed):
            field = error.problems[0].field
            message = " ".join(p.reason for p in error.problems)
        return _show(
            request,
            viewer,
            engine,
            values,
            status=_status_of(error),
            error=message,
            error_field=field,
            ticked=ticked,
            reason=reason or "",
        )
    flash(request, _notice(done, reason))
    shown = [n for n in (_number(t) for t in (page_rows or "").split(",")) if n is not None]
    return _returning(target, _after_removed(shown, {d.id for d in done}))


def _after_removed(shown: Sequence[int], gone: set[int]) -> int | None:
    """The row to come back to: the first one left after the last row removed, else
    the last one left before it."""
    removed = [i for i, rid in enumerate(shown) if rid in gone]
    if not removed:
        return None
    later = [rid for rid in shown[removed[-1] + 1 :] if rid not in gone]
    if later:
        return later[0]
    earlier = [rid for rid in shown[: removed[0]] if rid not in gone]
    return earlier[-1] if earlier else None
