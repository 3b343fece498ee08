"""The record forms as data: which fields each form has and how they are shown.

Field names are the names `tracker.services.records` validates under, so a
refused value comes back with the path of the input that holds it
(`findings[1].brooker`) and the form shows the reason beside that input.

A finding's feature that only some modalities can show names them (`modalities`):
the form marks its input with them (a small script hides the others when the
modality changes) and `misfits` refuses a value given for a study of another
modality, so an ultrasound never carries a Brooker grade.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tracker import vocab


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text, date, number, select, textarea, code (TOML), password
    choices: tuple[str, ...] = ()
    required: bool = False
    step: str = "any"
    # the imaging modalities this field applies to; empty: every modality
    modalities: tuple[str, ...] = ()
    default: str = ""  # what a new form shows in it


def choices(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(vocab.values(enum))


@dataclass(frozen=True)
class FormSpec:
    """One record form: its top fields and, for studies and scans, repeated rows."""

    slug: str  # the URL part: /patients/{mrn}/{slug}/new
    title: str
    entity: str  # the record's table (audit, correction)
    fields: tuple[Field, ...]
    rows_name: str | None = None  # "findings", "measurements" or "sites"
    row_fields: tuple[Field, ...] = field(default=())
    default_rows: int = 2
    # a small table in each row: one line per grid row (the bone-scan phases), one
    # input per grid field, named `rows[i].<grid row>_<grid field>` (`delayed_ratio`)
    grid_rows: tuple[str, ...] = ()
    grid_fields: tuple[Field, ...] = ()


SITE = Field("site", "Site", "select", choices(vocab.Site), True)
SIDE = Field("side", "Side", "select", choices(vocab.Side), True)
GRADES = tuple(str(n) for n in range(5))

# Which modality can show which feature of a finding (model-spec section 1: uptake on
# bone_scan, spect and pet; section 3: the cortex of radiograph, ct and mri;
# clinical-reference "How it evolves": vascularity is the ultrasound's Doppler,
# soft tissue and calcification show on the anatomical modalities, Brooker and
# Della Valle are graded on a radiograph or CT of the hip).
ANATOMICAL = ("ultrasound", "radiograph", "ct", "mri")
CORTEX_SEEN = tuple(m.value for m in vocab.Modality if m in vocab.CORTEX_MODALITIES)
UPTAKE_SEEN = tuple(m.value for m in vocab.Modality if m in vocab.UPTAKE_MODALITIES)
GRADED = ("radiograph", "ct")

INJURY = FormSpec(
    "injuries",
    "Injury",
    "injury",
    (
        Field("kind", "Kind", "select", choices(vocab.InjuryKind), True),
        Field("date", "Date", "date", required=True),
        Field("notes", "Notes", "textarea"),
    ),
)
IMAGING = FormSpec(
    "imaging",
    "Imaging study",
    "imaging_study",
    (
        Field("date", "Date", "date", required=True),
        Field("modality", "Modality", "select", choices(vocab.Modality), True),
        Field("accession", "Accession number"),
        Field("indication", "Indication", "select", choices(vocab.Indication)),
        Field("notes", "Notes", "textarea"),
    ),
    rows_name="findings",
    row_fields=(
        SITE,
        SIDE,
        Field("ho", "HO", "select", choices(vocab.HoPresence), True),
        Field(
            "soft_tissue", "Soft tissue", "select", choices(vocab.SoftTissue),
            modalities=ANATOMICAL,
        ),
        Field(
            "calcification", "Calcification", "select", choices(vocab.Calcification),
            modalities=ANATOMICAL,
        ),
        Field("cortex", "Cortex", "select", choices(vocab.Cortex), modalities=CORTEX_SEEN),
        Field(
            "trabeculae", "Trabeculae", "select", choices(vocab.Trabeculae),
            modalities=CORTEX_SEEN,
        ),
        Field(
            "vascularity", "Vascularity", "select", choices(vocab.Vascularity),
            modalities=("ultrasound",),
        ),
        Field("uptake", "Uptake", "select", choices(vocab.Uptake), modalities=UPTAKE_SEEN),
        Field("brooker", "Brooker grade", "select", GRADES, modalities=GRADED),
        Field(
            "della_valle", "Della Valle class", "select", choices(vocab.DellaValle),
            modalities=GRADED,
        ),
        Field("size_mm", "Size (mm)", "number"),
        Field("notes", "Notes"),
    ),
)  # fmt: skip
# A bone scan in one form (issue 14): the study, what it showed at each site and
# the site's ratios for each phase, saved together (`add_bone_scan_study`).
PHASES = choices(vocab.Phase)
BONE_SCAN_STUDY = FormSpec(
    "bone-scans",
    "Bone scan",
    "imaging_study",
    (
        Field("date", "Scan date", "date", required=True),
        Field("modality", "Modality", "select", ("bone_scan", "spect"), True, default="bone_scan"),
        Field("accession", "Accession number"),
        Field("notes", "Notes", "textarea"),
    ),
    rows_name="sites",
    row_fields=(
        SITE,
        SIDE,
        Field("ho", "HO", "select", choices(vocab.HoPresence), True),
        Field("uptake", "Uptake", "select", choices(vocab.Uptake)),
        Field("reference_region", "Reference region"),
        Field("notes", "Notes"),
    ),
    default_rows=2,
    grid_rows=PHASES,
    grid_fields=(
        Field("ratio", "Ratio (lesion / reference)", "number"),
        Field("lesion_counts", "Lesion ROI counts", "number"),
        Field("reference_counts", "Reference ROI counts", "number"),
    ),
)
# One stored measurement, as it is corrected (and as the API adds them).
BONE_SCAN = FormSpec(
    "bone-scans",
    "Bone-scan measurement",
    "bone_scan_measurement",
    (Field("date", "Scan date", "date", required=True),),
    rows_name="measurements",
    row_fields=(
        SITE,
        SIDE,
        Field("phase", "Phase", "select", choices(vocab.Phase), True),
        Field("ratio", "Ratio (lesion / reference)", "number"),
        Field("lesion_counts", "Lesion ROI counts", "number"),
        Field("reference_counts", "Reference ROI counts", "number"),
        Field("reference_region", "Reference region"),
    ),
)
COURSE = FormSpec(
    "courses",
    "Treatment course",
    "treatment_course",
    (
        Field("agent", "Agent", "select", choices(vocab.Agent), True),
        Field("intent", "Intent", "select", choices(vocab.Intent), True),
        Field("start_date", "Start date", "date", required=True),
        Field("planned_weeks", "Planned weeks", "number"),
        Field("dose", "Dose", "number"),
        Field("dose_unit", "Dose unit"),
        Field("site", "Site (radiotherapy)", "select", choices(vocab.Site)),
        Field("side", "Side", "select", choices(vocab.Side)),
    ),
)
COURSE_STOP = FormSpec(
    "courses",
    "Stop a course",
    "treatment_course",
    (
        Field("end_date", "End date", "date", required=True),
        Field("reason", "Reason for stopping", "textarea", required=True),
    ),
)
PROCEDURE = FormSpec(
    "procedures",
    "Procedure",
    "procedure",
    (
        Field("kind", "Kind", "select", choices(vocab.ProcedureKind), True),
        Field("date", "Date", "date", required=True),
        SITE,
        SIDE,
        Field("notes", "Notes", "textarea"),
    ),
)
LAB = FormSpec(
    "labs",
    "Lab result",
    "lab_result",
    (
        Field("date", "Date", "date", required=True),
        Field("analyte", "Analyte", "select", choices(vocab.Analyte), True),
        Field("value", "Value", "number", required=True),
        # every analyte's units (model-spec v2, section 1); a unit its analyte does not
        # use is refused beside this field, with that analyte's units listed
        Field("unit", "Unit", "select", vocab.ALL_LAB_UNITS, True),
        Field("ref_low", "Reference low", "number"),
        Field("ref_high", "Reference high", "number"),
    ),
)

# The bedside examination of one joint (issue 16): its signs and pain, and the range
# of motion of the joint's movements, saved together (`exam_records.add_examination`).
# Signs are yes, no or blank (not examined); a movement row left blank is skipped.
SIGN_CHOICES = choices(vocab.Sign)
PAIN_SCORES = tuple(str(n) for n in range(vocab.PAIN_MIN, vocab.PAIN_MAX + 1))
EXAM = FormSpec(
    "examination",
    "Examination",
    "clinical_exam",
    (
        Field("date", "Date", "date", required=True),
        SITE,
        SIDE,
        *(Field(sign, sign.capitalize(), "sign", SIGN_CHOICES) for sign in vocab.EXAM_SIGNS),
        Field("pain", "Pain (0-10)", "select", PAIN_SCORES),
        Field("notes", "Notes", "textarea"),
    ),
    rows_name="measurements",
    row_fields=(
        Field("movement", "Movement", "select", choices(vocab.Movement)),
        Field("degrees", "Degrees", "number"),
    ),
    default_rows=0,
)
# The movements measured at each joint, in the order the form lists them; a site not
# named here lists every movement.
_SAGITTAL = ("flexion", "extension")
_BALL = (*_SAGITTAL, "abduction", "adduction", "internal_rotation", "external_rotation")
_FOREARM = (*_SAGITTAL, "pronation", "supination")
JOINT_MOVEMENTS: dict[str, tuple[str, ...]] = {
    "hip": _BALL,
    "shoulder": _BALL,
    "knee": _SAGITTAL,
    "elbow": _FOREARM,
    "wrist": _FOREARM,
    "ankle": ("dorsiflexion", "plantarflexion"),
}


def movements_of(site: str | None) -> tuple[str, ...]:
    """The movements the examination form lists for a joint (every one if unknown)."""
    return JOINT_MOVEMENTS.get(site or "", choices(vocab.Movement))


# One stored examination and one stored range-of-motion measurement, as each is
# corrected and voided (`records.correct_exam`, `records.correct_range_of_motion`):
# both are added with the bedside form (EXAM), which stores the two together.
EXAM_RECORD = FormSpec(
    "examination",
    "Examination",
    "clinical_exam",
    (
        Field("date", "Date", "date", required=True),
        SITE,
        SIDE,
        *(Field(sign, sign.capitalize(), "select", SIGN_CHOICES) for sign in vocab.EXAM_SIGNS),
        Field("pain", "Pain (0-10)", "select", PAIN_SCORES),
        Field("notes", "Notes", "textarea"),
    ),
)
ROM_RECORD = FormSpec(
    "range-of-motion",
    "Range of motion",
    "range_of_motion",
    (
        Field("date", "Date", "date", required=True),
        SITE,
        SIDE,
        Field("movement", "Movement", "select", choices(vocab.Movement), True),
        Field("degrees", "Degrees (0-200)", "number", required=True),
    ),
)

# The forms a record is corrected and voided with (the API adds the first six) ...
FORMS = {
    f.slug: f for f in (INJURY, IMAGING, BONE_SCAN, COURSE, PROCEDURE, LAB, EXAM_RECORD, ROM_RECORD)
}
# ... and those a person adds one with: a bone scan is one form with its ratios, an
# examination one form with the joint's range of motion (so no form of its own).
NEW_FORMS = {
    **{slug: f for slug, f in FORMS.items() if f is not ROM_RECORD},
    BONE_SCAN_STUDY.slug: BONE_SCAN_STUDY,
    EXAM.slug: EXAM,
}
# The most rows (findings, measurements, sites) one form or API call saves. A form
# sent with a filled row beyond it is refused beside the first row too many
# (`too_many_rows`), never cut short: every row sent is saved, or none.
MAX_ROWS = 20


def grid_names(spec: FormSpec) -> list[str]:
    """The input names of a row's grid: `flow_ratio`, ..., `delayed_reference_counts`."""
    return [f"{line}_{f.name}" for line in spec.grid_rows for f in spec.grid_fields]


def fits(f: Field, modality: str | None) -> bool:
    """Whether a finding's field applies to a study of `modality` (unknown: yes)."""
    return not f.modalities or not modality or modality in f.modalities


def rows_sent(values: dict[str, str], spec: FormSpec) -> int:
    """One more than the highest row index with a value in it (0: no row)."""
    used = 0
    prefix = f"{spec.rows_name}["
    for key, value in values.items():
        if key.startswith(prefix) and value:
            index = key[len(prefix) :].split("]", 1)[0]
            if index.isdigit():
                used = max(used, int(index) + 1)
    return used


def row_count(values: dict[str, str], spec: FormSpec, wanted: int | None) -> int:
    """Rows to show: as many as were filled in or asked for, at least the default, at
    most MAX_ROWS; one more when rows beyond it were sent, so the first row too many
    is shown with its refusal (`too_many_rows`)."""
    if spec.rows_name is None:
        return 0
    used = rows_sent(values, spec)
    if used > MAX_ROWS:
        return MAX_ROWS + 1
    return max(1, min(MAX_ROWS, max(used, wanted or 0, spec.default_rows)))


def too_many_rows(spec: FormSpec, values: dict[str, str]) -> tuple[str, str] | None:
    """(input, reason) refusing a form with a filled row beyond MAX_ROWS, or None."""
    if spec.rows_name is None or rows_sent(values, spec) <= MAX_ROWS:
        return None
    first = spec.row_fields[0].name
    return (
        f"{spec.rows_name}[{MAX_ROWS}].{first}",
        f"use at most {MAX_ROWS} {spec.rows_name} in one form; save the others as another record",
    )


# --- the admin's forms: a new user, an API token's name, a protocol to check ---

NEW_USER = (
    Field("username", "User name", required=True),
    Field("role", "Role", "select", choices(vocab.Role), True),
    Field("password", "Password (8+ chars)", "password", required=True),
    Field("confirm", "Password again", "password", required=True),
)
TOKEN_NAME = Field("name", "What the token is for", required=True)
PROTOCOL_TEXT = Field("toml", "Protocol file text (TOML)", "code", required=True)
