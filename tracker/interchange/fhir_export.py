"""FHIR R4 export: one patient, or the whole cohort, as a `collection` Bundle.

Records are read through `tables.read_canonical`, the reader the CSV export uses,
so a voided record never reaches a Bundle and every value is the text the CSV
export would write. Each interchange row becomes one resource:

| interchange | FHIR resource |
| --- | --- |
| patients.csv | Patient (mrn as identifier, team as extension) |
| injuries.csv | Condition (category injury) |
| imaging.csv | ImagingStudy per study (reasonCode: indication) + Observation per finding |
| bone_scans.csv | Observation (ratio as value, phase and counts as components) |
| treatments.csv | MedicationStatement, or Procedure for radiotherapy and physiotherapy |
| procedures.csv | Procedure |
| labs.csv | Observation (LOINC where one exists) |
| exams.csv | Observation per examined joint (signs and pain, LOINC 72514-3, as components) |
| rom.csv | Observation per movement (the movement as code, degrees in UCUM `deg`) |
| reminders (imaging rules) | ServiceRequest (`fhir_requests`; derived, ignored on import) |

A site finding's Observation is derivedFrom its study. Derived summaries are added
for readers who want them and ignored on import: a Condition per site with HO
(ICD-10 M61.x) and each finding's stage as a component.
The stage component says which model and which protocol derived it (model-spec 8,
v2): extensions `model-version` (valueInteger) and `protocol-fingerprint` (valueString).
The Bundle is validated with `fhir.resources` (its R4B models: R4B changed none of
the resources used here, so a Bundle that validates is valid R4) before it is given out.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.errors import NotFound
from tracker.interchange import csv_format as fmt
from tracker.interchange import fhir_codes as codes
from tracker.interchange import tables
from tracker.protocol import Protocol
from tracker.staging.assess import MODEL_VERSION
from tracker.staging.records import Finding
from tracker.staging.stage import finding_stage

_NAMESPACE = uuid.UUID("5b0c7f6e-3c1a-4f57-9a57-2f3c0d1e9a11")
Row = dict[str, str]
Resource = dict[str, Any]
MODEL_VERSION_EXT = f"{codes.EXT}/model-version"
PROTOCOL_FINGERPRINT_EXT = f"{codes.EXT}/protocol-fingerprint"


def read_records(engine: Engine, mrn: str | None = None) -> dict[str, pd.DataFrame]:
    """The canonical rows of every interchange file, for one patient or everyone."""
    with engine.connect() as conn:
        ids: list[int] | None = None
        if mrn is not None:
            found = tables.patient_index(conn, [mrn])
            if found.empty:
                raise NotFound(f"No patient with mrn '{mrn}'; check the number.")
            ids = [int(i) for i in found["id"]]
        frames = {
            f.name: tables.read_canonical(conn, f, ids).sort_values(list(f.key), kind="stable")
            for f in fmt.FORMATS
        }
    if mrn is not None and frames[fmt.PATIENTS.name].empty:  # the patient was voided
        raise NotFound(f"No patient with mrn '{mrn}'; check the number.")
    return frames


def patient_bundle(
    *, engine: Engine, mrn: str, protocol: Protocol | None = None, today: dt.date | None = None
) -> dict[str, Any]:
    """Everything recorded for one patient as a validated Bundle (JSON-ready dict);
    `protocol` (default: the spec's) is named on each derived stage. The patient's
    imaging reminders are ServiceRequests (`fhir_requests`), judged as of `today`."""
    return bundle_from(read_records(engine, mrn), protocol, _reminders(engine, mrn), today)


def cohort_bundle(
    *, engine: Engine, protocol: Protocol | None = None, today: dt.date | None = None
) -> dict[str, Any]:
    """Every patient as one validated Bundle (JSON-ready dict)."""
    return bundle_from(read_records(engine), protocol, _reminders(engine), today)


def _reminders(engine: Engine, mrn: str | None = None) -> pd.DataFrame:
    from tracker.interchange.fhir_requests import read_reminders

    with engine.connect() as conn:
        return read_reminders(conn, mrn)


def bundle_from(
    frames: dict[str, pd.DataFrame],
    protocol: Protocol | None = None,
    reminders: pd.DataFrame | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """The Bundle of these records; with `reminders` (`fhir_requests.read_reminders`),
    each patient's imaging reminders follow the patient's records as ServiceRequests."""
    from tracker.interchange.fhir_requests import service_requests

    protocol = protocol or Protocol()
    provenance = _provenance(protocol)
    requests: dict[str, list[Resource]] = {}
    if reminders is not None:
        requests = service_requests(reminders, frames, protocol, today or dt.date.today())
    by_patient: dict[str, dict[str, list[Row]]] = {
        name: {
            str(mrn): rows.to_dict("records")  # type: ignore[misc]
            for mrn, rows in frame.groupby("mrn", sort=False)
        }
        for name, frame in frames.items()
    }
    entries: list[Resource] = []
    patients: list[Row] = frames[fmt.PATIENTS.name].to_dict("records")  # type: ignore[assignment]
    for patient in patients:
        mrn = patient["mrn"]
        own = {name: rows.get(mrn, []) for name, rows in by_patient.items()}
        entries += [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": _tidy(r)}
            for r in patient_resources(patient, own, provenance) + requests.get(mrn, [])
        ]
    document = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    # Every resource is validated by the FHIR models (an invalid one raises, a bug of
    # ours); the built dicts are given out as they are, which the tests prove equal to
    # the models' own dump: dumping through the models would double the export's time.
    Bundle.model_validate(document)
    return document


def _tidy(resource: Resource) -> Resource:
    """resourceType first, no empty elements (FHIR forbids nulls)."""
    kind = resource["resourceType"]
    return {"resourceType": kind} | {
        k: v for k, v in resource.items() if v is not None and k != "resourceType"
    }


def resource_id(*parts: str) -> str:
    """A stable id: the same record gives the same id in every export."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def _provenance(protocol: Protocol) -> list[dict[str, Any]]:
    """The extensions naming the model and the protocol values a derived stage comes from."""
    return [
        {"url": MODEL_VERSION_EXT, "valueInteger": MODEL_VERSION},
        {"url": PROTOCOL_FINGERPRINT_EXT, "valueString": protocol.fingerprint},
    ]


def patient_resources(
    patient: Row, rows: dict[str, list[Row]], provenance: list[dict[str, Any]]
) -> list[Resource]:
    mrn = patient["mrn"]
    subject = {"reference": f"urn:uuid:{resource_id('Patient', mrn)}"}
    resources = [_patient(patient)]
    resources += [_injury(subject, r) for r in rows[fmt.INJURIES.name]]
    imaging = rows[fmt.IMAGING.name]
    for key, findings in _studies(imaging):
        study = _imaging_study(subject, mrn, key, findings[0]["indication"])
        resources.append(study)
        reference = {"reference": f"urn:uuid:{study['id']}"}
        resources += [_finding(subject, reference, r, provenance) for r in findings]
    kinds = [r["kind"] for r in rows[fmt.INJURIES.name]]
    resources += _ho_conditions(subject, mrn, imaging, kinds)
    resources += [_bone_scan(subject, r) for r in rows[fmt.BONE_SCANS.name]]
    resources += [_course(subject, r) for r in rows[fmt.TREATMENTS.name]]
    resources += [_procedure(subject, r) for r in rows[fmt.PROCEDURES.name]]
    resources += [_lab(subject, r) for r in rows[fmt.LABS.name]]
    resources += [_exam(subject, r) for r in rows[fmt.EXAMS.name]]
    resources += [_range_of_motion(subject, r) for r in rows[fmt.ROM.name]]
    return resources


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _category(code: str) -> list[dict[str, Any]]:
    return [{"coding": [codes.coding(codes.RECORD, code, code.replace("_", " "))]}]


def body_site(site: str, side: str) -> dict[str, Any]:
    concept = codes.concept(codes.SITE, site)
    laterality = codes.concept(
        codes.SIDE, side, codes.standard(codes.SIDE_SNOMED, codes.SNOMED, side)
    )
    concept["extension"] = [{"url": codes.LATERALITY_EXT, "valueCodeableConcept": laterality}]
    concept["text"] = f"{site} {side}"
    return concept


def _note(text: str) -> list[dict[str, str]] | None:
    return [{"text": text}] if text else None


def _element(name: str, **value: Any) -> dict[str, Any]:
    return {"code": codes.concept(codes.ELEMENT, name), **value}


def _patient(row: Row) -> Resource:
    resource: Resource = {
        "resourceType": "Patient",
        "id": resource_id("Patient", row["mrn"]),
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [codes.coding(codes.V2_0203, "MR", "Medical record number")]},
                "system": codes.MRN_SYSTEM,
                "value": row["mrn"],
            }
        ],
    }
    if row["family_name"] or row["given_name"]:
        name: dict[str, Any] = {}
        if row["family_name"]:
            name["family"] = row["family_name"]
        if row["given_name"]:
            name["given"] = [row["given_name"]]
        resource["name"] = [name]
    if row["sex"]:
        resource["gender"] = row["sex"]  # the tracker's sex words are AdministrativeGender
    if row["birth_date"]:
        resource["birthDate"] = row["birth_date"]
    if row["team"]:
        resource["extension"] = [{"url": codes.TEAM_EXT, "valueString": row["team"]}]
    return resource


def _injury(subject: dict[str, str], row: Row) -> Resource:
    kind = row["kind"]
    return {
        "resourceType": "Condition",
        "id": resource_id("Injury", row["mrn"], kind, row["date"]),
        "category": _category(codes.INJURY),
        "code": codes.concept(
            codes.INJURY_KIND, kind, codes.standard(codes.INJURY_SNOMED, codes.SNOMED, kind)
        ),
        "subject": subject,
        "onsetDateTime": row["date"],
        "note": _note(row["notes"]),
    }


def _studies(rows: list[Row]) -> Iterable[tuple[tuple[str, str, str], list[Row]]]:
    studies: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        studies.setdefault((row["date"], row["modality"], row["accession"]), []).append(row)
    return studies.items()


def _imaging_study(
    subject: dict[str, str], mrn: str, key: tuple[str, str, str], indication: str
) -> Resource:
    date, modality, accession = key
    resource: Resource = {
        "resourceType": "ImagingStudy",
        "id": resource_id("ImagingStudy", mrn, *key),
        "status": "available",
        "subject": subject,
        "started": date,
        "modality": [codes.coding(codes.DICOM, codes.MODALITY_DICOM[modality])],
        # DICOM NM covers both bone scans and SPECT: the tracker's word says which.
        "extension": [{"url": codes.MODALITY_EXT, "valueCode": modality}],
    }
    if indication:
        resource["reasonCode"] = [codes.concept(codes.INDICATION, indication)]
    if accession:
        resource["identifier"] = [
            {
                "type": {"coding": [codes.coding(codes.V2_0203, "ACSN", "Accession ID")]},
                "value": accession,
            }
        ]
    return resource


def _finding(
    subject: dict[str, str], study: dict[str, str], row: Row, provenance: list[dict[str, Any]]
) -> Resource:
    components = [
        _element(name, valueCodeableConcept=codes.concept(codes.ELEMENT, row[name]))
        for name in codes.FINDING_WORDS
        if row[name]
    ]
    if row["brooker"]:
        components.append(_element("brooker", valueInteger=int(row["brooker"])))
    if row["size_mm"]:
        quantity = {"value": _number(row["size_mm"]), "unit": "mm", "system": codes.UCUM}
        components.append(_element("size_mm", valueQuantity=quantity | {"code": "mm"}))
    stage = _element("stage", valueCodeableConcept=codes.concept(codes.STAGE, _stage(row)))
    components.append({"extension": provenance, **stage})
    return {
        "resourceType": "Observation",
        "id": resource_id(
            "Finding",
            row["mrn"],
            row["date"],
            row["modality"],
            row["accession"],
            row["site"],
            row["side"],
        ),
        "status": "final",
        "category": _category(codes.FINDING)
        + [{"coding": [codes.coding(codes.OBSERVATION_CATEGORY, "imaging", "Imaging")]}],
        "code": codes.concept(codes.RECORD, codes.FINDING),
        "subject": subject,
        "effectiveDateTime": row["date"],
        "derivedFrom": [study],
        "bodySite": body_site(row["site"], row["side"]),
        "valueCodeableConcept": codes.concept(
            codes.HO, row["ho"], codes.standard(codes.HO_SNOMED, codes.SNOMED, row["ho"])
        ),
        "component": components,
        "note": _note(row["notes"]),
    }


def _stage(row: Row) -> str:
    """The stage this one finding shows (model-spec section 3): derived, for readers."""
    finding = Finding(
        date=dt.date.fromisoformat(row["date"]),
        modality=row["modality"],
        site=row["site"],
        side=row["side"],
        ho=row["ho"],
        **{k: row[k] or None for k in codes.FINDING_WORDS},
        brooker=int(row["brooker"]) if row["brooker"] else None,
        size_mm=float(row["size_mm"]) if row["size_mm"] else None,
    )
    return str(finding_stage(finding))


def _ho_conditions(
    subject: dict[str, str], mrn: str, findings: list[Row], injury_kinds: list[str]
) -> list[Resource]:
    """One Condition per site where HO was ever seen (a summary; import skips it)."""
    first_seen: dict[tuple[str, str], str] = {}
    for row in findings:
        if row["ho"] == "present":
            key = (row["site"], row["side"])
            first_seen[key] = min(first_seen.get(key, row["date"]), row["date"])
    return [
        {
            "resourceType": "Condition",
            "id": resource_id("HO", mrn, site, side),
            "category": _category(codes.HO_SITE),
            "verificationStatus": {
                "coding": [
                    codes.coding(
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
                    )
                ]
            },
            "code": {
                "coding": [codes.m61_code(site, injury_kinds)],
                "text": "heterotopic ossification",
            },
            "bodySite": [body_site(site, side)],
            "subject": subject,
            "onsetDateTime": date,
        }
        for (site, side), date in sorted(first_seen.items())
    ]


def _bone_scan(subject: dict[str, str], row: Row) -> Resource:
    components = [_element("phase", valueCodeableConcept=codes.concept(codes.PHASE, row["phase"]))]
    for name in ("lesion_counts", "reference_counts"):
        if row[name]:
            components.append(
                _element(name, valueQuantity={"value": _number(row[name]), "unit": "counts"})
            )
    if row["reference_region"]:
        components.append(_element("reference_region", valueString=row["reference_region"]))
    return {
        "resourceType": "Observation",
        "id": resource_id(
            "BoneScan",
            row["mrn"],
            row["date"],
            row["site"],
            row["side"],
            row["phase"],
            row["ratio"],
        ),
        "status": "final",
        "category": _category(codes.BONE_SCAN)
        + [{"coding": [codes.coding(codes.OBSERVATION_CATEGORY, "imaging", "Imaging")]}],
        "code": codes.concept(codes.RECORD, codes.BONE_SCAN),
        "subject": subject,
        "effectiveDateTime": row["date"],
        "bodySite": body_site(row["site"], row["side"]),
        "valueQuantity": {
            "value": _number(row["ratio"]),
            "unit": "lesion/reference ratio",
            "system": codes.UCUM,
            "code": "1",
        },
        "component": components,
    }


def _course(subject: dict[str, str], row: Row) -> Resource:
    agent = row["agent"]
    period = {"start": row["start_date"]} | ({"end": row["end_date"]} if row["end_date"] else {})
    reason = [codes.concept(codes.INTENT, row["intent"])]
    extensions: list[dict[str, Any]] = []
    if row["planned_weeks"]:
        extensions.append(
            {"url": codes.PLANNED_WEEKS_EXT, "valueDecimal": _number(row["planned_weeks"])}
        )
    dose = None
    if row["dose"]:
        dose = {"value": _number(row["dose"])} | (
            {"unit": row["dose_unit"]} if row["dose_unit"] else {}
        )
    site = body_site(row["site"], row["side"]) if row["site"] else None
    key = ("Course", row["mrn"], agent, row["intent"], row["start_date"])
    base: Resource = {
        "id": resource_id(*key),
        "subject": subject,
        "reasonCode": reason,
        "extension": extensions or None,
    }
    if agent in codes.PROCEDURE_AGENTS:
        if dose is not None:
            extensions.append({"url": codes.DOSE_EXT, "valueQuantity": dose})
            base["extension"] = extensions
        return base | {
            "resourceType": "Procedure",
            "status": "completed" if row["end_date"] else "in-progress",
            "category": _category(codes.COURSE)[0],
            "code": codes.concept(
                codes.AGENT, agent, codes.standard(codes.AGENT_SNOMED, codes.SNOMED, agent)
            ),
            "performedPeriod": period,
            "bodySite": [site] if site else None,
        }
    dosage: dict[str, Any] = {}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if site is not None:
        dosage["site"] = site
    return base | {
        "resourceType": "MedicationStatement",
        "status": "completed" if row["end_date"] else "active",
        "category": _category(codes.COURSE)[0],
        "medicationCodeableConcept": codes.concept(
            codes.AGENT, agent, codes.standard(codes.AGENT_RXNORM, codes.RXNORM, agent)
        ),
        "effectivePeriod": period,
        "dosage": [dosage] if dosage else None,
    }


def _procedure(subject: dict[str, str], row: Row) -> Resource:
    kind = row["kind"]
    return {
        "resourceType": "Procedure",
        "id": resource_id("Procedure", row["mrn"], kind, row["date"], row["site"], row["side"]),
        "status": "completed",
        "category": _category(codes.PROCEDURE)[0],
        "code": codes.concept(
            codes.PROCEDURE_KIND, kind, codes.standard(codes.PROCEDURE_SNOMED, codes.SNOMED, kind)
        ),
        "subject": subject,
        "performedDateTime": row["date"],
        "bodySite": [body_site(row["site"], row["side"])],
        "note": _note(row["notes"]),
    }


def _lab(subject: dict[str, str], row: Row) -> Resource:
    analyte = row["analyte"]
    reference: dict[str, Any] = {}
    for bound, column in (("low", "ref_low"), ("high", "ref_high")):
        if row[column]:
            reference[bound] = {"value": _number(row[column]), "unit": row["unit"]}
    return {
        "resourceType": "Observation",
        "id": resource_id("Lab", row["mrn"], row["date"], analyte),
        "status": "final",
        "category": _category(codes.LAB)
        + [{"coding": [codes.coding(codes.OBSERVATION_CATEGORY, "laboratory", "Laboratory")]}],
        "code": codes.concept(
            codes.ANALYTE, analyte, codes.standard(codes.ANALYTE_LOINC, codes.LOINC, analyte)
        ),
        "subject": subject,
        "effectiveDateTime": row["date"],
        "valueQuantity": {"value": _number(row["value"]), "unit": row["unit"]},
        "referenceRange": [reference] if reference else None,
    }


_EXAM_CATEGORY = [{"coding": [codes.coding(codes.OBSERVATION_CATEGORY, "exam", "Exam")]}]


def _exam(subject: dict[str, str], row: Row) -> Resource:
    """One joint examined at the bedside: each sign examined, and pain, as components."""
    components = [
        _element(
            sign,
            valueCodeableConcept=codes.concept(
                codes.SIGN, row[sign], codes.standard(codes.SIGN_SNOMED, codes.SNOMED, row[sign])
            ),
        )
        for sign in vocab.EXAM_SIGNS
        if row[sign]
    ]
    if row["pain"]:
        pain = codes.concept(codes.ELEMENT, "pain", codes.coding(codes.LOINC, *codes.PAIN_LOINC))
        components.append({"code": pain, "valueInteger": int(row["pain"])})
    return {
        "resourceType": "Observation",
        "id": resource_id("Exam", row["mrn"], row["date"], row["site"], row["side"]),
        "status": "final",
        "category": _category(codes.EXAM) + _EXAM_CATEGORY,
        "code": codes.concept(codes.RECORD, codes.EXAM),
        "subject": subject,
        "effectiveDateTime": row["date"],
        "bodySite": body_site(row["site"], row["side"]),
        "component": components or None,
        "note": _note(row["notes"]),
    }


def _range_of_motion(subject: dict[str, str], row: Row) -> Resource:
    """One movement of one joint measured with a goniometer, in degrees."""
    movement = row["movement"]
    code = codes.concept(codes.MOVEMENT, movement)
    code["text"] = f"range of motion, {code['text']}"
    key = (row["mrn"], row["date"], row["site"], row["side"], movement)
    return {
        "resourceType": "Observation",
        "id": resource_id("RangeOfMotion", *key),
        "status": "final",
        "category": _category(codes.ROM) + _EXAM_CATEGORY,
        "code": code,
        "subject": subject,
        "effectiveDateTime": row["date"],
        "bodySite": body_site(row["site"], row["side"]),
        "valueQuantity": {
            "value": _number(row["degrees"]),
            "unit": codes.DEGREES,
            "system": codes.UCUM,
            "code": codes.DEGREES,
        },
    }
