"""One poll of the PACS: QIDO-RS study queries by study-date window, matched to the
tracked patients here, stored through the DICOM header import path.

Why date windows and not one query per patient: a unit follows about 2,000 patients,
and a query per patient per poll is 2,000 round trips that nearly all answer nothing;
one query per date window returns the studies of the days asked, and the ones of
patients the tracker does not follow are skipped and counted. With `mrn` (the CLI's
`--mrn`) the query asks for that patient only (PatientID = MRN, and the issuer of
patient ID when one is set), and the position is left alone.

Paging: servers cap results (100, 1,000, 10,000) and some ignore `offset`. A window
whose answer is full (as many results as asked, or one of those caps) is halved and
each half asked again, down to a single day; a single day still full is paged with
`offset`, and a server that answers an offset with studies already seen (it ignores
offset) fails the poll with that sentence rather than miss studies.

Each window's studies are written in one transaction together with the advanced
position (`state.advance`), and every question to the PACS is asked before that
transaction starts, so a fault at any point leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pydicom
import requests
import sqlalchemy as sa
from dicomweb_client import DICOMwebClient
from sqlalchemy.engine import Engine

from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_import import ImportAudit
from tracker.interchange.dicom_import import (
    DicomStudy,
    DicomSummary,
    known_patients,
    store_studies,
)
from tracker.interchange.dicom_import import study_of as header_study
from tracker.labels import count
from tracker.pacs.settings import PacsSettings
from tracker.pacs.state import (
    PacsFault,
    advance,
    claim,
    read_state,
    record_failure,
    record_success,
)
from tracker.services.audit import import_recorder
from tracker.store.models import DicomPendingSite, table_of, utcnow

log = logging.getLogger("tracker.pacs")

STUDY_FIELDS = (
    "StudyInstanceUID",
    "PatientID",
    "StudyDate",
    "AccessionNumber",
    "ModalitiesInStudy",
    "BodyPartExamined",
    "Laterality",
    "NumberOfStudyRelatedSeries",
)
SERIES_FIELDS = ("Modality", "BodyPartExamined", "Laterality")
# result caps servers are known to apply whatever limit was asked: a page of exactly
# this many may be cut short, so the window is narrowed to make sure
KNOWN_CAPS = frozenset({100, 500, 1000, 5000, 10000})
STUDY_UID, BODY_PART_TAG, SERIES_COUNT_TAG = "0020000D", "00180015", "00201206"
SOURCE_PREFIX = "pacs:"


@dataclass
class PollReport:
    """What one poll did, for the CLI, the job's log and the tests."""

    window_start: dt.date
    window_end: dt.date
    created: int = 0  # new imaging studies
    sites_added: int = 0  # new pending sites
    already_known: int = 0  # studies (and series) the tracker already had
    unknown_patient: int = 0  # studies of patients the tracker does not follow
    studies_seen: int = 0
    queries: int = 0  # QIDO-RS requests made
    pages: int = 0  # study pages read
    windows: int = 0  # date windows written, each in its own transaction
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> studies
    complete_through: dt.date | None = None

    def sentences(self) -> list[str]:
        said = [
            f"Read studies dated {_day(self.window_start)} to {_day(self.window_end)} "
            f"from the PACS in {count(self.queries, 'query', 'queries')} "
            f"({count(self.pages, 'page')}).",
            f"{count(self.studies_seen, 'study', 'studies')} seen: "
            f"{count(self.created, 'new imaging study', 'new imaging studies')} and "
            f"{count(self.sites_added, 'pending site')} added, {self.already_known} already "
            f"in the tracker, {self.unknown_patient} of patients the tracker does not "
            "follow (skipped).",
        ]
        said += [f"Skipped {n}: {reason}." for reason, n in sorted(self.skipped.items())]
        if self.complete_through is not None:
            said.append(f"Every study up to {_day(self.complete_through)} has been read.")
        return said


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


def client_for(settings: PacsSettings) -> DICOMwebClient:
    """A dicomweb-client for the PACS: credentials and CA file on its session, the
    timeout per request, and no retries of its own (the poll's back-off decides)."""
    session = requests.Session()
    if settings.user is not None and settings.password is not None:
        session.auth = (settings.user, settings.password)
    if settings.ca_file is not None:
        session.verify = str(settings.ca_file)
    client = DICOMwebClient(url=settings.url, session=session, timeout=settings.timeout_seconds)
    client.set_http_retry_params(retry=False)
    return client


def fault_of(error: Exception, settings: PacsSettings) -> PacsFault:
    """The sentence for what went wrong talking to the PACS."""
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code == 401:
            return PacsFault(f"PACS refused the credentials ({code})")
        if code == 403:
            return PacsFault(f"PACS refused access to its studies ({code})")
        if code >= 500:
            return PacsFault(f"PACS failed with a server error ({code})")
        return PacsFault(f"PACS refused the query ({code} {error.response.reason})")
    if isinstance(error, requests.exceptions.SSLError):
        return PacsFault(
            f"PACS at {settings.url} has a certificate the tracker does not trust "
            "(set HO_TRACKER_PACS_CA_FILE)"
        )
    if isinstance(error, requests.exceptions.Timeout):
        return PacsFault(
            f"PACS did not answer within {settings.timeout_seconds:g} s at {settings.url}"
        )
    if isinstance(error, requests.exceptions.ConnectionError):
        return PacsFault(f"PACS not reachable at {settings.url}")
    if isinstance(error, (json.JSONDecodeError, requests.exceptions.JSONDecodeError)):
        return PacsFault("PACS sent malformed JSON")
    if isinstance(error, requests.exceptions.RequestException):
        return PacsFault(f"PACS could not be asked at {settings.url} ({type(error).__name__})")
    raise error


class _Pacs:
    """The QIDO-RS questions of one poll, counted, each answer checked for shape."""

    def __init__(self, settings: PacsSettings, report: PollReport) -> None:
        self.settings, self.report = settings, report
        self.client = client_for(settings)

    def _ask(self, call: Any, **arguments: Any) -> list[dict[str, Any]]:
        self.report.queries += 1
        try:
            answer = call(**arguments)
        except Exception as error:
            raise fault_of(error, self.settings) from error
        if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
            raise PacsFault("PACS sent malformed JSON (not a list of DICOM data sets)")
        return answer

    def studies(
        self, filters: Mapping[str, str], offset: int | None = None
    ) -> list[dict[str, Any]]:
        self.report.pages += 1
        return self._ask(
            self.client.search_for_studies,
            search_filters=dict(filters),
            fields=list(STUDY_FIELDS),
            limit=self.settings.page_limit,
            offset=offset,
        )

    def series(self, study_uid: str) -> list[dict[str, Any]]:
        return self._ask(
            self.client.search_for_series,
            study_instance_uid=study_uid,
            fields=list(SERIES_FIELDS),
        )


def _full(page: list[dict[str, Any]], limit: int) -> bool:
    return len(page) >= limit or len(page) in KNOWN_CAPS


def _uid(result: Mapping[str, Any]) -> str | None:
    try:
        value = result[STUDY_UID]["Value"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return str(value) if value else None


def _windows(
    pacs: _Pacs, start: dt.date, end: dt.date, filters: Mapping[str, str]
) -> Iterator[tuple[dt.date, dt.date, list[dict[str, Any]]]]:
    """Every study dated `start`..`end`, as (first day, last day, results) per window
    in date order; a full window is halved until it is not, or is a single day."""
    span = {**filters, "StudyDate": f"{start:%Y%m%d}-{end:%Y%m%d}"}
    page = pacs.studies(span)
    limit = pacs.settings.page_limit
    if not _full(page, limit):
        yield start, end, page
        return
    if start < end:
        middle = start + (end - start) // 2
        yield from _windows(pacs, start, middle, filters)
        yield from _windows(pacs, middle + timedelta(days=1), end, filters)
        return
    # one day holds more studies than a page: page on with offset
    seen = {_uid(r): r for r in page}
    while _full(page, limit):
        page = pacs.studies(span, offset=len(seen))
        new = {uid: r for r in page if (uid := _uid(r)) not in seen}
        if page and not new:
            raise PacsFault(
                f"PACS ignores offset and caps {_day(start)} at {len(seen)} studies, so "
                "some of that day's studies cannot be read; raise its result limit "
                "(or lower HO_TRACKER_PACS_PAGE_LIMIT to its cap)"
            )
        seen.update(new)
    yield start, end, list(seen.values())


@dataclass
class _Window:
    """One window's headers, checked, ready to store."""

    studies: list[DicomStudy] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)  # per study, for the unknown count


def _header(result: Mapping[str, Any]) -> pydicom.Dataset:
    header = pydicom.Dataset.from_json(dict(result))
    said = header.get("ModalitiesInStudy") or []
    modalities = [str(m).upper() for m in ([said] if isinstance(said, str) else said)]
    # a study of a radiograph and its presentation state (CR, PR) is a radiograph
    followed = [m for m in modalities if m in codes.DICOM_MODALITY]
    if followed or modalities:
        header.Modality = (followed or modalities)[0]
    return header


class _Poll:
    def __init__(
        self,
        *,
        engine: Engine,
        settings: PacsSettings,
        today: dt.date,
        report: PollReport,
        actor: str | None,
    ) -> None:
        self.engine, self.settings, self.today, self.report = engine, settings, today, report
        self.pacs = _Pacs(settings, report)
        self.logged: set[str] = set()
        self.audit: ImportAudit = import_recorder(actor=actor, source=f"PACS {settings.url}")

    def skip(self, reason: str, uid: str) -> None:
        self.report.skipped[reason] += 1
        if reason not in self.logged:  # once per distinct reason, not per study
            self.logged.add(reason)
            log.warning("PACS study %s skipped: %s", uid, reason)

    def checked(self, results: list[dict[str, Any]], tracked: set[str]) -> _Window:
        """Headers to studies (the file import's checks); studies of untracked
        patients counted and dropped; multi-series studies asked series by series
        (study level gives one body part) unless already stored from the PACS."""
        window = _Window()
        wanted: list[tuple[str, pydicom.Dataset]] = []
        for result in results:
            uid = _uid(result)
            if uid is None:
                self.skip("the PACS sent a study without a StudyInstanceUID", "?")
                continue
            self.report.studies_seen += 1
            try:
                header = _header(result)
                mrn = str(header.get("PatientID") or "").strip()
            except Exception as error:  # one broken data set is that study's problem
                self.skip(f"its header cannot be read ({type(error).__name__})", uid)
                continue
            if mrn not in tracked:
                self.report.unknown_patient += 1
                continue
            wanted.append((uid, header))
        several = [
            uid
            for uid, header in wanted
            if int(header.get("NumberOfStudyRelatedSeries") or 1) > 1
            or "BodyPartExamined" not in header
        ]
        stored = self._stored_from_pacs(several)
        for uid, header in wanted:
            if uid in several and uid not in stored:
                for series in self.pacs.series(uid):
                    try:
                        one = pydicom.Dataset.from_json(series)
                    except Exception as error:  # that series' problem, not the poll's
                        self.skip(f"a series header cannot be read ({type(error).__name__})", uid)
                        continue
                    for keyword in SERIES_FIELDS:  # each series says its own, or nothing
                        if keyword in header:
                            delattr(header, keyword)
                        if keyword in one:
                            setattr(header, keyword, one.get(keyword))
                    self._add(window, header, uid)
            else:
                self._add(window, header, uid)
        return window

    def _add(self, window: _Window, header: pydicom.Dataset, uid: str) -> None:
        study, problems = header_study(header, SOURCE_PREFIX + uid, self.today)
        if study is None:
            for problem in problems:
                self.skip(f"{problem.field} {problem.reason}", uid)
            return
        window.studies.append(study)
        window.uids.append(uid)

    def _stored_from_pacs(self, uids: list[str]) -> set[str]:
        if not uids:
            return set()
        pending = table_of(DicomPendingSite).c
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(pending.source_file).where(
                    pending.source_file.in_([SOURCE_PREFIX + u for u in uids])
                )
            ).scalars()
            return {s.removeprefix(SOURCE_PREFIX) for s in found}

    def store(self, window: _Window, through: dt.date | None) -> None:
        """The window's studies and the new position, in one transaction."""
        summary = DicomSummary()
        with self.engine.begin() as conn:
            ids, born = known_patients(conn, {s.mrn for s in window.studies})
            storing: list[tuple[DicomStudy, int]] = []
            for study, uid in zip(window.studies, window.uids, strict=True):
                if study.mrn not in ids:  # voided meanwhile
                    self.report.unknown_patient += 1
                elif study.mrn in born and study.date < born[study.mrn]:
                    self.skip("its study date is before the patient's birth date", uid)
                else:
                    storing.append((study, ids[study.mrn]))
            added = store_studies(conn, storing, summary)  # set-based, in this transaction
            self.audit(conn, added)  # a row per patient given a study, as the file import
            if through is not None:
                advance(conn, through)
        self.report.created += summary.studies_added
        self.report.sites_added += summary.sites_added
        self.report.already_known += summary.unchanged
        self.report.windows += 1
        if through is not None:
            self.report.complete_through = through


def _tracked_mrns(engine: Engine) -> set[str]:
    from tracker.store.models import Patient

    patient = table_of(Patient).c
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(patient.mrn).where(patient.voided_at.is_(None))).scalars()
        )


def poll(
    *,
    engine: Engine,
    settings: PacsSettings,
    since: dt.date | None = None,
    today: dt.date | None = None,
    mrn: str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> PollReport:
    """Read the PACS's studies from `since` (default: the day the stored position
    reaches, or `first_days` back on the first poll) to `today`, store the new ones
    of tracked patients, and move the position on window by window. Raises
    `PacsFault` (recorded, with its back-off, in the state row) when the PACS cannot
    be read; the windows written before the fault stay written."""
    today = today or dt.date.today()
    state = read_state(engine=engine)
    position = state.complete_through
    if since is None:
        since = position if position is not None else today - timedelta(days=settings.first_days)
    report = PollReport(window_start=since, window_end=today)
    if since > today:
        return report
    worker = _Poll(engine=engine, settings=settings, today=today, report=report, actor=actor)
    filters: dict[str, str] = {}
    if mrn is not None:
        filters["PatientID"] = mrn
    if settings.issuer is not None:
        filters["IssuerOfPatientID"] = settings.issuer
    tracked = _tracked_mrns(engine)
    # studies of today keep arriving: the position reaches yesterday at most
    last_complete = today - timedelta(days=1)
    try:
        for first, last, results in _windows(worker.pacs, since, today, filters):
            contiguous = position is None or first <= position + timedelta(days=1)
            through = min(last, last_complete)
            moves = mrn is None and contiguous and through >= first - timedelta(days=1)
            worker.store(worker.checked(results, tracked), through if moves else None)
            if moves:
                position = max(position or through, through)
    except PacsFault as fault:
        fault.report = report
        record_failure(engine=engine, fault=fault, now=now)
        raise
    record_success(engine=engine, now=now or utcnow(), poll_minutes=settings.poll_minutes)
    return report


def poll_if_due(
    *, engine: Engine, settings: PacsSettings, now: datetime | None = None
) -> PollReport | None:
    """The scheduled job: poll when the back-off (or the poll interval) allows, as one
    scheduler only; a fault is recorded and logged by `poll`, not raised."""
    now = now or utcnow()
    lease = timedelta(minutes=max(settings.poll_minutes, 10))
    if not claim(engine=engine, now=now, lease=lease):
        return None
    try:
        return poll(engine=engine, settings=settings, now=now)
    except PacsFault:
        return None
