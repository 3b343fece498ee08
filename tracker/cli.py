"""The `ho-tracker` command line: each command parses, calls one service, prints.

User errors (TrackerError) become one clear sentence on stderr and exit code 2;
a rejected import lists every problem as `file:line: field: reason` first.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar
from rich.table import Table
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.errors import TrackerError, ValidationFailed
from tracker.store import database

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "data" / "demo"

# Piped output (files, CI logs) gets a wide page so tables are never cut.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    help="Follow patients at risk of heterotopic ossification from injury to a safe resection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)
patients_app = typer.Typer(help="Find patients.", no_args_is_help=True)
patient_app = typer.Typer(help="Look at one patient.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(patients_app, name="patients")
app.add_typer(patient_app, name="patient")

from tracker.reminders import cli as reminders_cli  # noqa: E402  (needs the apps above)

app.add_typer(reminders_cli.reminders_app, name="reminders")
app.add_typer(reminders_cli.teams_app, name="teams")
patient_app.command("set-team")(reminders_cli.set_team_command)
app.command("scheduler")(reminders_cli.scheduler_command)

from tracker.reports.cli import report_command  # noqa: E402

app.command("report")(report_command)

from tracker.interchange import cli as interop_cli  # noqa: E402

app.add_typer(interop_cli.fhir_app, name="fhir")
app.add_typer(interop_cli.dicom_app, name="dicom")

from tracker import web_admin_cli  # noqa: E402

app.add_typer(web_admin_cli.users_app, name="users")
app.command("audit")(web_admin_cli.audit_command)


class _State:
    database_url: str | None = None


state = _State()


@app.callback()
def _options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL; default HO_TRACKER_DATABASE_URL or sqlite:///data/tracker.db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    state.database_url = database_url


def _engine(*, migrate_fresh: bool = True) -> Engine:
    engine = database.make_engine(state.database_url)
    if migrate_fresh:
        database.ensure_ready(engine)
    return engine


class BarProgress:
    """A rich progress bar on stderr, shown only when a person is watching."""

    def __init__(self) -> None:
        self.bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self.task: int | None = None

    def __enter__(self) -> BarProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def start(self, description: str, total: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)  # type: ignore[arg-type]
        self.task = self.bar.add_task(description, total=total)

    def advance(self, done: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, done)  # type: ignore[arg-type]


# --- database ---------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (creates it on an empty database)."""
    engine = _engine(migrate_fresh=False)
    database.upgrade(engine, revision)
    out.print(f"Database at revision {database.current_revision(engine)}.")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision ('base' removes all).")] = "-1",
) -> None:
    """Step the schema back (default one revision)."""
    engine = _engine(migrate_fresh=False)
    database.downgrade(engine, revision)
    out.print(f"Database at revision {database.current_revision(engine) or 'base (empty)'}.")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this version needs."""
    engine = _engine(migrate_fresh=False)
    current = database.current_revision(engine) or "none"
    out.print(f"Database revision: {current}; this version needs {database.head_revision()}.")


# --- interchange ------------------------------------------------------------------------


@app.command("import")
def import_command(
    folder: Annotated[Path, typer.Argument(help="Folder of interchange CSV files.")],
) -> None:
    """Import interchange CSVs, all or nothing; every bad row is listed with its line."""
    from tracker.interchange.csv_import import import_folder

    engine = _engine()
    with BarProgress() as progress:
        summary = import_folder(engine, folder, progress=progress)
    _print_import(summary.added, summary.unchanged)


def _print_import(added: dict[str, int], unchanged: dict[str, int]) -> None:
    table = Table("file", "added", "already stored", title="Import")
    for name in added:
        table.add_row(name, str(added[name]), str(unchanged.get(name, 0)))
    out.print(table)
    out.print(f"{sum(added.values())} rows added.")


@app.command("export")
def export_command(
    folder: Annotated[Path, typer.Argument(help="Folder to write the CSV files into.")],
    deidentified: Annotated[
        bool,
        typer.Option(
            "--deidentified",
            help="For research: mrn hashed with HO_TRACKER_DEID_KEY, identifiers dropped, "
            "dates shifted per patient.",
        ),
    ] = False,
    keep_team: Annotated[
        bool, typer.Option("--keep-team", help="With --deidentified: keep the team column.")
    ] = False,
) -> None:
    """Export every record as interchange CSV v1."""
    from tracker.interchange.csv_export import export_folder

    if deidentified:
        interop_cli.export_deidentified(folder, keep_team)
        return
    engine = _engine()
    with BarProgress() as progress:
        counts = export_folder(engine, folder, progress=progress)
    out.print(f"Wrote {sum(counts.values())} rows in {len(counts)} files to {folder}.")


@app.command("synth")
def synth_command(
    patients: Annotated[int, typer.Option(min=1, help="How many patients.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the CSV files.")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 1,
    until: Annotated[str | None, typer.Option(help="Last date of the cohort (YYYY-MM-DD).")] = None,
) -> None:
    """Write a synthetic cohort with realistic HO trajectories as interchange CSVs."""
    from tracker.interchange import synth

    kwargs = {}
    if until:
        kwargs["until"] = _parse_date(until, "--until")
    with BarProgress() as progress:
        progress.start("Generating patients", patients)
        counts = synth.write_cohort(
            out_dir, patients=patients, seed=seed, progress=progress.advance, **kwargs
        )
    out.print(f"Wrote {sum(counts.values())} rows for {patients} patients to {out_dir}.")


# --- patients ---------------------------------------------------------------------------


@patients_app.command("list")
def patients_list(
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    injury: Annotated[
        str | None,
        typer.Option(
            help=f"Only with this injury kind: {', '.join(vocab.values(vocab.InjuryKind))}."
        ),
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
        raise TrackerError(
            f"--injury '{injury}' is not an injury kind; use one of "
            f"{', '.join(vocab.values(vocab.InjuryKind))}."
        )
    rows = list_patients(
        engine=_engine(), team=team, injury=injury, with_ho=ho, search=search, limit=limit
    )
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
            _d(row.birth_date),
            row.sex or "",
            row.team or "",
            row.injuries,
            _d(row.first_injury),
            str(row.ho_sites) if row.ho_sites else "",
            _d(row.last_imaging),
        )
    out.print(table)


@patient_app.command("show")
def patient_show(mrn: Annotated[str, typer.Argument(help="The patient's mrn.")]) -> None:
    """The patient's whole story in date order."""
    from tracker.services.patients import display_name, patient_story

    story, events = patient_story(engine=_engine(), mrn=mrn)
    p = story.patient
    out.print(
        f"[bold]{p.mrn}[/bold]  {display_name(p.family_name, p.given_name)}  "
        f"born {_d(p.birth_date) or 'unknown'}  {p.sex or ''}  team {p.team or 'none'}"
    )
    table = Table("date", "what", "detail", title="Story", show_lines=False)
    for event in events:
        table.add_row(_d(event.date), event.kind.replace("_", " "), event.summary)
        for line in event.details:
            table.add_row("", "", f"  - {line}")
    out.print(table)


# --- assessment -----------------------------------------------------------------------

ProtocolOption = Annotated[
    Path | None,
    typer.Option(help="Clinic protocol TOML file (default: the spec's defaults)."),
]
AsOfOption = Annotated[str | None, typer.Option(help="Assess as of this date (default today).")]


@app.command("assess")
def assess_command(
    mrn: Annotated[
        str | None, typer.Argument(help="The patient's mrn.", show_default=False)
    ] = None,
    as_of: AsOfOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print model-spec section 8 JSON.")
    ] = False,
    protocol: ProtocolOption = None,
    everyone: Annotated[
        bool, typer.Option("--all", help="Assess every patient (needs --out).")
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="With --all: write one row per site to this .csv or .parquet."),
    ] = None,
) -> None:
    """Stage, grade and readiness for resection of every site of a patient (or, with
    --all, of every patient, written to a file)."""
    from tracker.services.assessment import assess_one, protocol_from
    from tracker.staging import to_json

    day = _parse_date(as_of, "--as-of") if as_of else dt.date.today()
    if everyone:
        _assess_everyone(mrn, day, json_out, protocol, out_file)
        return
    if out_file is not None:
        raise TrackerError(
            "--out writes every patient's sites; add --all (assess --all --out FILE)."
        )
    if mrn is None:
        raise TrackerError("Name a patient (ho-tracker assess MRN), or use --all --out FILE.")
    result = assess_one(engine=_engine(), mrn=mrn, as_of=day, protocol=protocol_from(protocol))
    if json_out:
        print(json.dumps(to_json(result)))
        return
    _print_assessment(to_json(result))


def _assess_everyone(
    mrn: str | None, day: dt.date, json_out: bool, protocol: Path | None, out_file: Path | None
) -> None:
    from tracker.services.assessment import (
        assess_all,
        check_cohort_output,
        protocol_from,
        write_cohort_assessment,
    )
    from tracker.staging.assess import MODEL_VERSION
    from tracker.staging.cohort import readiness_counts

    if mrn is not None:
        raise TrackerError(f"Name one patient ({mrn}) or use --all, not both.")
    if out_file is None:
        raise TrackerError("--all needs --out FILE (a .csv or .parquet file for the sites).")
    if json_out:
        raise TrackerError("--json prints one patient; with --all the sites go to --out.")
    check_cohort_output(out_file)
    rules = protocol_from(protocol)
    with BarProgress() as progress:
        frame = assess_all(engine=_engine(), as_of=day, protocol=rules, progress=progress)
        write_cohort_assessment(frame, out_file)
    counts = readiness_counts(frame)
    out.print(
        f"Assessed {len(frame)} sites of {frame['mrn'].nunique()} patients as of "
        f"{day.isoformat()}: {counts['ready']} ready, {counts['not_ready']} not ready, "
        f"{counts['insufficient_data']} insufficient data, {counts['not_applicable']} "
        f"without HO (not applicable); model {MODEL_VERSION}, protocol {rules.fingerprint}; "
        f"wrote {out_file}.",
        soft_wrap=True,
    )


board_app = typer.Typer(
    help="The surgeons' board: its stored site assessments.", no_args_is_help=True
)
app.add_typer(board_app, name="board")


@board_app.command("refresh")
def board_refresh_command(
    as_of: AsOfOption = None,
    protocol: Annotated[
        Path | None,
        typer.Option(help="Clinic protocol TOML file (default: the web app's, from settings)."),
    ] = None,
) -> None:
    """Assess every patient and store each site's call, which the board and the patient
    search read (after each save the web app refreshes that patient's alone)."""
    from tracker.config import get_settings
    from tracker.services.assessment import protocol_from
    from tracker.services.site_assessments import refresh_all

    day = _parse_date(as_of, "--as-of") if as_of else dt.date.today()
    rules = protocol_from(protocol or get_settings().protocol_file)
    with BarProgress() as progress:
        done = refresh_all(engine=_engine(), as_of=day, protocol=rules, progress=progress)
    out.print(
        f"Stored the assessments of {done.sites} site{'' if done.sites == 1 else 's'} of "
        f"{done.patients} patient{'' if done.patients == 1 else 's'} as of {day.isoformat()} "
        f"(protocol {done.protocol_fingerprint}).",
        soft_wrap=True,
    )


def _print_assessment(doc: dict[str, Any]) -> None:
    out.print(
        f"[bold]{doc['mrn']}[/bold] as of {doc['as_of']}: {len(doc['sites'])} sites "
        f"(model {doc['model_version']}, protocol {doc['protocol_fingerprint']})",
        soft_wrap=True,
    )
    if not doc["sites"]:
        out.print("No imaging findings or bone scans recorded.")
    for site in doc["sites"]:
        grades = ", ".join(
            g
            for g in (
                f"Brooker {site['brooker']}" if site["brooker"] is not None else "",
                f"Della Valle {site['della_valle'].upper()}" if site["della_valle"] else "",
            )
            if g
        )
        ratio = f", latest ratio {site['latest_ratio']:.2f}" if site["latest_ratio"] else ""
        readiness = site["readiness"].replace("_", " ")
        if site["readiness"] == "not_applicable":
            readiness = "no HO (not applicable)"
        out.print(
            f"\n[bold]{site['site']} {site['side']}[/bold]: stage {site['stage']}"
            f"{' (' + grades + ')' if grades else ''}; activity {site['activity']}{ratio}; "
            f"[bold]{readiness}[/bold]"
        )
        table = Table("criterion", "level", "status", "evidence")
        for criterion in site["criteria"]:
            table.add_row(
                criterion["name"], criterion["level"], criterion["status"], criterion["evidence"]
            )
        out.print(table)
        if site["flags"]:
            out.print("flags: " + ", ".join(site["flags"]))
        if site["forecast"]:
            f = site["forecast"]
            passed = "; already passed: rescan suggested" if f["passed"] else ""
            out.print(
                f"forecast stabilisation: {f['date']} (80% interval {f['low']} to {f['high']})"
                f"{passed}"
            )


# --- the newcomer's command -------------------------------------------------------------


HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


@app.command("demo")
def demo_command(
    data: Annotated[Path, typer.Option(help="Folder of demo CSVs.")] = DEMO_DIR,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Then run the web app and scheduler.")
    ] = True,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
) -> None:
    """Load the demo cohort (once), dated so its latest records are 3 days old, plan its
    reminders as of today, add demo users, then serve the web app."""
    from tracker.config import get_settings
    from tracker.interchange.demo import load_demo
    from tracker.reminders.planner import plan
    from tracker.services.assessment import protocol_from
    from tracker.services.worklist import status_counts

    engine = _engine()
    today = dt.date.today()
    with BarProgress() as progress:
        loaded = load_demo(engine, data, today=today, progress=progress)
    where = engine.url.render_as_string(hide_password=True)
    moved = f"{loaded.shift_days:+d} days" if loaded.shift_days else "not moved"
    latest = f", latest record {_d(loaded.latest)}" if loaded.latest else ""
    if loaded.already_loaded:
        out.print(
            f"Demo cohort already in {where} ({loaded.summary.total_added} new rows; its dates "
            f"stay as first loaded: {moved}{latest}). For a current demo, use a new database.",
            soft_wrap=True,
        )
    else:
        out.print(
            f"Demo cohort loaded into {where} ({loaded.summary.total_added} new rows; every "
            f"date {moved}{latest}).",
            soft_wrap=True,
        )
    plan(engine=engine, as_of=today, protocol=protocol_from(get_settings().protocol_file))

    counts = status_counts(engine=engine)

    def count(status: str | None = None) -> int:  # no status: due and sent
        wanted = (status,) if status else (vocab.ReminderStatus.due, vocab.ReminderStatus.sent)
        return sum(counts.get(str(s), 0) for s in wanted)

    out.print(
        f"Worklist as of {today.isoformat()}: {count()} reminders due, "
        f"{count(vocab.ReminderStatus.pending)} coming in the next weeks; "
        f"{count(vocab.ReminderStatus.lapsed)} lapsed (long past when first planned: kept "
        "in the patients' histories, never sent).",
        soft_wrap=True,
    )
    if not serve:
        patients_list(team=None, injury=None, ho=None, search=None, limit=None)
        out.print("Next: `ho-tracker patient show H-READY` tells one patient's story.")
        return
    from tracker.web.launch import DEMO_PASSWORD, address, ensure_demo_users

    users = ensure_demo_users(engine=engine)
    out.print(
        f"Open {address(host, port)} and sign in as "
        + ", ".join(u.username for u in users)
        + f" (password: {DEMO_PASSWORD}). Stop with Ctrl+C."
    )
    _serve(engine, host, port)


@app.command("serve")
def serve_command(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """Run the web app (and the reminder scheduler) under uvicorn; GET /healthz probes it."""
    from tracker.web.launch import address

    engine = _engine()
    out.print(f"Serving on {address(host, port)}")
    _serve(engine, host, port)


def _serve(engine: Engine, host: str, port: int) -> None:
    import uvicorn

    from tracker.config import get_settings
    from tracker.web.app import create_app

    app_ = create_app(get_settings(), engine, run_scheduler=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


# --- helpers ----------------------------------------------------------------------------


def _d(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


def _parse_date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise TrackerError(f"{option} '{text}' is not a date in the form YYYY-MM-DD.") from None


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    try:
        app(args=argv, prog_name="ho-tracker")
    except SystemExit as done:  # Typer's normal way out, usage errors included (2)
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ValidationFailed as failed:
        for problem in failed.problems:
            print(str(problem), file=sys.stderr)
        print(f"Nothing was written: {failed}", file=sys.stderr)
        return 2
    except TrackerError as error:
        print(str(error), file=sys.stderr)
        return 2
    return 0


def main() -> None:
    sys.exit(run())
