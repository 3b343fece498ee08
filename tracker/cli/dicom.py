"""`ho-tracker dicom import|pending|complete`: imaging studies from DICOM headers and
the sites they leave for a clinician, through `tracker.services.interop`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tracker import vocab
from tracker.cli.console import clinic_protocol, login_name, open_engine, out
from tracker.errors import TrackerError

app = typer.Typer(help="Imaging studies from DICOM headers.", no_args_is_help=True)

HO_WORDS = {"yes": vocab.HoPresence.present.value, "no": vocab.HoPresence.absent.value}
SITES, SIDES = vocab.values(vocab.Site), vocab.values(vocab.Side)


@app.command("import")
def dicom_import_command(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files, or folders of them.")],
) -> None:
    """Add imaging studies from DICOM headers (no pixel data needed); each body part
    and laterality becomes a pending site for a clinician. Re-importing adds nothing."""
    from tracker.services.imports import import_dicom

    summary = import_dicom(engine=open_engine(), paths=paths, actor=login_name())
    out.print(
        f"Read {summary.files} files: {summary.studies_added} studies and "
        f"{summary.sites_added} pending sites added, {summary.unchanged} already stored."
    )


@app.command("pending")
def dicom_pending_command(
    mrn: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Completed sites too, with who completed them.")
    ] = False,
) -> None:
    """Sites named by DICOM studies that still wait for a clinician's finding."""
    from tracker.services.audit import record_views
    from tracker.services.interop import pending_sites

    engine = open_engine()
    rows = pending_sites(engine=engine, mrn=mrn, include_completed=everything)
    record_views(
        engine=engine, actor=login_name(), mrns=[row.mrn for row in rows],
        what="DICOM pending sites (command line)", search={"mrn": mrn, "all": everything},
    )  # fmt: skip
    columns = ["id", "mrn", "date", "modality", "accession", "body part", "laterality"]
    columns += ["site", "side", *(["status", "completed by"] if everything else [])]
    title = f"{len(rows)} DICOM sites" if everything else f"{len(rows)} pending sites"
    table = Table(*columns, title=title)
    for row in rows:
        cells = [
            str(row.id),
            row.mrn,
            row.date.isoformat(),
            row.modality,
            row.accession or "",
            row.body_part,
            row.laterality,
            row.site or "?",
            row.side or "?",
        ]
        if everything:
            cells += [row.status, row.completed_by or ""]
        table.add_row(*cells)
    out.print(table)


@app.command("complete")
def dicom_complete_command(
    pending_id: Annotated[int, typer.Argument(help="The id `dicom pending` lists.")],
    ho: Annotated[
        str,
        typer.Option(
            help="Is there HO at the site: yes or no (or present, absent, indeterminate).",
            show_default=False,
        ),
    ],
    site: Annotated[
        str | None, typer.Option(help="The site; default the one Body Part Examined maps to.")
    ] = None,
    side: Annotated[
        str | None, typer.Option(help="The side; default the one Laterality maps to.")
    ] = None,
    brooker: Annotated[int | None, typer.Option(help="Brooker grade (0-4).")] = None,
    della_valle: Annotated[str | None, typer.Option(help="Della Valle class (a, b, c).")] = None,
    size_mm: Annotated[float | None, typer.Option(help="Size in mm.")] = None,
    notes: Annotated[str | None, typer.Option(help="A note on the finding.")] = None,
    by: Annotated[
        str | None, typer.Option(help="Who records it, for the audit; default your login name.")
    ] = None,
) -> None:
    """Record the finding of a pending site on its study (checked, versioned and
    audited like the web form's correction); a finding that matches completes it."""
    from tracker.services.interop import complete_pending_site, pending_site

    engine = open_engine()
    waiting = pending_site(engine=engine, pending_id=pending_id)
    unknown = [
        (name, element, value, ", ".join(allowed))
        for name, given, mapped, element, value, allowed in (
            ("site", site, waiting.site, "Body Part Examined", waiting.body_part, SITES),
            ("side", side, waiting.side, "Laterality", waiting.laterality, SIDES),
        )
        if given is None and mapped is None
    ]
    if unknown and waiting.status == "pending":  # a completed one is refused by the service
        said = " and ".join(f"{element} ('{value}')" for _, element, value, _ in unknown)
        names = " or ".join(name for name, *_ in unknown)
        options = " and ".join(f"--{name} ({allowed})" for name, _, _, allowed in unknown)
        raise TrackerError(
            f"Pending site {pending_id}'s {said} give{'s' if len(unknown) == 1 else ''} no "
            f"{names}; name {'it' if len(unknown) == 1 else 'them'} with {options}."
        )
    finding = {
        "site": site,
        "side": side,
        "ho": HO_WORDS.get(ho.strip().lower(), ho),
        "brooker": brooker,
        "della_valle": della_valle,
        "size_mm": size_mm,
        "notes": notes,
    }
    done = complete_pending_site(
        engine=engine, actor=by or login_name(), pending_id=pending_id, finding=finding,
        protocol=clinic_protocol(None),  # the reminder the study satisfies closes with it
    )  # fmt: skip
    where = f"{site or waiting.site} {side or waiting.side}"
    if done.status == "completed":
        out.print(
            f"Finding {where} added to study {done.study_id} of {done.mrn}; "
            f"pending site {pending_id} completed."
        )
    else:
        out.print(
            f"Finding {where} added to study {done.study_id} of {done.mrn}; pending site "
            f"{pending_id} ({done.site or 'any site'} {done.side or 'any side'}) is still "
            "pending, as the finding is at another site or side."
        )
