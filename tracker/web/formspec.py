"""The record forms as data: which fields each form has and how they are shown.

Field names are the names `tracker.services.records` validates under, so a
refused value comes back with the path of the input that holds it
(`findings[1].brooker`) and the form shows the reason beside that input.
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


def choices(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(vocab.values(enum))


@dataclass(frozen=True)
class FormSpec:
    """One record form: its top fields and, for studies and scans, repeated rows."""

    slug: str  # the URL part: /patients/{mrn}/{slug}/new
    title: str
    entity: str  # the record's table (audit, correction)
    fields: tuple[Field, ...]
    rows_name: str | None = None  # "findings" or "measurements"
    row_fields: tuple[Field, ...] = field(default=())
    default_rows: int = 2


SITE = Field("site", "Site", "select", choices(vocab.Site), True)
SIDE = Field("side", "Side", "select", choices(vocab.Side), True)
GRADES = tuple(str(n) for n in range(5))

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
        Field("notes", "Notes", "textarea"),
    ),
    rows_name="findings",
    row_fields=(
        SITE,
        SIDE,
        Field("ho", "HO", "select", choices(vocab.HoPresence), True),
        Field("soft_tissue", "Soft tissue", "select", choices(vocab.SoftTissue)),
        Field("calcification", "Calcification", "select", choices(vocab.Calcification)),
        Field("cortex", "Cortex", "select", choices(vocab.Cortex)),
        Field("trabeculae", "Trabeculae", "select", choices(vocab.Trabeculae)),
        Field("vascularity", "Vascularity", "select", choices(vocab.Vascularity)),
        Field("uptake", "Uptake", "select", choices(vocab.Uptake)),
        Field("brooker", "Brooker grade", "select", GRADES),
        Field("della_valle", "Della Valle class", "select", choices(vocab.DellaValle)),
        Field("size_mm", "Size (mm)", "number"),
        Field("notes", "Notes"),
    ),
)
BONE_SCAN = FormSpec(
    "bone-scans",
    "Bone-scan measurements",
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

FORMS = {f.slug: f for f in (INJURY, IMAGING, BONE_SCAN, COURSE, PROCEDURE, LAB)}
MAX_ROWS = 12


def row_count(values: dict[str, str], spec: FormSpec, wanted: int | None) -> int:
    """Rows to show: as many as were filled in or asked for, at least the default."""
    if spec.rows_name is None:
        return 0
    used = 0
    prefix = f"{spec.rows_name}["
    for key in values:
        if key.startswith(prefix):
            index = key[len(prefix) :].split("]", 1)[0]
            if index.isdigit():
                used = max(used, int(index) + 1)
    return max(1, min(MAX_ROWS, max(used, wanted or 0, spec.default_rows)))


# --- the admin's forms: a new user, an API token's name, a protocol to check ---

NEW_USER = (
    Field("username", "User name", required=True),
    Field("role", "Role", "select", choices(vocab.Role), True),
    Field("password", "Password (8+ chars)", "password", required=True),
    Field("confirm", "Password again", "password", required=True),
)
TOKEN_NAME = Field("name", "What the token is for", required=True)
PROTOCOL_TEXT = Field("toml", "Protocol file text (TOML)", "code", required=True)
