"""Patient search, the patient page, its trend figure and its reports."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

import tracker.web.identity as identity
from tracker import vocab
from tracker.errors import TrackerError
from tracker.services.patients import PAGE_SIZE
from tracker.templating import words
from tracker.web import exam_form
from tracker.web.auth import (
    CAN_ACKNOWLEDGE,
    CAN_EDIT,
)
from tracker.web.clinic import (
    FLAGS,
    READINESS,
    STAGES,
    AsOfRefused,
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


# The list's filters as the form names them, and their words for a refusal.
FILTER_WORDS = {
    "q": "Search",
    "team": "Team",
    "injury": "Injury",
    "ho": "HO found",
    "stage": "Stage",
    "readiness": "Readiness",
    "flag": "Flag",
}
SEARCH_LENGTH = 100


@router.get("/patients")
def patients_page(
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    q: str | None = None,
    team: str | None = None,
    injury: str | None = None,
    ho: str | None = None,
    stage: str | None = None,
    readiness: str | None = None,
    flag: str | None = None,
    after: str | None = None,
    start: str | None = None,
) -> Response:
    """The patient list, 50 a page in name order, found by the start of a name or an
    MRN. An empty filter means any (the form sends every filter, empty by default);
    a value the form would not send is refused in a sentence naming the filter, on
    the list's own page with its form. `after` is where the page starts (the Next
    link's cursor) and `start` how many came before it (only for the caption)."""
    from tracker.services.worklist import team_names  # names only: no count of patients

    teams = team_names(engine=engine)
    raw = {"q": q, "team": team, "injury": injury, "ho": ho}
    raw |= {"stage": stage, "readiness": readiness, "flag": flag}
    values = {name: (value or "").strip() for name, value in raw.items()}
    errors = _filter_errors(values, teams)
    filters = PatientFilters(
        q=values["q"] or None,
        team=values["team"] or None,
        injury=values["injury"] or None,
        ho={"yes": True, "no": False}.get(values["ho"]),
        stage=values["stage"] or None,
        readiness=values["readiness"] or None,
        flag=values["flag"] or None,
    )
    context: dict[str, Any] = {
        "values": values,
        "errors": errors,
        "teams": teams,
        "injuries": vocab.values(vocab.InjuryKind),
        "stages": STAGES,
        "readiness_values": READINESS,
        "flags": FLAGS,
        "rows": [],
        "assessed": False,
        "stale": None,
        "first": 0,
        "next_link": None,
        "first_link": None,
    }
    if errors:
        return render(request, "patients.j2", context, status=422)
    page = patient_rows(
        engine=engine,
        filters=filters,
        as_of=today(request),
        protocol=protocol_of(request),
        after=after or None,
        size=PAGE_SIZE,
    )
    from tracker.services.audit import record_views

    # a row per patient shown (issue 15): `audit --mrn` finds every search they appeared in
    record_views(
        engine=engine, actor=viewer.username, mrns=[str(row.summary.mrn) for row in page.rows],
        what="patient search", search=values,
    )  # fmt: skip
    first = int(start) if after and start and start.isdigit() and len(start) < 10 else 0
    shown = filters.query()
    if page.next_after:
        onward = [("after", page.next_after), ("start", str(first + len(page.rows)))]
        context["next_link"] = f"/patients?{urlencode(shown + onward)}"
    if after:
        context["first_link"] = f"/patients?{urlencode(shown)}" if shown else "/patients"
    context |= {"rows": page.rows, "assessed": page.assessed, "first": first}
    context |= {"stale": page.stale, "assessed_as_of": page.assessed_as_of}
    return render(request, "patients.j2", context)


def _filter_errors(values: dict[str, str], teams: list[str]) -> dict[str, str]:
    """A sentence for each filter whose value its form would not send."""
    choices = {
        "team": ("a team", teams),
        "injury": ("a kind of injury", vocab.values(vocab.InjuryKind)),
        "ho": ("an answer", ("yes", "no")),
        "stage": ("a stage", STAGES),
        "readiness": ("a readiness", READINESS),
        "flag": ("a flag", FLAGS),
    }
    errors = {}
    if len(values["q"]) > SEARCH_LENGTH:
        errors["q"] = (
            f"Search: type at most {SEARCH_LENGTH} characters, the start of a name or an MRN."
        )
    for name, (what, allowed) in choices.items():
        value = values[name]
        if value and value not in allowed:
            shown = value if len(value) <= 40 else value[:40] + "…"
            listed = ", ".join(words(choice) for choice in allowed)
            errors[name] = (
                f"{FILTER_WORDS[name]}: ‘{shown}’ is not {what} here; choose one of "
                f"{listed}, or any."
            )
    return errors


@router.get("/patients/{mrn}")
def patient_page(
    mrn: str,
    request: Request,
    viewer: PageViewer,
    engine: EngineDep,
    as_of: Annotated[str | None, Query(max_length=30)] = None,
) -> Response:
    """The patient's story, assessment and reminders as of a day (the as-of form;
    empty means today). A day that is not a date shows today, with the field marked."""
    clinic_today = today(request)
    as_of_error = None
    try:
        day = parse_as_of(request, (as_of or "").strip())
    except AsOfRefused as refused:
        day = clinic_today
        as_of_error = f"The as-of date {refused.reason}; showing today ({day.isoformat()})."
    protocol = protocol_of(request)
    view = patient_view(engine=engine, mrn=mrn, as_of=day, protocol=protocol)
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
            "as_of_text": as_of if as_of_error else day.isoformat(),
            "as_of_error": as_of_error,
            "is_today": day == clinic_today,
            "clinic_today": clinic_today,
            "examined": exam_form.joint_words(view.story, day),
            "zone": protocol.reminders.zone,
            "zone_name": protocol.reminders.time_zone,
        },
        status=422 if as_of_error else 200,
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
    identity.log_view(engine=engine, viewer=viewer, mrn=mrn, what="trend figure")
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
    """The report opens in the browser (HTML as a page, the PDF in its viewer); the
    filename is the one a "save" offers."""
    media = {".pdf": "application/pdf", ".html": "text/html; charset=utf-8"}[path.suffix]
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in path.name)
    named = f"filename=\"{plain}\"; filename*=UTF-8''{quote(path.name, safe='')}"
    return Response(
        path.read_bytes(), media_type=media, headers={"Content-Disposition": f"inline; {named}"}
    )
