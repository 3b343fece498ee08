"""What the pages and the API show, read through the same services as the CLI.

The patient view loads the story once (a fixed number of queries whatever the
cohort size) and assesses it with `staging.assess_patient`, the function behind
`assess_one`; the board and the filtered patient list read the stored site
assessments (services/site_assessments.py), which the cohort path wrote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker import vocab
from tracker.protocol import Protocol
from tracker.services.interop import PendingSite, pending_sites
from tracker.services.patients import (
    PAGE_SIZE,
    PatientSearch,
    PatientSummary,
    RecordChange,
    StoryEvent,
    course_stop_reasons,
    record_changes,
    search_patients,
    timeline,
)
from tracker.services.site_assessments import assessment_state, refresh_all, site_filters
from tracker.services.worklist import patient_reminders
from tracker.staging import assess_patient, to_json
from tracker.store.loaders import story_records
from tracker.store.story import PatientStory, load_story


@dataclass(frozen=True)
class PatientView:
    story: PatientStory
    events: list[StoryEvent]
    assessment: dict[str, Any]  # to_json(...) of model-spec section 8
    reminders: list[dict[str, Any]]
    as_of: dt.date
    pending_sites: list[PendingSite]  # DICOM sites waiting for their finding
    stop_reasons: dict[int, str]  # course id -> why it was stopped
    changes: list[RecordChange]  # the latest corrections and voids, newest first
    more_changes: bool  # older ones are in the audit trail
    fop_since: dt.date | None  # the first fop injury: never resect (model-spec 7)


def patient_view(*, engine: Engine, mrn: str, as_of: dt.date, protocol: Protocol) -> PatientView:
    """The story, its assessment as of `as_of`, reminders, and the record's latest
    corrections and voids, in a fixed number of queries whatever the cohort size."""
    with Session(engine) as session:
        story = load_story(session, mrn)
        session.expunge_all()
    assessment = assess_patient(story_records(story), as_of, protocol)
    stopped = course_stop_reasons(engine=engine, mrn=mrn)  # one query
    changes, more_changes = record_changes(engine=engine, mrn=mrn)  # one query
    fop = [i.date for i in story.injuries if i.kind == vocab.InjuryKind.fop]
    return PatientView(
        story=story,
        events=timeline(story, stop_reasons=stopped),
        assessment=to_json(assessment),
        reminders=patient_reminders(engine=engine, mrn=mrn, today=as_of),
        as_of=as_of,
        pending_sites=pending_sites(engine=engine, mrn=mrn),  # one query
        stop_reasons=stopped,
        changes=changes,
        more_changes=more_changes,
        fop_since=min(fop) if fop else None,
    )


@dataclass(frozen=True)
class PatientFilters:
    """The patient list's filters; they live in the URL so a list can be shared."""

    q: str | None = None
    team: str | None = None
    injury: str | None = None
    ho: bool | None = None
    stage: str | None = None
    readiness: str | None = None
    flag: str | None = None

    def search(self) -> PatientSearch:
        """The service's search; a stage, readiness or flag that is none of its values
        is refused in a sentence (`site_filters`)."""
        sites = site_filters(stage=self.stage, readiness=self.readiness, flag=self.flag)
        return PatientSearch(
            text=self.q, team=self.team, injury=self.injury, with_ho=self.ho, sites=sites
        )

    def query(self) -> list[tuple[str, str]]:
        """The filters as the list's form sends them, for page links (empty ones left out)."""
        ho = None if self.ho is None else ("yes" if self.ho else "no")
        pairs = [
            ("q", self.q),
            ("team", self.team),
            ("injury", self.injury),
            ("ho", ho),
            ("stage", self.stage),
            ("readiness", self.readiness),
            ("flag", self.flag),
        ]
        return [(name, value) for name, value in pairs if value]


@dataclass(frozen=True)
class PatientRow:
    summary: PatientSummary
    sites: list[dict[str, Any]] | None  # None when the list was not assessed


@dataclass(frozen=True)
class PatientRows:
    """One page of the patient list; `next_after` is where the next page starts."""

    rows: list[PatientRow]
    next_after: str | None
    assessed: bool  # the rows carry their sites' stage and readiness
    stale: str | None = None  # why the stored assessments read are not today's
    assessed_as_of: dt.date | None = None  # the day of the oldest stored call read


def patient_rows(
    *,
    engine: Engine,
    filters: PatientFilters,
    as_of: dt.date,
    protocol: Protocol,
    after: str | None = None,
    size: int = PAGE_SIZE,
) -> PatientRows:
    """A page of matching patients in name order, after the page that ended at `after`.

    Stage, readiness and flag are filters on the stored site assessments (the board's,
    services/site_assessments.py): the page reads them, never assesses the cohort,
    and shows each row's stored sites; `stale` says when they are not today's calls
    under this protocol. When none is stored yet, today's are stored first, as the
    board does."""
    search = filters.search()
    if not search.sites.any:
        page = search_patients(engine=engine, search=search, after=after, size=size)
        return PatientRows([PatientRow(s, None) for s in page.patients], page.next_after, False)
    state = assessment_state(engine=engine)
    if state.empty:
        refresh_all(engine=engine, as_of=as_of, protocol=protocol)
        state = assessment_state(engine=engine)
    page = search_patients(engine=engine, search=search, after=after, size=size)
    stored = page.sites or {}
    rows = [PatientRow(s, stored.get(s.mrn, [])) for s in page.patients]
    stale = state.problem(as_of, protocol.fingerprint)
    return PatientRows(rows, page.next_after, True, stale, state.as_of)


# Where a reminder is satisfied (model-spec section 9): the form that records it,
# with what can be filled in already. Rules closed by acknowledgement open the patient.
# The form reads the reminder itself for its site, side and due date.
SATISFIED_BY: dict[str, tuple[str, dict[str, str]]] = {
    "hip_ultrasound_screen": ("imaging", {"modality": "ultrasound", "site": "hip"}),
    "monitoring_radiograph": ("imaging", {"modality": "radiograph"}),
    "recurrence_radiograph": ("imaging", {"modality": "radiograph"}),
    "post_course_radiograph": ("imaging", {"modality": "radiograph"}),
    "maturity_bone_scan": ("bone-scans", {}),
    "consider_prophylaxis": ("courses", {"intent": "prophylaxis"}),
    "post_resection_prophylaxis": ("courses", {"intent": "post_resection"}),
    # v2, the bedside rules: imaging of the site (any modality); a hip ultrasound
    "suspected_ho_imaging": ("imaging", {}),
    "dvt_query_hip_ultrasound": ("imaging", {"modality": "ultrasound", "site": "hip"}),
}


def satisfying_link(row: dict[str, Any], back: str | None = None) -> str | None:
    """The "Record it" link of a reminder row (id, mrn, rule): the form that satisfies
    it, carrying the reminder (the form names it, fills in its site, side and due
    date) and `back`, the local page to return to after saving (say the worklist
    with its filters: `request.url.path` plus its query). None for the rules closed
    by acknowledgement."""
    from urllib.parse import quote, urlencode

    found = SATISFIED_BY.get(str(row["rule"]))
    if found is None:
        return None
    form, prefill = found
    values = dict(prefill)
    if row.get("id") is not None:
        values["reminder"] = str(row["id"])
    if back:
        values["next"] = back
    query = f"?{urlencode(values)}" if values else ""
    return f"/patients/{quote(str(row['mrn']), safe='')}/{form}/new{query}"
