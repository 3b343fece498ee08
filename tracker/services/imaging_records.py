"""Imaging studies with several site findings at once (issue 6), checked as the rows of
imaging.csv: one row per finding, sharing the study's date, modality and accession.

A study imported from DICOM headers waits with pending sites (`dicom_pending_site`);
storing a finding that matches one completes it in the same transaction, audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracker import vocab
from tracker.errors import NotFound, Problem, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.interchange.tables import complete_pending_sites, reopen_pending_sites
from tracker.protocol import Protocol
from tracker.services.audit import write_event
from tracker.services.record_checks import check_rows
from tracker.services.record_store import (
    BONE_SCAN,
    FINDING,
    FINDING_FIELDS,
    STUDY,
    STUDY_FIELDS,
    STUDY_KEY_FIELDS,
    Saved,
    audit,
    bump,
    current,
    finding_table,
    flat_path,
    follow_record,
    insert_row,
    patient_by_id,
    patient_by_mrn,
    record_snapshot,
    refuse_duplicate,
    refuse_unknown,
    refuse_unknown_in_rows,
    rows_path,
    store_rows,
    stored_together,
    study_table,
    typed,
    without_timestamps,
)


def add_imaging_study(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    modality: Any,
    findings: Sequence[Mapping[str, Any]],
    accession: Any = None,
    notes: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
    indication: Any = None,
) -> Saved:
    """Record one study with all its site findings at once (each a dict of site, side,
    ho and the optional features of model-spec section 1). `notes` fills the notes of
    findings that have none. The returned Saved lists the findings as children."""
    given_today, today = today, today or dt.date.today()
    if not findings:
        raise ValidationFailed(
            # on the first row's site: that is where a form marks it and puts focus
            [
                Problem(
                    STUDY.entity, None, "findings[0].site", "is required: give at least one finding"
                )
            ]
        )
    refuse_unknown_in_rows(FINDING, findings, FINDING_FIELDS, "findings")
    path = rows_path("findings", STUDY_FIELDS)
    study = {"date": date, "modality": modality, "accession": accession, "indication": indication}
    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            rows = check_rows(
                fmt=fmt.IMAGING,
                rows=[_finding_row(row, study, notes, owner.mrn) for row in findings],
                field_path=path,
                source=STUDY.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            head = {"patient_id": owner.id, **typed(STUDY, rows[0], STUDY_FIELDS)}
            refuse_duplicate(conn, STUDY, _study_key(head), "date")
            study_id = insert_row(conn, STUDY, head)
            children = []
            for row in rows:
                values = {"study_id": study_id, **typed(FINDING, row, FINDING_FIELDS)}
                finding_id = insert_row(conn, FINDING, values)
                children.append(Saved(FINDING.entity, finding_id, 1, owner.mrn))
            # A new study has no pending DICOM sites: `dicom import` attaches them only
            # to studies it stores, and this one is refused if such a study exists.
            audit(conn, actor, "create", STUDY, study_id, owner.mrn, None)
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(STUDY.entity, study_id, 1, owner.mrn, tuple(children))
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


PHASES = tuple(vocab.values(vocab.Phase))
PHASE_FIELDS = ("ratio", "lesion_counts", "reference_counts")
# a site of a bone scan: its finding, its reference region, and per phase its ratio
# or counts, as `delayed_ratio`, `flow_lesion_counts`, ...
SITE_FIELDS = (
    *FINDING_FIELDS,
    "reference_region",
    *(f"{phase}_{name}" for phase in PHASES for name in PHASE_FIELDS),
)


NUCLEAR = (vocab.Modality.bone_scan.value, vocab.Modality.spect.value)
NOT_NUCLEAR = "must be bone scan or SPECT here; add any other study as an imaging study"


def add_bone_scan_study(
    *,
    engine: Engine,
    actor: str,
    mrn: str,
    date: Any,
    sites: Sequence[Mapping[str, Any]],
    modality: Any = vocab.Modality.bone_scan.value,
    accession: Any = None,
    notes: Any = None,
    today: dt.date | None = None,
    protocol: Protocol | None = None,
    indication: Any = None,
) -> Saved:
    """A bone scan in one step (issue 14): the study, its finding at each site and
    each site's ratios per phase, in one transaction, so a refused part leaves
    nothing written. Each site holds a finding's fields (site, side, ho, uptake,
    notes...), `reference_region`, and per phase (flow, blood_pool, delayed) its
    `<phase>_ratio`, or `<phase>_lesion_counts` and `<phase>_reference_counts`; a
    phase left blank was not measured. Problems are named `sites[i].<field>`, every
    one found at once. The returned Saved lists the findings, then the measurements."""
    given_today, today = today, today or dt.date.today()
    if not sites:
        raise ValidationFailed(
            [Problem(STUDY.entity, None, "sites[0].site", "is required: give at least one site")]
        )
    refuse_unknown_in_rows(FINDING, sites, SITE_FIELDS, "sites")
    study = {"date": date, "modality": modality, "accession": accession, "indication": indication}
    # (site index, phase, measurement row) for every phase with anything given
    measured = [
        (i, phase, {**values, "phase": phase})
        for i, site in enumerate(sites)
        for phase in PHASES
        for values in [{name: site.get(f"{phase}_{name}") for name in PHASE_FIELDS}]
        if any(v not in (None, "") for v in values.values())
    ]

    def finding_path(index: int, column: str) -> str:
        if column in STUDY_FIELDS or column in ("mrn", "file"):
            return column
        return f"sites[{index}].{column}" if column else f"sites[{index}]"

    def measurement_path(index: int, column: str) -> str:
        at, phase, _ = measured[index]
        if column in ("date", "mrn", "file"):
            return column
        if column in ("", "site", "side", "reference_region"):
            return finding_path(at, column)
        return f"sites[{at}].{phase}_{'ratio' if column == 'phase' else column}"

    try:
        with engine.begin() as conn:
            owner = patient_by_mrn(conn, mrn)
            problems: set[Problem] = set()
            if modality not in NUCLEAR:
                problems.add(Problem(STUDY.entity, None, "modality", NOT_NUCLEAR))
            findings: list[dict[str, Any]] = []
            measurements: list[dict[str, Any]] = []
            rows = [
                _finding_row({k: v for k, v in s.items() if k in FINDING_FIELDS}, study, notes, mrn)
                for s in sites
            ]
            shared = ("site", "side", "reference_region")
            measures = [
                {**row, **{k: sites[at].get(k) for k in shared}, "date": date, "mrn": owner.mrn}
                for at, _, row in measured
            ]
            for frame, given, path, out in (
                (fmt.IMAGING, rows, finding_path, findings),
                (fmt.BONE_SCANS, measures, measurement_path, measurements),
            ):
                if not given:
                    continue
                try:
                    out += check_rows(
                        fmt=frame,
                        rows=[{**row, "mrn": owner.mrn} for row in given],
                        field_path=path,
                        source=STUDY.entity,
                        birth_date=owner.birth_date,
                        today=today,
                    )
                except ValidationFailed as failed:  # report the ratios' problems too
                    problems.update(failed.problems)
            if problems:
                raise ValidationFailed(problems)
            head = {"patient_id": owner.id, **typed(STUDY, findings[0], STUDY_FIELDS)}
            refuse_duplicate(conn, STUDY, _study_key(head), "date")
            study_id = insert_row(conn, STUDY, head)
            children = []
            for row in findings:
                values = {"study_id": study_id, **typed(FINDING, row, FINDING_FIELDS)}
                finding_id = insert_row(conn, FINDING, values)
                children.append(Saved(FINDING.entity, finding_id, 1, owner.mrn))
            audit(conn, actor, "create", STUDY, study_id, owner.mrn, None)
            # a measurement stored before (an earlier import of the same scan): nothing is kept
            children += store_rows(
                conn,
                BONE_SCAN,
                measurements,
                owner=owner,
                actor=actor,
                named=lambda j: measurement_path(j, "ratio"),
            )
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(STUDY.entity, study_id, 1, owner.mrn, tuple(children))
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


def _study_key(head: Mapping[str, Any]) -> dict[str, Any]:
    """A study's natural key (patient, date, modality, accession): its indication is
    not part of it."""
    return {k: v for k, v in head.items() if k == "patient_id" or k in STUDY_KEY_FIELDS}


def _finding_row(
    row: Mapping[str, Any], study: Mapping[str, Any], notes: Any, mrn: str
) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "id"}
    if notes not in (None, "") and out.get("notes") in (None, ""):
        out["notes"] = notes
    return {**out, **study, "mrn": mrn}


def correct_imaging_study(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change a study's date, modality or accession and, with `findings`, its findings:
    row i corrects the study's i-th live finding in the patient page's order (site,
    then side), or the one whose `id` it names;
    rows beyond them add findings. Findings not mentioned are left as they are (void
    one with `void_record`). The study's version guards the whole change."""
    given_today, today = today, today or dt.date.today()
    flat = dict(changes)
    given = list(flat.pop("findings", None) or [])
    notes = flat.pop("notes", None)
    refuse_unknown(STUDY, flat, STUDY_FIELDS)
    refuse_unknown_in_rows(FINDING, given, FINDING_FIELDS, "findings")
    path = rows_path("findings", STUDY_FIELDS)
    try:
        with engine.begin() as conn:
            before = current(conn, STUDY, record_id, expected_version)
            owner = patient_by_id(conn, before["patient_id"])
            snapshot = record_snapshot(conn, STUDY, record_id)
            stored = {f["id"]: f for f in snapshot["findings"]}
            # the order the patient page lists them in (story: by site, then side)
            order = [f["id"] for f in sorted(stored.values(), key=lambda f: (f["site"], f["side"]))]
            targets: list[int | None] = []
            for i, row in enumerate(given):
                named = row.get("id")
                if named not in (None, ""):
                    if int(named) not in stored:
                        raise NotFound(
                            f"Finding {named} is not a live finding of study {record_id}."
                        )
                    targets.append(int(named))
                else:
                    targets.append(order[i] if i < len(order) else None)
            study = {name: flat.get(name, before[name]) for name in STUDY_FIELDS}
            rows = []
            for target, row in zip(targets, given, strict=True):
                base = {k: stored[target][k] for k in FINDING_FIELDS} if target else {}
                rows.append(_finding_row({**base, **row}, study, notes, owner.mrn))
            # Untouched findings are checked too: a new date must not precede birth for them
            untouched = [f for fid, f in stored.items() if fid not in targets]
            rows += [
                _finding_row({k: f[k] for k in FINDING_FIELDS}, study, None, owner.mrn)
                for f in untouched
            ]
            if not rows:  # a study without findings: its own fields are checked alone
                rows = [{**study, "mrn": owner.mrn}]
                path = lambda _i, c: c if c in STUDY_FIELDS else f"findings.{c}"  # noqa: E731
            checked = check_rows(
                fmt=fmt.IMAGING,
                rows=rows,
                field_path=path,
                source=STUDY.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            head = typed(STUDY, checked[0], STUDY_FIELDS)
            refuse_duplicate(
                conn, STUDY, _study_key({"patient_id": owner.id, **head}), "date", exclude=record_id
            )
            version = bump(conn, STUDY, record_id, expected_version, head)
            for target, row in zip(targets, checked[: len(given)], strict=True):
                values = typed(FINDING, row, FINDING_FIELDS)
                if target is None:
                    insert_row(conn, FINDING, {"study_id": record_id, **values})
                elif any(stored[target][k] != v for k, v in values.items()):
                    conn.execute(
                        sa.update(finding_table)
                        .where(finding_table.c.id == target)
                        .values(
                            **values,
                            version=finding_table.c.version + 1,
                            updated_at=dt.datetime.now(dt.UTC),
                        )
                    )
            sync_pending(conn, actor, record_id, owner.mrn)
            audit(conn, actor, "correct", STUDY, record_id, owner.mrn, without_timestamps(snapshot))
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(STUDY.entity, record_id, version, owner.mrn)
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


def correct_site_finding(
    *,
    engine: Engine,
    actor: str,
    record_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    today: dt.date | None = None,
    protocol: Protocol | None = None,
) -> Saved:
    """Change one site finding's fields (site, side, ho, features, notes)."""
    given_today, today = today, today or dt.date.today()
    refuse_unknown(FINDING, changes, FINDING_FIELDS)
    try:
        with engine.begin() as conn:
            before = current(conn, FINDING, record_id, expected_version)
            s = study_table.c
            study = conn.execute(
                sa.select(s.patient_id, s.date, s.modality, s.accession).where(
                    s.id == before["study_id"]
                )
            ).one()
            owner = patient_by_id(conn, study.patient_id)
            merged = {name: before[name] for name in FINDING_FIELDS}
            merged.update(changes)
            head = {"date": study.date, "modality": study.modality, "accession": study.accession}
            (row,) = check_rows(
                fmt=fmt.IMAGING,
                rows=[{**merged, **head, "mrn": owner.mrn}],
                field_path=flat_path,
                source=FINDING.entity,
                birth_date=owner.birth_date,
                today=today,
            )
            values = typed(FINDING, row, FINDING_FIELDS)
            key = {"study_id": before["study_id"], "site": values["site"], "side": values["side"]}
            refuse_duplicate(conn, FINDING, key, "side", exclude=record_id)
            version = bump(conn, FINDING, record_id, expected_version, values)
            sync_pending(conn, actor, before["study_id"], owner.mrn)
            audit(conn, actor, "correct", FINDING, record_id, owner.mrn, without_timestamps(before))
    except sa.exc.IntegrityError as error:
        raise stored_together(error) from error
    saved = Saved(FINDING.entity, record_id, version, owner.mrn)
    return follow_record(saved, engine=engine, protocol=protocol, today=given_today)


def sync_pending(conn: Connection, actor: str, study_id: int, mrn: str) -> None:
    """Bring the study's DICOM pending sites in line with its live findings: a site a
    finding now matches is completed, and a completed site no finding matches any
    more (voided, or corrected to another site or side) waits again. One audit row
    per site changed (entity dicom_pending_site)."""
    reopened = reopen_pending_sites(conn, [study_id])
    completed = complete_pending_sites(conn, [study_id], actor)
    changes = [
        (reopened, "completed", {"status": "pending", "reason": "no finding matches it"}),
        (completed, "pending", {"status": "completed", "completed_by": actor}),
    ]
    for ids, was, now in changes:
        for pending_id in ids:
            write_event(
                conn,
                actor=actor,
                action=vocab.AuditAction.correct,
                entity="dicom_pending_site",
                entity_id=pending_id,
                mrn=mrn,
                before={"status": was},
                after={**now, "study_id": study_id},
            )
