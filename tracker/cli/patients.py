"""`ho-tracker patients list` and `ho-tracker patient show|set-team`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tracker import vocab
from tracker.cli.console import date_text, login_name, open_engine, out
from tracker.errors import TrackerError

if TYPE_CHECKING:
    from tracker.services.patients import PatientSummary

patients_app = typer.Typer(help="Find patients.", no_args_is_help=True)
patient_app = typer.Typer(help="Look at one patient.", no_args_is_help=True)

INJURY_KINDS = ", ".join(vocab.values(vocab.InjuryKind))


@patients_app.command("list")
def patients_list(
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    injury: Annotated[
        str | None, typer.Option(help=f"Only with this injury kind: {INJURY_KINDS}.")
    ] = None,
    ho: Annotated[
        bool | None, typer.Option("--ho/--no-ho", help="Only with (or without) HO found.")
    ] = None,
    search: Annotated[str | None, typer.Option(help="Part of an mrn or name.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
) -> None:
    """List patients with their injuries, HO sites and latest imaging."""
    from tracker.services.patients import list_patients

    if injury and injury not in vocab.values(vocab.InjuryKind):
        raise TrackerError(f"--injury '{injury}' is not an injury kind; use one of {INJURY_KINDS}.")
    from tracker.services.audit import record_views

    engine = open_engine()
    rows = list_patients(
        engine=engine, team=team, injury=injury, with_ho=ho, search=search, limit=limit
    )
    asked = {"search": search, "team": team, "injury": injury, "ho": ho, "limit": limit}
    record_views(
        engine=engine, actor=login_name(), mrns=[row.mrn for row in rows],
        what="patient list (command line)", search=asked,
    )  # fmt: skip
    print_patients(rows)


def print_patients(rows: Sequence[PatientSummary]) -> None:
    """The table of `patients list` (the demo prints it too)."""
    table = Table(
        "mrn",
        "name",
        "born",
        "sex",
        "team",
        "injuries",
        "since",
        "HO sites",
        "last imaging",
        title=f"{len(rows)} patients",
    )
    for row in rows:
        table.add_row(
            row.mrn,
            row.name,
            date_text(row.birth_date),
            row.sex or "",
            row.team or "",
            row.injuries,
            date_text(row.first_injury),
            str(row.ho_sites) if row.ho_sites else "",
            date_text(row.last_imaging),
        )
    out.print(table)


# `set-team` is listed before `show` in `ho-tracker patient --help`, as it always was.
@patient_app.command("set-team")
def set_team_command(
    mrn: Annotated[str, typer.Argument(help="The patient's mrn.")],
    team: Annotated[str, typer.Argument(help="A team added with `teams add`.")],
) -> None:
    """Put a patient in a team; its reminders go to that team."""
    from tracker.errors import NotFound
    from tracker.services.patients import patient_story, update_patient
    from tracker.services.teams import list_teams

    # as the web form saves it: checked, versioned and audited (issue 15)
    engine = open_engine()
    if team not in {t.name for t in list_teams(engine=engine)}:
        raise NotFound(
            f"There is no team '{team}': add it first with "
            f"`ho-tracker teams add {team} --email ADDRESS`."
        )
    patient = patient_story(engine=engine, mrn=mrn)[0].patient
    previous = patient.team
    if team != previous:
        update_patient(
            engine=engine, actor=login_name(), mrn=patient.mrn,
            expected_version=int(patient.version), changes={"team": team},
        )  # fmt: skip
    out.print(f"Patient {mrn} is now in team {team}" + (f" (was {previous})." if previous else "."))


@patient_app.command("show")
def patient_show(mrn: Annotated[str, typer.Argument(help="The patient's mrn.")]) -> None:
    """The patient's whole story in date order."""
    from tracker.services.audit import record_view
    from tracker.services.patients import display_name, patient_story

    engine = open_engine()
    story, events = patient_story(engine=engine, mrn=mrn)
    record_view(
        engine=engine, actor=login_name(), mrn=story.patient.mrn, what="patient show (command line)"
    )
    p = story.patient
    out.print(
        f"[bold]{p.mrn}[/bold]  {display_name(p.family_name, p.given_name)}  "
        f"born {date_text(p.birth_date) or 'unknown'}  {p.sex or ''}  team {p.team or 'none'}"
    )
    table = Table("date", "what", "detail", title="Story", show_lines=False)
    for event in events:
        table.add_row(date_text(event.date), event.kind.replace("_", " "), event.summary)
        for line in event.details:
            table.add_row("", "", f"  - {line}")
    out.print(table)
