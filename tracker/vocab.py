"""The controlled vocabulary of model-spec section 1, defined once.

Database CHECK constraints, CSV validation, forms and API schemas all read these
enumerations, so a value is either allowed everywhere or nowhere.
"""

from __future__ import annotations

from enum import StrEnum


class InjuryKind(StrEnum):
    spinal_cord_injury = "spinal_cord_injury"
    traumatic_brain_injury = "traumatic_brain_injury"
    acquired_brain_injury = "acquired_brain_injury"
    burn = "burn"
    musculoskeletal_trauma = "musculoskeletal_trauma"
    amputation = "amputation"
    hip_arthroplasty = "hip_arthroplasty"
    knee_arthroplasty = "knee_arthroplasty"
    other_surgery = "other_surgery"
    fop = "fop"
    other = "other"


class Modality(StrEnum):
    ultrasound = "ultrasound"
    radiograph = "radiograph"
    ct = "ct"
    mri = "mri"
    spect = "spect"
    bone_scan = "bone_scan"
    pet = "pet"


class Indication(StrEnum):
    """Why an imaging study was done (model-spec v2, section 1; optional)."""

    screening = "screening"
    dvt_query = "dvt_query"
    symptoms = "symptoms"
    follow_up = "follow_up"
    pre_operative = "pre_operative"
    post_operative = "post_operative"
    other = "other"


class Site(StrEnum):
    hip = "hip"
    knee = "knee"
    elbow = "elbow"
    shoulder = "shoulder"
    thigh = "thigh"
    pelvis = "pelvis"
    spine = "spine"
    ankle = "ankle"
    wrist = "wrist"
    hand = "hand"
    foot = "foot"
    jaw = "jaw"
    other = "other"


class Side(StrEnum):
    left = "left"
    right = "right"
    midline = "midline"


class HoPresence(StrEnum):
    present = "present"
    absent = "absent"
    indeterminate = "indeterminate"


class SoftTissue(StrEnum):
    none = "none"
    swelling = "swelling"
    mass = "mass"


class Calcification(StrEnum):
    none = "none"
    present = "present"
    peripheral = "peripheral"
    zonal = "zonal"
    central = "central"
    disorganised = "disorganised"


class Cortex(StrEnum):
    none = "none"
    partial = "partial"
    well_defined = "well_defined"


class Trabeculae(StrEnum):
    yes = "yes"
    no = "no"


class Vascularity(StrEnum):
    none = "none"
    increased = "increased"


class Uptake(StrEnum):
    normal = "normal"
    increased = "increased"


class DellaValle(StrEnum):
    a = "a"
    b = "b"
    c = "c"


class Phase(StrEnum):
    flow = "flow"
    blood_pool = "blood_pool"
    delayed = "delayed"


class Agent(StrEnum):
    indomethacin = "indomethacin"
    other_nsaid = "other_nsaid"
    etidronate = "etidronate"
    other_bisphosphonate = "other_bisphosphonate"
    radiotherapy = "radiotherapy"
    physiotherapy = "physiotherapy"
    other = "other"


class Intent(StrEnum):
    prophylaxis = "prophylaxis"
    treatment = "treatment"
    post_resection = "post_resection"


class ProcedureKind(StrEnum):
    resection = "resection"
    manipulation = "manipulation"
    other = "other"


class Analyte(StrEnum):
    alp = "alp"
    bone_alp = "bone_alp"
    crp = "crp"
    ck = "ck"
    d_dimer = "d_dimer"


# Lab units per analyte (model-spec v2, section 1): case-sensitive UCUM-style strings,
# the one exception to snake_case values. The first unit of each list is the usual one.
LAB_UNITS: dict[str, tuple[str, ...]] = {
    Analyte.alp: ("U/L", "ukat/L"),
    Analyte.bone_alp: ("ug/L", "U/L"),
    Analyte.crp: ("mg/L", "mg/dL"),
    Analyte.ck: ("U/L", "ukat/L"),
    Analyte.d_dimer: ("mg/L FEU", "ug/mL FEU", "ng/mL FEU", "ng/mL DDU"),
}
ALL_LAB_UNITS: tuple[str, ...] = tuple(
    dict.fromkeys(u for units in LAB_UNITS.values() for u in units)
)


def lab_unit_allowed(analyte: str, unit: str) -> bool:
    """Whether `unit` is one of the units model-spec section 1 allows for `analyte`."""
    return unit in LAB_UNITS.get(str(analyte), ())


class Sign(StrEnum):
    """An examination sign (swelling, warmth, erythema) seen or not (model-spec v2,
    section 1; optional: blank when it was not examined)."""

    yes = "yes"
    no = "no"


class Movement(StrEnum):
    """A range-of-motion movement measured with a goniometer (model-spec v2, section 1)."""

    flexion = "flexion"
    extension = "extension"
    abduction = "abduction"
    adduction = "adduction"
    internal_rotation = "internal_rotation"
    external_rotation = "external_rotation"
    pronation = "pronation"
    supination = "supination"
    dorsiflexion = "dorsiflexion"
    plantarflexion = "plantarflexion"


# An examination's pain score and a movement's arc in degrees (model-spec v2, section 1).
PAIN_MIN, PAIN_MAX = 0, 10
DEGREES_MIN, DEGREES_MAX = 0, 200
# The signs an examination records, in the spec's order.
EXAM_SIGNS = ("swelling", "warmth", "erythema")


class Sex(StrEnum):
    """Administrative sex, as FHIR's AdministrativeGender (the spec leaves it open)."""

    female = "female"
    male = "male"
    other = "other"
    unknown = "unknown"


BROOKER_MIN, BROOKER_MAX = 0, 4

# Modalities whose findings may show uptake (model-spec section 1).
UPTAKE_MODALITIES = frozenset({Modality.bone_scan, Modality.spect, Modality.pet})
# Modalities that can show a mature cortex (model-spec section 3, rule 1).
CORTEX_MODALITIES = frozenset({Modality.radiograph, Modality.ct, Modality.mri})


def values(enum: type[StrEnum]) -> list[str]:
    """The allowed strings of an enumeration, in the spec's order."""
    return [member.value for member in enum]


class ReminderRule(StrEnum):
    """The reminder rules of model-spec section 9, in the spec's order."""

    hip_ultrasound_screen = "hip_ultrasound_screen"
    consider_prophylaxis = "consider_prophylaxis"
    monitoring_radiograph = "monitoring_radiograph"
    maturity_bone_scan = "maturity_bone_scan"
    course_review = "course_review"
    post_course_radiograph = "post_course_radiograph"
    readiness_review = "readiness_review"
    post_resection_prophylaxis = "post_resection_prophylaxis"
    recurrence_radiograph = "recurrence_radiograph"
    # v2, from the bedside examination and DVT referrals (section 9)
    suspected_ho_imaging = "suspected_ho_imaging"
    dvt_query_hip_ultrasound = "dvt_query_hip_ultrasound"


class ReminderStatus(StrEnum):
    """A reminder's life (model-spec section 9): pending until its date, due on it,
    sent once delivered; closed by a record (satisfied), by a person (acknowledged)
    or because it no longer applies (cancelled, with the reason kept). A reminder
    already long past when a plan first creates it is lapsed (v2): kept for the
    adherence record, never delivered, not on the worklist."""

    pending = "pending"
    due = "due"
    sent = "sent"
    satisfied = "satisfied"
    acknowledged = "acknowledged"
    cancelled = "cancelled"
    lapsed = "lapsed"


class Role(StrEnum):
    """What a web-app user may do (issue 6): clinicians log and correct records,
    surgeons read and acknowledge readiness, admins manage users and the protocol."""

    clinician = "clinician"
    surgeon = "surgeon"
    admin = "admin"


class AuditAction(StrEnum):
    """What an audit row records (issue 6)."""

    create = "create"
    correct = "correct"
    void = "void"
    view = "view"
    import_ = "import"
    sign_in = "sign_in"
    sign_in_failed = "sign_in_failed"
    acknowledge = "acknowledge"
    user_add = "user_add"
