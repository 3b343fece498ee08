"""Code systems of the FHIR interchange: the tracker's own vocabulary and the
standard codes it corresponds to.

Every coded element the tracker writes carries a coding from a tracker CodeSystem
(`https://ho-tracker.org/fhir/CodeSystem/<name>`, codes = the model-spec section 1
words), which makes the round trip exact; a standard coding (SNOMED CT, ICD-10,
LOINC, DICOM, HL7) sits beside it where one exists, so other systems can read the
record. On import the tracker coding wins; a concept with only a standard coding is
read through the reverse maps below. Codes are included only where the mapping is
one to one: a standard code that stands for several tracker words (DICOM NM for
both bone_scan and spect) is written but never read back alone.
"""

from __future__ import annotations

from typing import Any

from tracker import vocab

BASE = "https://ho-tracker.org/fhir"
MRN_SYSTEM = f"{BASE}/mrn"  # stands for the hospital's own patient-id namespace
EXT = f"{BASE}/StructureDefinition"
TEAM_EXT = f"{EXT}/team"
MODALITY_EXT = f"{EXT}/modality"
LATERALITY_EXT = f"{EXT}/laterality"
PLANNED_WEEKS_EXT = f"{EXT}/planned-weeks"
DOSE_EXT = f"{EXT}/dose"

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def system(name: str) -> str:
    """The tracker CodeSystem for one vocabulary (e.g. `injury-kind`)."""
    return f"{BASE}/CodeSystem/{name}"


# Tracker CodeSystems, one per vocabulary of model-spec section 1.
INJURY_KIND = system("injury-kind")
MODALITY = system("modality")
SITE = system("site")
SIDE = system("side")
HO = system("ho")
AGENT = system("agent")
INTENT = system("intent")
PROCEDURE_KIND = system("procedure-kind")
ANALYTE = system("analyte")
PHASE = system("phase")
RECORD = system("record")  # what a resource stands for (finding, bone scan, course ...)
ELEMENT = system("element")  # Observation component names (soft_tissue, brooker ...)
STAGE = system("stage")
INDICATION = system("indication")  # why an imaging study was done (ImagingStudy.reasonCode)
SIGN = system("sign")  # yes / no of an examination sign (swelling, warmth, erythema)
MOVEMENT = system("movement")  # the movement a range-of-motion Observation measures
# the reminder rule (model-spec section 9) behind a ServiceRequest (its reasonCode):
# export only, as ServiceRequests are derived from the records and never read back
REMINDER_RULE = system("reminder-rule")

# Categories that tell the importer which interchange file a resource belongs to.
INJURY = "injury"
HO_SITE = "ho_site"  # derived HO Condition: a summary of findings, not a record
FINDING = "site_finding"
BONE_SCAN = "bone_scan_measurement"
LAB = "lab_result"
COURSE = "treatment_course"
PROCEDURE = "procedure"
EXAM = "clinical_exam"  # bedside examination of one joint (model-spec v2, section 10)
ROM = "range_of_motion"  # one goniometer measurement of one movement

# SNOMED CT codes for the injuries that start a patient's risk.
INJURY_SNOMED = {
    "spinal_cord_injury": ("90584004", "Injury of spinal cord"),
    "traumatic_brain_injury": ("127295002", "Traumatic brain injury"),
    "burn": ("125666000", "Burn"),
    "hip_arthroplasty": ("52734007", "Total replacement of hip"),
    "knee_arthroplasty": ("609588000", "Total knee replacement"),
    "fop": ("82004006", "Fibrodysplasia ossificans progressiva"),
}

# ICD-10 M61 (calcification and ossification of muscle): the subcategory follows the
# cause, the fifth character the WHO musculoskeletal site code.
M61_BY_INJURY = {
    "fop": ("1", "Myositis ossificans progressiva"),
    "spinal_cord_injury": ("2", "Paralytic calcification and ossification of muscle"),
    "traumatic_brain_injury": ("2", "Paralytic calcification and ossification of muscle"),
    "acquired_brain_injury": ("2", "Paralytic calcification and ossification of muscle"),
    "burn": ("3", "Calcification and ossification of muscles associated with burns"),
    "musculoskeletal_trauma": ("0", "Myositis ossificans traumatica"),
    "amputation": ("0", "Myositis ossificans traumatica"),
}
M61_OTHER = ("5", "Other ossification of muscle")
# Which cause names the HO when a patient has several injuries (the strongest first).
M61_PRECEDENCE = (
    "fop",
    "spinal_cord_injury",
    "traumatic_brain_injury",
    "acquired_brain_injury",
    "burn",
    "musculoskeletal_trauma",
    "amputation",
)
ICD10_SITE_DIGIT = {
    "shoulder": "1",
    "elbow": "2",
    "wrist": "3",
    "hand": "4",
    "hip": "5",
    "thigh": "5",
    "pelvis": "5",
    "knee": "6",
    "ankle": "7",
    "foot": "7",
    "spine": "8",
    "jaw": "8",
    "other": "9",
}

# DICOM modality codes (CID 29). A radiograph is written as DX; CR and DX both read back.
MODALITY_DICOM = {
    "ultrasound": "US",
    "radiograph": "DX",
    "ct": "CT",
    "mri": "MR",
    "spect": "NM",
    "bone_scan": "NM",
    "pet": "PT",
}
DICOM_MODALITY = {
    "US": "ultrasound",
    "CR": "radiograph",
    "DX": "radiograph",
    "CT": "ct",
    "MR": "mri",
    "PT": "pet",
    "NM": "bone_scan",
}

SIDE_SNOMED = {"left": ("7771000", "Left"), "right": ("24028007", "Right")}
HO_SNOMED = {
    "present": ("52101004", "Present"),
    "absent": ("2667000", "Absent"),
    "indeterminate": ("82334004", "Indeterminate"),
}
ANALYTE_LOINC = {
    "alp": ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma"),
    "crp": ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),
    "ck": ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma"),
}
AGENT_RXNORM = {"indomethacin": ("5781", "indomethacin")}
AGENT_SNOMED = {"radiotherapy": ("108290001", "Radiation oncology AND/OR radiotherapy")}
PROCEDURE_SNOMED = {"resection": ("65801008", "Excision")}
# The bedside examination (v2). No LOINC or SNOMED CT code is written for the exam
# itself, its signs or the movements (none is one to one with the tracker's words);
# pain, the 0-10 numeric rating, has a LOINC code. A sign's yes / no sits beside
# SNOMED CT present / absent, as HO presence does.
PAIN_LOINC = ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
SIGN_SNOMED = {"yes": HO_SNOMED["present"], "no": HO_SNOMED["absent"]}
DEGREES = "deg"  # UCUM code of a range of motion's unit
# Agents that are not medicines: their courses are written as Procedures.
PROCEDURE_AGENTS = frozenset({"radiotherapy", "physiotherapy"})

# Finding components that hold a vocabulary word, and the one that holds a number.
FINDING_WORDS = (
    "soft_tissue",
    "calcification",
    "cortex",
    "trabeculae",
    "vascularity",
    "uptake",
    "della_valle",
)


def coding(system_url: str, code: str, display: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"system": system_url, "code": code}
    if display:
        found["display"] = display
    return found


def concept(
    tracker_system: str, code: str, standard: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A CodeableConcept with the tracker coding first and a standard one beside it."""
    codings = [coding(tracker_system, code, code.replace("_", " "))]
    if standard is not None:
        codings.append(standard)
    return {"coding": codings, "text": code.replace("_", " ")}


def standard(table: dict[str, tuple[str, str]], system_url: str, code: str) -> dict | None:
    found = table.get(code)
    return coding(system_url, found[0], found[1]) if found else None


def reverse(table: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {standard_code: word for word, (standard_code, _) in table.items()}


# Standard codes that the importer can read back when no tracker coding is present.
READ_BACK: dict[str, dict[str, dict[str, str]]] = {
    INJURY_KIND: {SNOMED: reverse(INJURY_SNOMED)},
    MODALITY: {DICOM: {k: v for k, v in DICOM_MODALITY.items() if k != "NM"}},
    SIDE: {SNOMED: reverse(SIDE_SNOMED)},
    HO: {SNOMED: reverse(HO_SNOMED)},
    ANALYTE: {LOINC: reverse(ANALYTE_LOINC)},
    AGENT: {RXNORM: reverse(AGENT_RXNORM), SNOMED: reverse(AGENT_SNOMED)},
    PROCEDURE_KIND: {SNOMED: reverse(PROCEDURE_SNOMED)},
    SIGN: {SNOMED: reverse(SIGN_SNOMED)},
    ELEMENT: {LOINC: {PAIN_LOINC[0]: "pain"}},
}

VOCABULARIES = {
    INJURY_KIND: vocab.InjuryKind,
    MODALITY: vocab.Modality,
    SITE: vocab.Site,
    SIDE: vocab.Side,
    HO: vocab.HoPresence,
    AGENT: vocab.Agent,
    INTENT: vocab.Intent,
    PROCEDURE_KIND: vocab.ProcedureKind,
    ANALYTE: vocab.Analyte,
    PHASE: vocab.Phase,
    INDICATION: vocab.Indication,
    SIGN: vocab.Sign,
    MOVEMENT: vocab.Movement,
    REMINDER_RULE: vocab.ReminderRule,
}


def m61_code(site: str, injury_kinds: list[str]) -> dict[str, Any]:
    """The ICD-10 M61.x code for HO at `site` in a patient with these injuries."""
    cause = next((k for k in M61_PRECEDENCE if k in injury_kinds), None)
    digit, display = M61_BY_INJURY[cause] if cause else M61_OTHER
    return coding(ICD10, f"M61.{digit}{ICD10_SITE_DIGIT[site]}", display)


def vocabulary_words(tracker_system: str) -> list[str]:
    """The allowed codes of a tracker CodeSystem (model-spec section 1)."""
    enum = VOCABULARIES.get(tracker_system)
    return vocab.values(enum) if enum else []
