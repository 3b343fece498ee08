"""`ho-tracker dicom import PATH...`: imaging studies from DICOM headers.

Only headers are read (pixel data is never loaded). Each file gives a study of a
stored patient (PatientID = mrn) on StudyDate, with its modality mapped to the
tracker's and its accession number; Body Part Examined and Laterality, where
present, give a pending site for a clinician to complete with the finding.

All or nothing, like every import: every file is read and checked first, any
problem (not DICOM, no date, a date before 1900, in the future or before the
patient's birth, unknown patient, a modality the tracker does not follow) is
reported by file and element and nothing is written. A study is known
by its natural key (patient, date, modality, accession), so importing the same
files again adds nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import sqlalchemy as sa
from pydicom.errors import InvalidDicomError
from sqlalchemy.engine import Engine

from tracker import values
from tracker.errors import Problem, TrackerError, ValidationFailed
from tracker.interchange import fhir_codes as codes
from tracker.store.models import DicomPendingSite, ImagingStudy, Patient, table_of

if TYPE_CHECKING:
    from tracker.interchange.csv_import import ImportAudit

# DICOM Body Part Examined (0018,0015) defined terms (PS3.16 annex L) -> tracker site.
BODY_PART_SITE = {
    "HIP": "hip", "KNEE": "knee", "ELBOW": "elbow", "SHOULDER": "shoulder",
    "THIGH": "thigh", "FEMUR": "thigh", "PELVIS": "pelvis", "SPINE": "spine",
    "CSPINE": "spine", "TSPINE": "spine", "LSPINE": "spine", "SSPINE": "spine",
    "ANKLE": "ankle", "WRIST": "wrist", "HAND": "hand", "FOOT": "foot", "JAW": "jaw",
    "TMJ": "jaw",
}  # fmt: skip
LATERALITY_SIDE = {"L": "left", "R": "right"}
PATIENT_ID = "(0010,0020) PatientID"
STUDY_DATE = "(0008,0020) StudyDate"
MODALITY = "(0008,0060) Modality"
ACCESSION = "(0008,0050) AccessionNumber"
BODY_PART = "(0018,0015) BodyPartExamined"
LATERALITY = "(0020,0060) Laterality"
IMAGE_LATERALITY = "(0020,0062) ImageLaterality"
# the longest each may be: the columns they are stored in
ACCESSION_MAX, BODY_PART_MAX, LATERALITY_MAX = 64, 64, 16
_YYYYMMDD = re.compile(r"[0-9]{8}")


@dataclass(frozen=True)
class DicomStudy:
    """What one file's header says."""

    source: str
    mrn: str
    date: dt.date
    modality: str
    accession: str | None
    body_part: str
    laterality: str


@dataclass
class DicomSummary:
    files: int = 0
    studies_added: int = 0
    sites_added: int = 0
    unchanged: int = 0
    studies: list[DicomStudy] = field(default_factory=list)


def dicom_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every file under the folders named, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise TrackerError(f"{path} is neither a file nor a folder; name DICOM files.")
    return found


def read_header(path: Path, today: dt.date) -> tuple[DicomStudy | None, list[Problem]]:
    """The study one file's header gives, or the problems that refuse it (by file and
    element). Any file at all is answered so: a file pydicom cannot read, or whose
    elements cannot be decoded, is refused with the reason, never a traceback."""
    source = str(path)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        return None, [Problem(source, None, "file", f"is not a DICOM file ({error})")]
    except Exception as error:  # any malformed file is the user's, not a server fault
        return None, [Problem(source, None, "file", f"cannot be read as DICOM ({_said(error)})")]
    try:
        return study_of(header, source, today)
    except Exception as error:  # an element pydicom cannot decode (values are read lazily)
        return None, [Problem(source, None, "file", f"has a header that cannot be read "
                              f"({_said(error)})")]  # fmt: skip


def _said(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error)[:200]}"


def study_of(
    header: pydicom.Dataset, source: str, today: dt.date
) -> tuple[DicomStudy | None, list[Problem]]:
    """The study a header says (a file's, or a PACS's QIDO-RS answer made a Dataset),
    or the problems that refuse it, by element: one check for every way in."""
    problems = []

    def text(keyword: str) -> str:
        value = header.get(keyword)
        return str(value).strip() if value is not None else ""

    def checked(keyword: str, element: str, limit: int) -> str:
        said = text(keyword)
        problem = values.text_problem(said, limit=limit)
        if problem is not None:
            problems.append(Problem(source, None, element, problem))
        return said

    mrn = text("PatientID")
    if not mrn:
        problems.append(Problem(source, None, PATIENT_ID, "is missing; it must be the mrn"))
    elif (mrn_problem := values.mrn_problem(mrn)) is not None:
        problems.append(Problem(source, None, PATIENT_ID, mrn_problem))
    raw_date = text("StudyDate")
    date = None
    if not raw_date:
        problems.append(Problem(source, None, STUDY_DATE, "is missing; the study needs a date"))
    else:
        try:
            if not _YYYYMMDD.fullmatch(raw_date):
                raise ValueError(raw_date)
            date = dt.datetime.strptime(raw_date, "%Y%m%d").date()
        except ValueError:
            problems.append(Problem(source, None, STUDY_DATE, f"'{raw_date[:40]}' is not YYYYMMDD"))
        else:
            if (date_problem := values.date_problem(date, today=today)) is not None:
                problems.append(Problem(source, None, STUDY_DATE, date_problem))
                date = None
    raw_modality = text("Modality").upper()
    modality = codes.DICOM_MODALITY.get(raw_modality)
    if modality is None:
        allowed = ", ".join(sorted(codes.DICOM_MODALITY))
        problems.append(
            Problem(
                source, None, MODALITY, f"'{raw_modality[:40]}' is not followed; one of {allowed}"
            )
        )
    accession = checked("AccessionNumber", ACCESSION, ACCESSION_MAX)
    body_part = checked("BodyPartExamined", BODY_PART, BODY_PART_MAX)
    laterality = checked("Laterality", LATERALITY, LATERALITY_MAX) or checked(
        "ImageLaterality", IMAGE_LATERALITY, LATERALITY_MAX
    )
    if problems or date is None or modality is None:
        return None, problems
    return (
        DicomStudy(
            source=source,
            mrn=mrn,
            date=date,
            modality=modality,
            accession=accession or None,
            body_part=body_part.upper(),
            laterality=laterality.upper(),
        ),
        [],
    )


def import_dicom(
    engine: Engine,
    paths: Sequence[Path],
    *,
    today: dt.date | None = None,
    audit: ImportAudit | None = None,
) -> DicomSummary:
    """Read every header, check all, then store studies and pending sites at once;
    `audit` is given what was added per patient, inside that transaction (issue 15)."""
    today = today or dt.date.today()
    files = dicom_files(paths)
    if not files:
        raise TrackerError("No files found; name DICOM files or folders holding them.")
    summary = DicomSummary(files=len(files))
    problems: list[Problem] = []
    for path in files:
        study, found = read_header(path, today)
        problems += found
        if study is not None:
            summary.studies.append(study)
    with engine.begin() as conn:
        ids, born = known_patients(conn, {s.mrn for s in summary.studies})
        problems += [
            Problem(
                s.source, None, PATIENT_ID, f"'{s.mrn}' is not a known patient; import it first"
            )
            for s in summary.studies
            if s.mrn not in ids
        ]
        # a record is never dated before the patient's birth (the words of the CSV import)
        problems += [
            Problem(
                s.source,
                None,
                STUDY_DATE,
                f"{s.date.isoformat()} is before the patient's birth date "
                f"{born[s.mrn].isoformat()}",
            )
            for s in summary.studies
            if s.mrn in born and s.date < born[s.mrn]
        ]
        if problems:
            raise ValidationFailed(problems)
        added = store_studies(conn, [(s, ids[s.mrn]) for s in summary.studies], summary)
        if audit is not None:
            audit(conn, added)
    return summary


def known_patients(
    conn: sa.Connection, mrns: Iterable[str]
) -> tuple[dict[str, int], dict[str, dt.date]]:
    """The live patients among `mrns`: their ids, and the birth dates that are known."""
    patient = table_of(Patient)
    query = sa.select(patient.c.mrn, patient.c.id, patient.c.birth_date).where(
        patient.c.mrn.in_(sorted(set(mrns)))
    )
    if "voided_at" in patient.c:  # a voided patient takes no new studies
        query = query.where(patient.c.voided_at.is_(None))
    stored = conn.execute(query).all()
    ids = {mrn: pid for mrn, pid, _ in stored}
    born = {mrn: birth for mrn, _, birth in stored if birth is not None}
    return ids, born


# bound parameters per IN list: well under SQLite's and PostgreSQL's limits
_CHUNK = 400
_StudyKey = tuple[int, dt.date, str, str | None]


def store_study(
    conn: sa.Connection, study: DicomStudy, patient_id: int, summary: DicomSummary
) -> None:
    """Store one checked study (see `store_studies`)."""
    store_studies(conn, [(study, patient_id)], summary)


def store_studies(
    conn: sa.Connection, studies: Sequence[tuple[DicomStudy, int]], summary: DicomSummary
) -> dict[str, dict[str, int]]:
    """Store checked studies (each with its patient's id) by their natural key
    (patient, date, modality, accession) and their pending sites (body part,
    laterality), each only if not already stored: the same study from a file and from
    the PACS is one imaging study, and two headers of one study in `studies` are one
    study. Set-based: a query for the stored studies, one for their pending sites,
    then a bulk insert of each. Gives what was added per patient (by mrn, in order),
    for the import's audit."""
    table = table_of(ImagingStudy)
    pending = table_of(DicomPendingSite)
    keys = [(pid, s.date, s.modality, s.accession) for s, pid in studies]
    known = _stored_studies(conn, keys)
    new: dict[_StudyKey, None] = {k: None for k in keys if k not in known}
    if new:
        rows = [
            {"patient_id": pid, "date": date, "modality": modality, "accession": accession}
            for pid, date, modality, accession in new
        ]
        if conn.dialect.insert_executemany_returning:
            inserted = conn.execute(
                sa.insert(table).returning(
                    table.c.id, table.c.patient_id, table.c.date, table.c.modality,
                    table.c.accession,
                ),
                rows,
            )  # fmt: skip
            known.update({(p, d, m, a): i for i, p, d, m, a in inserted})
        else:
            conn.execute(sa.insert(table), rows)
            known.update(_stored_studies(conn, list(new)))
    ids = list({known[k]: None for k in keys})
    have: set[tuple[int, str, str]] = set()
    for chunk in _chunks(ids):
        have.update(
            conn.execute(
                sa.select(pending.c.study_id, pending.c.body_part, pending.c.laterality).where(
                    pending.c.study_id.in_(chunk)
                )
            ).tuples()
        )
    added: dict[str, dict[str, int]] = {}
    sites: list[dict[str, object]] = []
    seen: set[_StudyKey] = set()
    for key, (study, _) in zip(keys, studies, strict=True):
        study_added = key in new and key not in seen
        seen.add(key)
        site_added = False
        if study.body_part or study.laterality:
            site_key = (known[key], study.body_part, study.laterality)
            if site_key not in have:
                have.add(site_key)
                sites.append(_site_row(study, known[key]))
                site_added = True
        summary.studies_added += int(study_added)
        summary.sites_added += int(site_added)
        if not (study_added or site_added):
            summary.unchanged += 1
        mine = added.setdefault(study.mrn, {"imaging studies": 0, "pending sites": 0})
        mine["imaging studies"] += int(study_added)
        mine["pending sites"] += int(site_added)
    if sites:
        conn.execute(sa.insert(pending), sites)
    return added


def _chunks(items: Sequence[object]) -> Iterable[list[object]]:
    for at in range(0, len(items), _CHUNK):
        yield list(items[at : at + _CHUNK])


def _stored_studies(conn: sa.Connection, keys: Sequence[_StudyKey]) -> dict[_StudyKey, int]:
    """The ids of the live stored studies among `keys`, by key."""
    if not keys:
        return {}
    table = table_of(ImagingStudy)
    wanted = set(keys)
    first, last = min(k[1] for k in keys), max(k[1] for k in keys)
    found: dict[_StudyKey, int] = {}
    for chunk in _chunks(sorted({k[0] for k in keys})):
        query = sa.select(
            table.c.id, table.c.patient_id, table.c.date, table.c.modality, table.c.accession
        ).where(table.c.patient_id.in_(chunk), table.c.date.between(first, last))
        if "voided_at" in table.c:  # a voided study is not the study these files describe
            query = query.where(table.c.voided_at.is_(None))
        for study_id, *key in conn.execute(query.order_by(table.c.id)):
            one: _StudyKey = (key[0], key[1], key[2], key[3])
            if one in wanted:
                found.setdefault(one, study_id)
    return found


def _site_row(study: DicomStudy, study_id: int) -> dict[str, object]:
    site = BODY_PART_SITE.get(study.body_part)
    side = LATERALITY_SIDE.get(study.laterality)
    if site == "spine" or site == "pelvis":
        side = side or "midline"
    return {
        "study_id": study_id,
        "body_part": study.body_part,
        "laterality": study.laterality,
        "site": site,
        "side": side,
        "source_file": study.source[-500:],
        "status": "pending",
    }
