"""The worklist of open reminders and their acknowledgement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from tracker.web.auth import (
    CAN_ACKNOWLEDGE,
)
from tracker.web.clinic import (
    safe_next,
    today,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render
from tracker.web.views import (
    open_reminders,
    satisfying_link,
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(viewer: PageViewer) -> Response:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
def worklist_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    team: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    from tracker.services.teams import list_teams

    day = today(request)
    rows = open_reminders(engine=engine, team=team or None)
    for row in rows:
        row["record_link"] = satisfying_link(row)
        row["overdue"] = row["due"] < day
        row["may_ack"] = viewer.may(CAN_ACKNOWLEDGE) and (
            viewer.role != "surgeon" or row["rule"] == "readiness_review"
        )
    return render(
        request,
        "worklist.j2",
        {
            "rows": rows,
            "team": team or "",
            "teams": [t.name for t in list_teams(engine=engine)],
            "today": day,
            "done": request.query_params.get("done"),
        },
    )


@router.post("/reminders/{reminder_id}/acknowledge")
def acknowledge_page(
    reminder_id: int,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
) -> Response:
    from tracker.web.actions import acknowledge_reminder

    acknowledge_reminder(engine=engine, viewer=viewer, reminder_id=reminder_id)
    back = safe_next(request.headers.get("referer", "").partition(str(request.base_url)[:-1])[2])
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}done={reminder_id}", status_code=303)
