"""`ho-tracker import DIR`: validate a folder of interchange CSVs, then store it whole.

All or nothing (model-spec section 2): every file is read and checked column-wise
first; any problem in any row, or a `.csv` file that is not one of the interchange
files, rejects the run with every problem listed, and nothing is written. A row
whose natural key is already stored adds nothing; if it says something different
from the stored record, that is a problem too, because import never silently
changes clinical records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tracker.errors import Conflict, Problem, TrackerError, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.interchange import tables
from tracker.interchange.csv_export import restore, text_columns
from tracker.interchange.validate import (
    FileCheck,
    check_columns,
    check_duplicates,
    check_rules,
    read_csv,
)
from tracker.progress import NoProgress, Progress

# What writes an import's audit rows, given the import's connection (inside its
# transaction) and the rows added per patient and file: {mrn: {file: n}} (issue 15).
ImportAudit = Callable[[sa.Connection, Mapping[str, Mapping[str, int]]], None]


@dataclass
class ImportSummary:
    """Rows added and rows already present, per file."""

    added: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    # DICOM pending sites that imaging.csv findings completed (ids)
    sites_completed: list[int] = field(default_factory=list)
    # how many patients the added rows belong to (new patients and stored ones)
    patients_with_new_rows: int = 0
    # their MRNs, sorted (whose stored site assessments an import makes out of date)
    mrns_with_new_rows: list[str] = field(default_factory=list)
    # the rows added per patient and file, {mrn: {file: n}} (for the audit trail)
    added_by_patient: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def import_folder(
    engine: Engine,
    folder: Path,
    *,
    today: dt.date | None = None,
    progress: Progress | None = None,
    actor: str | None = None,
    audit: ImportAudit | None = None,
) -> ImportSummary:
    """Validate and store every interchange file in `folder`; raise ValidationFailed.

    Findings added to a stored study (one imported from DICOM headers, say) complete
    its pending sites they match, as completed by `actor` (default 'import'). `audit`
    is given the rows added per patient inside the transaction that stores them
    (issue 15: the audit rows and the records are stored together or not at all)."""
    progress = progress or NoProgress()
    today = today or dt.date.today()
    if not folder.is_dir():
        raise TrackerError(f"{folder} is not a folder of interchange CSV files.")
    present = [f for f in fmt.FORMATS if (folder / f.name).is_file()]
    problems: list[Problem] = unknown_files(folder)
    if not present:
        if problems:
            raise ValidationFailed(problems)
        names = ", ".join(f.name for f in fmt.FORMATS)
        raise TrackerError(f"{folder} holds none of the interchange files ({names}).")

    checks: dict[str, FileCheck] = {}
    progress.start("Checking files", len(present))
    for file in present:
        frame, read_problems = read_csv(folder / file.name, file)
        problems += read_problems
        if frame is not None:
            check = check_columns(_unquoted(frame, file), file, today)
            check_rules(check)
            check_duplicates(check)
            checks[file.name] = check
        progress.advance(1)

    with engine.connect() as conn:
        stored = _stored_patients(conn, checks)
        # Without a readable patients.csv nobody can say which patients are new:
        # its own problems are reported, not a cascade of "unknown patient" lines.
        if not (folder / fmt.PATIENTS.name).is_file() or fmt.PATIENTS.name in checks:
            _check_patients_known(checks, stored)
            _check_after_birth(checks, stored)
        existing = _match_stored(conn, checks, stored)
    for check in checks.values():
        problems += check.problem_list()
    if problems:
        raise ValidationFailed(problems)

    try:
        with engine.begin() as conn:
            summary = _write(conn, checks, existing, progress, actor or "import")
            if audit is not None:
                audit(conn, summary.added_by_patient)
            return summary
    except sa.exc.IntegrityError as error:
        raise Conflict(
            "Another change stored some of these records while the import ran; nothing "
            f"was written. Run the import again. ({error.orig})"
        ) from error


def _unquoted(frame: pd.DataFrame, file: fmt.FileFormat) -> pd.DataFrame:
    """Text cells as they were before the export made them spreadsheet-safe: `'=SUM(A1)`
    is read as `=SUM(A1)` (csv_export.restore, the rule's other half)."""
    for name in text_columns(file):
        if name in frame.columns:
            frame[name] = restore(frame[name].astype(object).str.strip())
    return frame


def unknown_files(folder: Path) -> list[Problem]:
    """A `.csv` file whose name is not an interchange file's rejects the whole import
    (issue 13): `injurys.csv` would otherwise be skipped and its injuries lost without
    a word. Other files (a README, say) are not the import's business."""
    allowed = ", ".join(f.name for f in fmt.FORMATS)
    return [
        Problem(
            path.name,
            None,
            "file",
            f"is not an interchange file, so nothing in it would be imported; rename it to "
            f"one of {allowed} (or move it out of the folder)",
        )
        for path in sorted(folder.iterdir())
        if path.suffix.lower() == ".csv" and path.is_file() and path.name not in fmt.FORMAT_BY_NAME
    ]


def _mrns(checks: dict[str, FileCheck]) -> list[str]:
    found: set[str] = set()
    for check in checks.values():
        found.update(check.rows["mrn"].dropna().unique())
    return sorted(found)


def _stored_patients(conn: sa.Connection, checks: dict[str, FileCheck]) -> pd.DataFrame:
    return tables.patient_index(conn, _mrns(checks))


def _check_patients_known(checks: dict[str, FileCheck], stored: pd.DataFrame) -> None:
    known = set(stored["mrn"])
    if fmt.PATIENTS.name in checks:
        known.update(checks[fmt.PATIENTS.name].rows["mrn"].dropna())
    for name, check in checks.items():
        if name == fmt.PATIENTS.name:
            continue
        mrn = check.rows["mrn"]
        unknown = mrn.notna() & ~mrn.isin(known)
        check.add(
            unknown,
            "mrn",
            "'" + mrn.fillna("") + "' is not a known patient; add it to patients.csv",
        )


def _birth_dates(checks: dict[str, FileCheck], stored: pd.DataFrame) -> pd.Series:
    births = stored.set_index("mrn")["birth_date"].dropna()
    if fmt.PATIENTS.name in checks:
        rows = checks[fmt.PATIENTS.name].rows
        from_file = rows.dropna(subset=["mrn", "birth_date"]).set_index("mrn")["birth_date"]
        births = pd.concat([births[~births.index.isin(from_file.index)], from_file])
    return births[~births.index.duplicated()].astype(object)


def _check_after_birth(checks: dict[str, FileCheck], stored: pd.DataFrame) -> None:
    births = _birth_dates(checks, stored)
    for name, check in checks.items():
        if name == fmt.PATIENTS.name:
            continue
        birth = check.rows["mrn"].map(births).astype(object)
        for column in check.fmt.columns:
            if column.kind != "date":
                continue
            value = check.rows[column.name]
            # ISO dates compare correctly as text.
            early = value.notna() & birth.notna() & (value < birth.fillna(""))
            reason = value.fillna("") + " is before the patient's birth date " + birth.fillna("")
            check.add(early, column.name, reason)


def _match_stored(
    conn: sa.Connection, checks: dict[str, FileCheck], stored: pd.DataFrame
) -> dict[str, pd.Series]:
    """For each file, which rows are already stored; conflicting rows become problems."""
    ids = stored["id"].tolist()
    existing: dict[str, pd.Series] = {}
    for name, check in checks.items():
        on_file = pd.Series(False, index=check.rows.index)
        if ids:
            saved = tables.read_canonical(conn, check.fmt, ids)
            if not saved.empty:
                on_file = _compare(check, tables.canonical(check.rows, check.fmt), saved)
        existing[name] = on_file
        if check.fmt is fmt.IMAGING and ids:
            _check_stored_indication(conn, check, stored, on_file)
    return existing


def _check_stored_indication(
    conn: sa.Connection, check: FileCheck, stored: pd.DataFrame, on_file: pd.Series
) -> None:
    """A row of a study already stored (one from DICOM headers, an earlier import) says
    the stored study's indication or leaves it blank: import never changes a stored
    study (model-spec v2, section 2: the rows of one study share its indication). Rows
    stored already are compared whole by `_compare`."""
    ids = stored.set_index("mrn")["id"]
    rows = check.rows[~on_file.to_numpy()]
    incoming = pd.DataFrame(
        {
            "line": rows.index,
            "patient_id": rows["mrn"].map(ids).to_numpy(),
            **{c: rows[c].to_numpy() for c in tables.STUDY_COLUMNS},
            "said": rows["indication"].to_numpy(),
        }
    ).dropna(subset=["patient_id", "said"])
    if incoming.empty:
        return
    incoming["patient_id"] = incoming["patient_id"].astype(int)
    known = tables.study_index(conn, ids.tolist(), with_indication=True)
    if known.empty:
        return
    known["patient_id"] = known["patient_id"].astype(int)
    merged = incoming.merge(known, on=["patient_id", *tables.STUDY_COLUMNS], how="inner")
    stored_said = merged["indication"].fillna("").astype(str)
    differs = merged["said"] != stored_said
    if not differs.any():
        return
    lines = merged.loc[differs, "line"]
    reason = (
        "differs from the indication of the stored study ('"
        + stored_said[differs]
        + "'); import never changes stored records, correct it in the app"
    )
    mask = pd.Series(check.rows.index.isin(lines), index=check.rows.index)
    check.add(mask, "indication", pd.Series(reason.to_numpy(), index=lines.to_numpy()))


def _compare(check: FileCheck, incoming: pd.DataFrame, saved: pd.DataFrame) -> pd.Series:
    file = check.fmt
    key = list(file.key)
    merged = incoming.reset_index().merge(saved, on=key, how="inner", suffixes=("", "__stored"))
    for column in file.column_names:
        if column in key:
            continue
        differs = merged[column] != merged[f"{column}__stored"]
        if differs.any():
            lines = merged.loc[differs, "line"]
            reason = (
                "differs from the stored record ('"
                + merged.loc[differs, f"{column}__stored"]
                + "'); import never changes stored records, correct it in the app"
            )
            mask = pd.Series(check.rows.index.isin(lines), index=check.rows.index)
            check.add(mask, column, pd.Series(reason.to_numpy(), index=lines.to_numpy()))
    return pd.Series(check.rows.index.isin(merged["line"]), index=check.rows.index)


def _write(
    conn: sa.Connection,
    checks: dict[str, FileCheck],
    existing: dict[str, pd.Series],
    progress: Progress,
    actor: str,
) -> ImportSummary:
    summary = ImportSummary()
    new_rows = {name: check.rows[~existing[name]] for name, check in checks.items()}
    total = sum(len(rows) for rows in new_rows.values())
    progress.start("Writing records", total)
    for name, stored in existing.items():
        summary.unchanged[name] = int(stored.sum())
    if new_rows:
        mrns = pd.concat([rows["mrn"] for rows in new_rows.values()]).dropna().unique()
        summary.mrns_with_new_rows = sorted(str(mrn) for mrn in mrns)
        summary.patients_with_new_rows = len(summary.mrns_with_new_rows)
        for name, rows in new_rows.items():
            for mrn, n in rows["mrn"].dropna().astype(str).value_counts().items():
                summary.added_by_patient.setdefault(str(mrn), {})[name] = int(n)

    if fmt.PATIENTS.name in new_rows:
        rows = new_rows[fmt.PATIENTS.name]
        _add_missing_teams(conn, rows)
        summary.added[fmt.PATIENTS.name] = tables.bulk_insert(
            conn, tables.patient, rows[fmt.PATIENTS.column_names], progress
        )
    ids = tables.patient_index(conn, _mrns(checks)).set_index("mrn")["id"]

    for name, rows in new_rows.items():
        file = checks[name].fmt
        if file is fmt.PATIENTS:
            continue
        with_ids = rows.assign(patient_id=rows["mrn"].map(ids)).drop(columns="mrn")
        if file is fmt.IMAGING:
            summary.added[name], summary.sites_completed = _write_imaging(
                conn, with_ids, ids.tolist(), progress, actor
            )
        else:
            table = tables.SIMPLE_TABLES[name]
            columns = ["patient_id", *[c for c in file.column_names if c != "mrn"]]
            summary.added[name] = tables.bulk_insert(conn, table, with_ids[columns], progress)
    return summary


def _add_missing_teams(conn: sa.Connection, patients: pd.DataFrame) -> None:
    """A team named in patients.csv but not yet stored is added without a delivery
    address; reminders for its patients wait, with a message naming the fix
    (`ho-tracker teams add NAME --email ADDRESS`), until it has one."""
    if "team" not in patients:
        return
    named = sorted(set(patients["team"].dropna()) - {""})
    if not named:
        return
    team = tables.team
    stored = set(conn.execute(sa.select(team.c.name).where(team.c.name.in_(named))).scalars())
    missing = [name for name in named if name not in stored]
    if missing:
        conn.execute(sa.insert(team), [{"name": name} for name in missing])


def _write_imaging(
    conn: sa.Connection,
    rows: pd.DataFrame,
    patient_ids: list[int],
    progress: Progress,
    actor: str,
) -> tuple[int, list[int]]:
    """Studies first (one per patient, date, modality, accession), then their findings;
    then the pending DICOM sites of stored studies that gained findings (a new study
    has none) are completed where a finding matches. Rows added, sites completed."""
    study_key = ["patient_id", *tables.STUDY_COLUMNS]
    study_columns = ["patient_id", *fmt.STUDY_COLUMNS]  # the key, and the indication
    known = tables.study_index(conn, patient_ids)
    studies = rows[study_columns].drop_duplicates(subset=study_key)
    studies = studies.merge(known, on=study_key, how="left", indicator=True)
    fresh = studies.loc[studies["_merge"] == "left_only", study_columns]
    tables.bulk_insert(conn, tables.study, fresh)
    known = tables.study_index(conn, patient_ids)
    placed = rows.merge(known, on=study_key, how="left")
    finding_columns = [
        "study_id",
        *[c for c in fmt.IMAGING.column_names if c not in ("mrn", *fmt.STUDY_COLUMNS)],
    ]
    added = tables.bulk_insert(conn, tables.finding, placed[finding_columns], progress)
    extended = studies.loc[studies["_merge"] == "both", "study_id"].dropna().tolist()
    return added, tables.complete_pending_sites(conn, extended, actor) if extended else []
