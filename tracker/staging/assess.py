"""One patient's assessment on one day: every site's stage, activity, readiness,
flags and forecast (model-spec sections 3-8).

This is the one function the CLI, the API, the report, the board and the reminders
call for a patient, so they can never disagree. Input records may arrive in any
order: they are put in canonical order first, and every rule that picks one record
among several says how it breaks ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from tracker.protocol import CriterionName, Protocol
from tracker.staging.activity import Activity, classify_activity, delayed_series
from tracker.staging.flags import patient_first_ho_date, site_flags
from tracker.staging.forecast import Forecast, RecoverySeries, forecast_recoveries, recovery_series
from tracker.staging.readiness import Criterion, Readiness, Status, readiness_verdict, site_criteria
from tracker.staging.records import PatientRecords, as_of_cut, site_evidence, site_keys
from tracker.staging.stage import Stage, latest_grades, site_stage

DEFAULT_PROTOCOL = Protocol()
# Which reference model the answers follow (model-spec section 8): bump it whenever a
# rule changes what `assess` says, so a stored or printed call names its rules.
MODEL_VERSION = 2


@dataclass(frozen=True, slots=True)
class SiteAssessment:
    site: str
    side: str
    stage: Stage
    brooker: int | None
    della_valle: str | None
    activity: Activity
    latest_ratio: float | None  # latest delayed-phase ratio, same-day values averaged
    readiness: Readiness
    criteria: tuple[Criterion, ...]  # in the order of the spec's table
    flags: tuple[str, ...]  # sorted
    forecast: Forecast | None


@dataclass(frozen=True, slots=True)
class PatientAssessment:
    mrn: str
    as_of: date
    model_version: int  # MODEL_VERSION
    protocol_fingerprint: str  # Protocol.fingerprint of the protocol in effect
    sites: tuple[SiteAssessment, ...]  # sorted by site, then side


def assess_patient(
    records: PatientRecords, as_of: date, protocol: Protocol = DEFAULT_PROTOCOL
) -> PatientAssessment:
    """Assess every site with evidence on or before as_of; later records are ignored.

    A site appears if it ever had a finding or bone-scan measurement by as_of, even
    when all of it predates a resection (it then restarts at stage none).
    """
    cut = as_of_cut(records, as_of)
    patient_first = patient_first_ho_date(cut, protocol.stage)
    sites: list[SiteAssessment] = []
    recoveries: dict[int, RecoverySeries] = {}
    for key in site_keys(cut):
        evidence = site_evidence(cut, key)
        stage = site_stage(evidence, protocol.stage)
        grades = latest_grades(evidence)
        series = delayed_series(evidence.bone_scans)
        activity = classify_activity([p.ratio for p in series], protocol.activity.tolerance)
        criteria = site_criteria(
            evidence=evidence,
            stage=stage,
            series=series,
            activity=activity,
            injuries=cut.injuries,
            labs=cut.labs,
            as_of=as_of,
            protocol=protocol,
        )
        flags = site_flags(
            evidence=evidence,
            activity=activity,
            patient_first=patient_first,
            injuries=cut.injuries,
            courses=cut.courses,
            rules=protocol.flags,
            stage_rules=protocol.stage,
        )
        if forecast_applies(criteria, activity):
            recovery = recovery_series(series, protocol.readiness)
            if recovery is not None:
                recoveries[len(sites)] = recovery
        sites.append(
            SiteAssessment(
                site=evidence.site,
                side=evidence.side,
                stage=stage,
                brooker=grades.brooker,
                della_valle=grades.della_valle,
                activity=activity,
                latest_ratio=series[-1].ratio if series else None,
                readiness=readiness_verdict(stage, criteria),
                criteria=criteria,
                flags=flags,
                forecast=None,
            )
        )
    # One batch for the patient's sites; each answer equals its batch-of-one answer.
    forecasts = forecast_recoveries(list(recoveries.values()), as_of, protocol.forecast)
    for index, forecast in zip(recoveries, forecasts, strict=True):
        sites[index] = replace(sites[index], forecast=forecast)
    return PatientAssessment(
        mrn=records.mrn,
        as_of=as_of,
        model_version=MODEL_VERSION,
        protocol_fingerprint=protocol.fingerprint,
        sites=tuple(sites),
    )


def forecast_applies(criteria: Sequence[Criterion], activity: Activity) -> bool:
    """Model-spec section 7: a site is forecast (its recovery curve fitted) when its
    scan_stabilised criterion is unmet and its activity is declining (and it has at
    least `forecast.MIN_POINTS` ratios from the peak on, which `recovery_series`
    checks)."""
    stabilised = next(c for c in criteria if c.name == CriterionName.scan_stabilised)
    return stabilised.status == Status.unmet and activity == Activity.declining


def to_json(assessment: PatientAssessment) -> dict[str, Any]:
    """The `assess --json` structure of model-spec section 8, keys in its order."""
    return {
        "mrn": assessment.mrn,
        "as_of": assessment.as_of.isoformat(),
        "model_version": assessment.model_version,
        "protocol_fingerprint": assessment.protocol_fingerprint,
        "sites": [_site_json(site) for site in assessment.sites],
    }


def _site_json(site: SiteAssessment) -> dict[str, Any]:
    return {
        "site": str(site.site),
        "side": str(site.side),
        "stage": site.stage.value,
        "brooker": site.brooker,
        "della_valle": None if site.della_valle is None else str(site.della_valle),
        "activity": site.activity.value,
        # averaging binary floats leaves noise (3.1 and 3.2 give 3.1500000000000004)
        "latest_ratio": None if site.latest_ratio is None else round(site.latest_ratio, 6),
        "readiness": site.readiness.value,
        "criteria": [
            {
                "name": str(c.name),
                "status": c.status.value,
                "level": c.level.value,
                "evidence": c.evidence,
            }
            for c in site.criteria
        ],
        "flags": [str(flag) for flag in site.flags],
        "forecast": None
        if site.forecast is None
        else {
            "date": site.forecast.date.isoformat(),
            "low": site.forecast.low.isoformat(),
            "high": site.forecast.high.isoformat(),
            "passed": site.forecast.passed,
        },
    }
