"""What the pages and the API show, read through the same services as the CLI.

The patient view loads the story once (a fixed number of queries whatever the
cohort size) and assesses it with `staging.assess_patient`, the function behind
`assess_one`; only the board and the filtered patient list take the cohort path.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker import vocab
from tracker.protocol import Protocol
from tracker.services.assessment import assess_all
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
from tracker.services.worklist import patient_reminders
from tracker.staging import assess_patient, to_json
from tracker.staging.cohort import cohort_as_json_sites
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

    @property
    def needs_assessment(self) -> bool:
        return bool(self.stage or self.readiness or self.flag)

    def search(self) -> PatientSearch:
        return PatientSearch(text=self.q, team=self.team, injury=self.injury, with_ho=self.ho)

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

    Stage, readiness and flag are filters on the assessment: for now the cohort is
    assessed (`assess_all`, as the board does) and the paged walk keeps the patients
    with a site that meets all three."""
    if not filters.needs_assessment:
        page = search_patients(engine=engine, search=filters.search(), after=after, size=size)
        return PatientRows([PatientRow(s, None) for s in page.patients], page.next_after, False)
    frame = assess_all(engine=engine, as_of=as_of, protocol=protocol)
    wanted = _assessed_matches(frame, filters)
    page = search_patients(
        engine=engine,
        search=filters.search(),
        after=after,
        size=size,
        keep=lambda mrns: wanted.intersection(mrns),
    )
    shown = [s.mrn for s in page.patients]
    by_mrn = cohort_as_json_sites(frame[frame["mrn"].isin(shown)])
    rows = [PatientRow(s, by_mrn.get(s.mrn, [])) for s in page.patients]
    return PatientRows(rows, page.next_after, True)


def _assessed_matches(frame: Any, filters: PatientFilters) -> set[str]:
    """Patients with at least one site whose stage, readiness and flags all match
    (column-wise over the cohort's sites)."""
    keep = frame["mrn"].notna()
    if filters.stage:
        keep &= frame["stage"] == filters.stage
    if filters.readiness:
        keep &= frame["readiness"] == filters.readiness
    if filters.flag:
        named = rf"(?:^|;){re.escape(filters.flag)}(?:;|$)"
        keep &= frame["flags"].fillna("").astype(str).str.contains(named, regex=True)
    return set(frame.loc[keep, "mrn"].astype(str))


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
