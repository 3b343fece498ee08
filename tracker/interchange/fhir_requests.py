"""Imaging reminders as FHIR R4 ServiceRequests: the tracker's follow-up
recommendations, handed to the radiology world (issue 17, item 4).

Each reminder of a rule that asks for an image (`IMAGING`) is one ServiceRequest in
the shape of the IHE Radiology IDR recommendation ServiceRequest: intent `proposal`,
the requested modality as `code` (DICOM modality beside the tracker's word), the
site with laterality as `bodySite`, the window that satisfies the reminder as
`occurrencePeriod`, the rule as `reasonCode` (code and words). The IDR profile is
written for R5 and fixes `status` to `draft`; ours carries the reminder's life
instead (`STATUS`), so it follows the profile's shape without claiming it in
`meta.profile`. R4 has no element naming the study that fulfils a request
(ImagingStudy.basedOn points the other way), so a completed ServiceRequest names its
satisfying ImagingStudy (or, for a bone scan, the measurement's Observation) in
`supportingInfo`.

The satisfying record is found at export time by the planner's own check
(`tracker.reminders.rules.satisfied`), asked once per (reminder, candidate record)
pair, each pair standing alone as if it were a patient with that one record: the
earliest record the check accepts is the one that closed the loop. The window in
`occurrencePeriod` is the same rule read forwards (`window`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from math import floor, inf
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tracker import labels
from tracker.interchange import csv_format as fmt
from tracker.interchange import fhir_codes as codes
from tracker.interchange.fhir_export import body_site, resource_id
from tracker.protocol import Protocol, ReminderRules
from tracker.reminders import rules
from tracker.store.models import Patient, Reminder, table_of
from tracker.vocab import ReminderRule, ReminderStatus

R, S = ReminderRule, ReminderStatus
Resource = dict[str, Any]
REMINDER_SYSTEM = f"{codes.BASE}/reminder"  # the reminder's id, as ServiceRequest.identifier
DUE_EXT = f"{codes.EXT}/reminder-due"
STATUS_EXT = f"{codes.EXT}/reminder-status"


@dataclass(frozen=True)
class Requested:
    """What an imaging rule asks for: a tracker modality (None: any), the words, and
    where: the reminder's own site, either hip, or any HO site of the patient."""

    modality: str | None
    words: str
    where: str  # "site", "hips" or "ho_sites"


IMAGING: dict[str, Requested] = {
    R.hip_ultrasound_screen: Requested("ultrasound", "ultrasound", "hips"),
    R.monitoring_radiograph: Requested("radiograph", "radiograph or CT", "site"),
    R.maturity_bone_scan: Requested("bone_scan", "delayed-phase bone scan", "site"),
    R.post_course_radiograph: Requested("radiograph", "radiograph or CT", "ho_sites"),
    R.recurrence_radiograph: Requested("radiograph", "radiograph or CT", "site"),
    R.suspected_ho_imaging: Requested(None, "imaging (any modality) or a bone scan", "site"),
    R.dvt_query_hip_ultrasound: Requested("ultrasound", "ultrasound", "hips"),
}
"""The rules that ask for an image; the others (prophylaxis, course and readiness
reviews) are not ServiceRequests."""

# A reminder's status as a FHIR request status. Open reminders are active; one closed
# by a record is completed; one closed by a person, no longer applying, or stored
# lapsed (never delivered) is revoked. An open or lapsed reminder whose record the
# planner's check finds at export time is completed (the next plan run agrees).
STATUS: dict[str, str] = {
    S.pending: "active",
    S.due: "active",
    S.sent: "active",
    S.satisfied: "completed",
    S.acknowledged: "revoked",
    S.cancelled: "revoked",
    S.lapsed: "revoked",
}
STATUS_OPEN = (S.pending, S.due, S.sent)
REQUEST_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)
"""FHIR R4 request-status codes: what `GET /fhir/ServiceRequest?status=` accepts."""

_reminder, _patient = table_of(Reminder), table_of(Patient)
_COLUMNS = ["id", "mrn", "rule", "site", "side", "due", "status", "detail", "note", "created_at"]


def read_reminders(conn: Connection, mrn: str | None = None) -> pd.DataFrame:
    """The imaging reminders of live patients (or of one), in the columns `_COLUMNS`."""
    r, p = _reminder.c, _patient.c
    query = (
        sa.select(
            r.id,
            p.mrn,
            r.rule,
            r.site,
            r.side,
            r.due,
            r.status,
            r.detail,
            sa.func.coalesce(r.cancel_reason, r.ack_reason),
            r.created_at,
        )
        .select_from(_reminder.join(_patient))
        .where(r.rule.in_(list(IMAGING)), p.voided_at.is_(None))
        .order_by(p.mrn, r.rule, r.site, r.side, r.due, r.id)
    )
    if mrn is not None:
        query = query.where(p.mrn == mrn)
    rows = [tuple(row) for row in conn.execute(query)]
    return pd.DataFrame(rows, columns=_COLUMNS, dtype=object)  # no site stays None


# --- the window and the satisfying record ------------------------------------------------


def window(
    rule: str, due: int, resected: int | None, protocol: ReminderRules
) -> tuple[int, int | None] | None:
    """The first and last day (day numbers; None: open-ended) of the records that
    satisfy a reminder, as `rules.satisfied` decides (model-spec section 9). A
    recurrence checkpoint needs its resection's day; None when that is gone."""
    if rule == R.hip_ultrasound_screen:
        width = protocol.hip_ultrasound_screen.window_days
        return due - width, due + width
    if rule == R.dvt_query_hip_ultrasound:
        return due, due + protocol.dvt_query_hip_ultrasound.window_days
    if rule == R.suspected_ho_imaging:  # on or after the examination
        return due - protocol.suspected_ho_imaging.after_days, None
    after: dict[str, int] = {
        R.monitoring_radiograph: protocol.monitoring_radiograph.after_days,
        R.maturity_bone_scan: protocol.maturity_bone_scan.after_days,
        R.post_course_radiograph: protocol.post_course_radiograph.after_days,
    }
    if rule in after:  # strictly after the record the due date was counted from
        return due - after[rule] + 1, None
    offsets = list(protocol.recurrence_radiograph.days)
    if resected is None or due - resected not in offsets:
        return None
    i = offsets.index(due - resected)
    low = (offsets[i - 1] + offsets[i]) / 2 if i else offsets[i] / 2
    high = (offsets[i] + offsets[i + 1]) / 2 if i + 1 < len(offsets) else inf
    return resected + floor(low) + 1, None if high == inf else resected + floor(high)


def _blank_to_none(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame != "", None)


def satisfying_records(
    reminders: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    today: dt.date,
    protocol: Protocol,
) -> list[tuple[str, int] | None]:
    """For each reminder (mrn, rule, site, side, due as a date), the record that
    satisfies it: ("imaging", row) or ("bone_scan", row) of the canonical frames
    (`fhir_export.read_records`), or None. The planner's check decides; records dated
    after `today` do not count."""
    found: list[tuple[str, int] | None] = [None] * len(reminders)
    if reminders.empty:
        return found
    iso = today.isoformat()
    imaging = frames[fmt.IMAGING.name]
    scans = frames[fmt.BONE_SCANS.name]
    imaging_rows = np.flatnonzero((imaging["date"] <= iso).to_numpy(bool))
    scan_rows = np.flatnonzero((scans["date"] <= iso).to_numpy(bool))
    procedures = frames[fmt.PROCEDURES.name]
    inputs = rules.RuleInputs(
        injuries=pd.DataFrame(columns=["mrn", "kind", "date"]),
        findings=_blank_to_none(imaging.iloc[imaging_rows].reset_index(drop=True)),
        bone_scans=_blank_to_none(scans.iloc[scan_rows].reset_index(drop=True)),
        courses=pd.DataFrame(
            columns=["mrn", "agent", "intent", "start_date", "end_date", "planned_weeks"]
        ),
        procedures=_blank_to_none(procedures[procedures["date"] <= iso].reset_index(drop=True)),
    )
    cut = rules.cut_at(inputs, today, protocol)  # keeps every row, in order (all <= today)
    asked = pd.DataFrame(
        {
            "reminder": np.arange(len(reminders)),
            "pid": cut.pids(reminders["mrn"]),
            "rule": reminders["rule"].to_numpy(object),
            "site": reminders["site"].to_numpy(object),
            "side": reminders["side"].to_numpy(object),
            "due": [float(rules.day_number(d)) for d in reminders["due"]],
        }
    )
    asked = asked[asked["pid"].to_numpy() >= 0]
    finding_pairs = asked.merge(cut.findings.assign(row=np.arange(len(cut.findings))), on="pid")
    scan_pairs = asked.merge(cut.scans.assign(row=np.arange(len(cut.scans))), on="pid")
    pairs = pd.concat(
        [finding_pairs.assign(kind="imaging"), scan_pairs.assign(kind="bone_scan")],
        ignore_index=True,
    )
    if pairs.empty:
        return found
    ok = rules.satisfied(
        pairs[["pid", "rule", "site", "side", "due"]].assign(pid=np.arange(len(pairs))),
        inputs,
        today,
        protocol,
        _pairs_cut(cut, pairs, len(finding_pairs)),
    )
    accepted = pairs[ok].sort_values(["reminder", "day", "kind", "row"], kind="stable")
    accepted = accepted.drop_duplicates("reminder")
    original = {"imaging": imaging_rows, "bone_scan": scan_rows}
    for reminder, kind, row in accepted[["reminder", "kind", "row"]].itertuples(index=False):
        found[int(reminder)] = (str(kind), int(original[str(kind)][int(row)]))
    return found


def _pairs_cut(cut: rules.Cut, pairs: pd.DataFrame, findings: int) -> rules.Cut:
    """A cut in which pair k is patient k with the one candidate record of that pair
    (its first `findings` pairs hold findings, the rest bone scans) and the patient's
    resections. A record at a site where the patient has HO evidence is marked as HO,
    so `ho_places` (read by post_course_radiograph) stays what it is for the patient."""
    k = np.arange(len(pairs), dtype="int64")
    place = pairs["place"].to_numpy("int64")
    rekeyed = np.where(place >= 0, k * 64 + place % 64, rules.NO_SITE)
    at_ho = np.isin(place, cut.ho_places)
    columns = {"pid": k, "place": rekeyed, "ho": at_ho}
    findings_part = pairs.iloc[:findings].assign(**{c: v[:findings] for c, v in columns.items()})
    scans_part = pairs.iloc[findings:].assign(**{c: v[findings:] for c, v in columns.items()})
    resections = (
        pairs[["pid"]]
        .assign(k=k)
        .merge(cut.resections, on="pid")
        .rename(columns={"pid": "patient"})
    )
    resections = pd.DataFrame(
        {
            "pid": resections["k"].to_numpy("int64"),
            "place": np.where(
                resections["place"].to_numpy() >= 0,
                resections["k"].to_numpy("int64") * 64 + resections["place"].to_numpy() % 64,
                rules.NO_SITE,
            ),
            "day": resections["day"].to_numpy("float64"),
        }
    )
    return replace(
        cut,
        mrns=pd.Index(k),
        injuries=cut.injuries.iloc[:0],
        findings=_like(findings_part, cut.findings),
        scans=_like(scans_part, cut.scans),
        courses=cut.courses.iloc[:0],
        resections=resections,
        sites=None,
        exams=None,
        motion=None,
        dvt_queries=None,
    )


def _like(part: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """`part` in the columns and dtypes of `frame` (pairs of both kinds were one frame)."""
    return part[list(frame.columns)].astype(frame.dtypes.to_dict()).reset_index(drop=True)


# --- the resources --------------------------------------------------------------------


def service_requests(
    reminders: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    protocol: Protocol,
    today: dt.date,
) -> dict[str, list[Resource]]:
    """Each patient's imaging reminders as ServiceRequest dicts, by mrn."""
    if reminders.empty:
        return {}
    open_or_done = reminders["status"].isin([*STATUS_OPEN, S.lapsed, S.satisfied])
    checked = reminders[open_or_done.to_numpy(bool)]
    records = dict(
        zip(checked.index, satisfying_records(checked, frames, today, protocol), strict=True)
    )
    imaging, scans = frames[fmt.IMAGING.name], frames[fmt.BONE_SCANS.name]
    resections = _resection_days(frames[fmt.PROCEDURES.name])
    out: dict[str, list[Resource]] = {}
    rows: list[dict[str, Any]] = reminders.to_dict("records")  # type: ignore[assignment]
    for index, row in zip(reminders.index, rows, strict=True):
        mrn = row["mrn"]
        record = records.get(index)
        reference = None
        if record is not None:
            kind, at = record
            source = (imaging if kind == "imaging" else scans).iloc[at]
            if kind == "imaging":
                key = ("ImagingStudy", mrn, source["date"], source["modality"], source["accession"])
            else:
                parts = ("date", "site", "side", "phase", "ratio")
                key = ("BoneScan", mrn, *(source[p] for p in parts))
            reference = {"reference": f"urn:uuid:{resource_id(*key)}"}
        subject = {"reference": f"urn:uuid:{resource_id('Patient', mrn)}"}
        out.setdefault(mrn, []).append(
            _service_request(row, subject, reference, resections, protocol.reminders)
        )
    return out


def _resection_days(procedures: pd.DataFrame) -> dict[tuple[str, str, str], list[int]]:
    found: dict[tuple[str, str, str], list[int]] = {}
    for row in procedures[procedures["kind"] == "resection"].to_dict("records"):
        day = rules.day_number(dt.date.fromisoformat(row["date"]))
        found.setdefault((row["mrn"], row["site"], row["side"]), []).append(day)
    return found


def _iso_day(day: int) -> str:
    return rules.from_day_number(day).isoformat()


def _service_request(
    row: dict[str, Any],
    subject: dict[str, str],
    satisfied_by: dict[str, str] | None,
    resections: dict[tuple[str, str, str], list[int]],
    protocol: ReminderRules,
) -> Resource:
    rule, site, side, due = row["rule"], row["site"], row["side"], row["due"]
    requested = IMAGING[rule]
    status = "completed" if satisfied_by is not None else STATUS[row["status"]]
    due_day = rules.day_number(due)
    resected = None
    if rule == R.recurrence_radiograph:
        offsets = protocol.recurrence_radiograph.days
        days = resections.get((row["mrn"], site, side), [])
        resected = next((d for d in days if due_day - d in offsets), None)
    span = window(rule, due_day, resected, protocol)
    where = {
        "site": f"the {labels.place(site, side)}" if site else "",
        "hips": "both hips" if rule == R.dvt_query_hip_ultrasound else "either hip",
        "ho_sites": "any HO site",
    }[requested.where]
    code: dict[str, Any] = {"text": f"{requested.words} of {where}"}
    if requested.modality is not None:
        dicom = codes.coding(codes.DICOM, codes.MODALITY_DICOM[requested.modality])
        code = codes.concept(codes.MODALITY, requested.modality, dicom) | code
    sites = []
    if requested.where == "site" and site:
        sites = [body_site(site, side)]
    elif requested.where == "hips":
        sites = [body_site("hip", "left"), body_site("hip", "right")]
    label = labels.rule(rule)
    reason = codes.concept(codes.REMINDER_RULE, rule)
    reason["coding"][0]["display"] = label
    reason["text"] = f"{label}: {row['detail']}" if row["detail"] else label
    created = row["created_at"]
    if created.tzinfo is None:  # SQLite gives back the UTC timestamp without its zone
        created = created.replace(tzinfo=dt.UTC)
    resource: Resource = {
        "resourceType": "ServiceRequest",
        "id": resource_id("ServiceRequest", row["mrn"], rule, site or "", side or "", str(due)),
        "extension": [
            {"url": DUE_EXT, "valueDate": due.isoformat()},
            {"url": STATUS_EXT, "valueCode": row["status"]},
        ],
        "identifier": [{"system": REMINDER_SYSTEM, "value": str(row["id"])}],
        "status": status,
        "intent": "proposal",
        "category": [
            {"coding": [codes.coding(codes.SNOMED, "363679005", "Imaging")], "text": "imaging"}
        ],
        "code": code,
        "subject": subject,
        "authoredOn": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reasonCode": [reason],
    }
    if span is not None:
        start, end = span
        resource["occurrencePeriod"] = {"start": _iso_day(start)} | (
            {"end": _iso_day(end)} if end is not None else {}
        )
    if sites:
        resource["bodySite"] = sites
    if satisfied_by is not None:
        resource["supportingInfo"] = [satisfied_by]
    if row["note"]:
        resource["note"] = [{"text": row["note"]}]
    return resource


def searchset(resources: list[Resource]) -> Resource:
    """Resources as a FHIR searchset Bundle (each entry a match)."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }
