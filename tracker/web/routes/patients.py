"""Patient search, the patient page, its trend figure and its reports."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

import tracker.web.identity as identity
from tracker import vocab
from tracker.errors import Problem, TrackerError, ValidationFailed
from tracker.web.auth import (
    CAN_ACKNOWLEDGE,
    CAN_EDIT,
)
from tracker.web.clinic import (
    FLAGS,
    READINESS,
    STAGES,
    parse_as_of,
    protocol_name_of,
    protocol_of,
    today,
)
from tracker.web.deps import EngineDep, PageViewer
from tracker.web.render import render
from tracker.web.views import (
    PatientFilters,
    patient_rows,
    patient_view,
    satisfying_link,
)

router = APIRouter(include_in_schema=False)
LIST_LIMIT = 200


@router.get("/patients")
def patients_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
    injury: Annotated[vocab.InjuryKind | None, Query()] = None,
    ho: Annotated[str | None, Query(pattern="^(yes|no|)$")] = None,
    stage: Annotated[str | None, Query(max_length=30)] = None,
    readiness: Annotated[str | None, Query(max_length=30)] = None,
    flag: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    from tracker.services.teams import list_teams

    for name, value, allowed in (
        ("stage", stage, STAGES),
        ("readiness", readiness, READINESS),
        ("flag", flag, FLAGS),
    ):
        if value and value not in allowed:
            raise ValidationFailed(
                [_problem(name, f"'{value}' is not one of {', '.join(allowed)}")]
            )
    filters = PatientFilters(
        q=q or None,
        team=team or None,
        injury=injury.value if injury else None,
        ho={"yes": True, "no": False}.get(ho or ""),
        stage=stage or None,
        readiness=readiness or None,
        flag=flag or None,
    )
    rows, total = patient_rows(
        engine=engine,
        filters=filters,
        as_of=today(request),
        protocol=protocol_of(request),
        limit=LIST_LIMIT,
    )
    return render(
        request,
        "patients.j2",
        {
            "rows": rows,
            "total": total,
            "limit": LIST_LIMIT,
            "f": filters,
            "ho": ho or "",
            "teams": [t.name for t in list_teams(engine=engine)],
            "injuries": vocab.values(vocab.InjuryKind),
            "stages": STAGES,
            "readiness_values": READINESS,
            "flags": FLAGS,
        },
    )


def _problem(field: str, reason: str) -> Any:
    return Problem("query", None, field, reason)


@router.get("/patients/{mrn}")
def patient_page(
    mrn: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    day = parse_as_of(request, as_of)
    view = patient_view(engine=engine, mrn=mrn, as_of=day, protocol=protocol_of(request))
    identity.log_view(engine=engine, viewer=viewer, mrn=mrn, what="patient page")
    for row in view.reminders:
        row["record_link"] = satisfying_link(row)
        row["may_ack"] = row["status"] in ("pending", "due", "sent") and (
            viewer.may(CAN_ACKNOWLEDGE)
            and (viewer.role != "surgeon" or row["rule"] == "readiness_review")
        )
    return render(
        request,
        "patient.j2",
        {
            "v": view,
            "p": view.story.patient,
            "mrn_q": quote(mrn, safe=""),
            "may_edit": viewer.may(CAN_EDIT),
            "has_figure": bool(view.assessment["sites"]),
            "done": request.query_params.get("done"),
        },
    )


@router.get("/patients/{mrn}/trend.svg")
def patient_trend_svg(
    mrn: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.reports.figures import figure_bytes, trend_figure
    from tracker.services.reports import patient_report

    day = parse_as_of(request, as_of)
    report = patient_report(engine=engine, mrn=mrn, as_of=day, protocol=protocol_of(request))
    return Response(figure_bytes(trend_figure(report.trend), "svg"), media_type="image/svg+xml")


@router.get("/patients/{mrn}/report.{fmt}")
def patient_report_download(
    mrn: str,
    fmt: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    from tracker.services.reports import patient_report, write_patient_report

    _check_report_format(fmt)
    day = parse_as_of(request, as_of)
    report = patient_report(
        engine=engine,
        mrn=mrn,
        as_of=day,
        protocol=protocol_of(request),
        protocol_name=protocol_name_of(request),
    )
    identity.log_view(engine=engine, viewer=viewer, mrn=mrn, what=f"{fmt} report")
    with tempfile.TemporaryDirectory() as scratch:
        path = write_patient_report(report, Path(scratch), fmt)
        return _download(path)


def _check_report_format(fmt: str) -> None:
    if fmt not in ("html", "pdf"):
        raise TrackerError(f"'{fmt}' is not a report format here; use html or pdf.")


def _download(path: Path) -> Response:
    media = {".pdf": "application/pdf", ".html": "text/html; charset=utf-8"}[path.suffix]
    return Response(
        path.read_bytes(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
    )
