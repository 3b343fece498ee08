"""`ho-tracker assess`: stage, grade and readiness of one patient's sites, or with
--all of every patient's, written to a file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tracker.cli.console import BarProgress, day_or_today, login_name, open_engine, out
from tracker.errors import TrackerError

ProtocolOption = Annotated[
    Path | None,
    typer.Option(help="Clinic protocol TOML file (default: the spec's defaults)."),
]
AsOfOption = Annotated[str | None, typer.Option(help="Assess as of this date (default today).")]


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

    day = day_or_today(as_of, "--as-of")
    if everyone:
        _assess_everyone(mrn, day, json_out, protocol, out_file)
        return
    if out_file is not None:
        raise TrackerError(
            "--out writes every patient's sites; add --all (assess --all --out FILE)."
        )
    if mrn is None:
        raise TrackerError("Name a patient (ho-tracker assess MRN), or use --all --out FILE.")
    from tracker.services.audit import record_view

    engine = open_engine()
    result = assess_one(engine=engine, mrn=mrn, as_of=day, protocol=protocol_from(protocol))
    record_view(engine=engine, actor=login_name(), mrn=mrn, what="assess (command line)")
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
        engine = open_engine()
        frame = assess_all(engine=engine, as_of=day, protocol=rules, progress=progress)
        write_cohort_assessment(frame, out_file)
    from tracker.services.audit import record_views

    record_views(
        engine=engine, actor=login_name(), mrns=frame["mrn"].astype(str).unique().tolist(),
        what="assess --all (command line)",
    )  # fmt: skip
    counts = readiness_counts(frame)
    out.print(
        f"Assessed {len(frame)} sites of {frame['mrn'].nunique()} patients as of "
        f"{day.isoformat()}: {counts['ready']} ready, {counts['not_ready']} not ready, "
        f"{counts['insufficient_data']} insufficient data, {counts['not_applicable']} "
        f"without HO (not applicable); model {MODEL_VERSION}, protocol {rules.fingerprint}; "
        f"wrote {out_file}.",
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
