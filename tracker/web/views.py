"""What the pages and the API show, read through the same services as the CLI.

The patient view loads the story once (a fixed number of queries whatever the
cohort size) and assesses it with `staging.assess_patient`, the function behind
`assess_one`; only the board and the filtered patient list take the cohort path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.protocol import Protocol
from tracker.reminders.delivery import worklist
from tracker.services.assessment import assess_all
from tracker.services.interop import PendingSite, pending_sites
from tracker.services.patients import PatientSummary, StoryEvent, list_patients, timeline
from tracker.staging import assess_patient, to_json
from tracker.staging.cohort import cohort_as_json_sites
from tracker.store.loaders import story_records
from tracker.store.story import PatientStory, load_story

# The worklist's statuses: a lapsed reminder (v2: long past when a plan first made it)
# is never on it; it shows only in the patient's reminder history.
OPEN = ("pending", "due", "sent")


@dataclass(frozen=True)
class PatientView:
    story: PatientStory
    events: list[StoryEvent]
    assessment: dict[str, Any]  # to_json(...) of model-spec section 8
    reminders: list[dict[str, Any]]
    as_of: dt.date
    pending_sites: list[PendingSite]  # DICOM sites waiting for their finding


def patient_view(*, engine: Engine, mrn: str, as_of: dt.date, protocol: Protocol) -> PatientView:
    with Session(engine) as session:
        story = load_story(session, mrn)
        session.expunge_all()
    assessment = assess_patient(story_records(story), as_of, protocol)
    return PatientView(
        story=story,
        events=timeline(story),
        assessment=to_json(assessment),
        reminders=worklist(engine=engine, mrn=mrn),
        as_of=as_of,
        pending_sites=pending_sites(engine=engine, mrn=mrn),  # one query
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


@dataclass(frozen=True)
class PatientRow:
    summary: PatientSummary
    sites: list[dict[str, Any]] | None  # None when the list was not assessed


def patient_rows(
    *, engine: Engine, filters: PatientFilters, as_of: dt.date, protocol: Protocol, limit: int
) -> tuple[list[PatientRow], int]:
    """Matching patients (at most `limit`) and how many matched in all."""
    summaries = list_patients(
        engine=engine,
        team=filters.team,
        injury=filters.injury,
        with_ho=filters.ho,
        search=filters.q,
    )
    by_mrn: dict[str, list[dict[str, Any]]] | None = None
    if filters.needs_assessment and summaries:
        by_mrn = cohort_as_json_sites(assess_all(engine=engine, as_of=as_of, protocol=protocol))

        def keep(sites: list[dict[str, Any]]) -> bool:
            return any(
                (not filters.stage or s["stage"] == filters.stage)
                and (not filters.readiness or s["readiness"] == filters.readiness)
                and (not filters.flag or filters.flag in s["flags"])
                for s in sites
            )

        summaries = [s for s in summaries if keep(by_mrn.get(s.mrn, []))]
    rows = [
        PatientRow(s, None if by_mrn is None else by_mrn.get(s.mrn, [])) for s in summaries[:limit]
    ]
    return rows, len(summaries)


def open_reminders(*, engine: Engine, team: str | None) -> list[dict[str, Any]]:
    """The team worklist: every reminder not yet closed, oldest due first."""
    rows = [r for s in OPEN for r in worklist(engine=engine, team_name=team, status=s)]
    return sorted(rows, key=lambda r: (r["due"], r["mrn"], r["rule"], r["id"]))


# Where a reminder is satisfied (model-spec section 9): the form that records it,
# with what can be filled in already. Rules closed by acknowledgement open the patient.
SATISFIED_BY: dict[str, tuple[str, dict[str, str]]] = {
    "hip_ultrasound_screen": ("imaging", {"modality": "ultrasound", "site": "hip"}),
    "monitoring_radiograph": ("imaging", {"modality": "radiograph"}),
    "recurrence_radiograph": ("imaging", {"modality": "radiograph"}),
    "post_course_radiograph": ("imaging", {"modality": "radiograph"}),
    "maturity_bone_scan": ("bone-scans", {"phase": "delayed"}),
    "consider_prophylaxis": ("courses", {"intent": "prophylaxis"}),
    "post_resection_prophylaxis": ("courses", {"intent": "post_resection"}),
}


def satisfying_link(row: dict[str, Any]) -> str | None:
    from urllib.parse import quote, urlencode

    found = SATISFIED_BY.get(str(row["rule"]))
    if found is None:
        return None
    form, prefill = found
    values = dict(prefill)
    if row.get("site") and "site" not in values:
        values["site"] = str(row["site"])
    if row.get("side"):
        values["side"] = str(row["side"])
    return f"/patients/{quote(str(row['mrn']), safe='')}/{form}/new?{urlencode(values)}"
