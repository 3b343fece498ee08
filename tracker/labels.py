"""Words, not tokens: every value, field, record kind and rule as a person says it.

The one place that turns the vocabulary of model-spec section 1 (and the stages,
verdicts, flags, reminder rules, statuses, roles and audit actions built on it)
into words. The pages, the reports, the e-mails and the error messages all read
it, so `well_defined` is "well-defined" everywhere and a field error reads
"Finding 2 (right hip): HO is required", never `findings[1].ho: is required`.

Only `tracker.vocab` is imported: the errors, the templates and the mail can use
this module without pulling in the database, the web app or the clinical core.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldError",
    "arrived",
    "count",
    "day",
    "describe",
    "entity",
    "explained",
    "field",
    "field_error",
    "field_errors",
    "has_words",
    "meaning",
    "place",
    "rule",
    "sentence",
    "summary",
    "team",
    "words",
]

# --- values -----------------------------------------------------------------------------

# Every value a page can show, by its token. A value whose words are the token itself
# is listed too: a new value without an entry here fails tests/test_labels.py.
VALUES: dict[str, str] = {
    # injury kind
    "spinal_cord_injury": "spinal cord injury",
    "traumatic_brain_injury": "traumatic brain injury",
    "acquired_brain_injury": "acquired brain injury",
    "burn": "burn",
    "musculoskeletal_trauma": "musculoskeletal trauma",
    "amputation": "amputation",
    "hip_arthroplasty": "hip arthroplasty",
    "knee_arthroplasty": "knee arthroplasty",
    "other_surgery": "other surgery",
    "fop": "FOP (fibrodysplasia ossificans progressiva)",
    "other": "other",
    # modality
    "ultrasound": "ultrasound",
    "radiograph": "radiograph",
    "ct": "CT",
    "mri": "MRI",
    "spect": "SPECT",
    "bone_scan": "bone scan",
    "pet": "PET",
    # imaging indication (v2)
    "screening": "screening",
    "dvt_query": "query DVT",
    "symptoms": "symptoms",
    "follow_up": "follow-up",
    "pre_operative": "before an operation",
    "post_operative": "after an operation",
    # site and side
    "hip": "hip",
    "knee": "knee",
    "elbow": "elbow",
    "shoulder": "shoulder",
    "thigh": "thigh",
    "pelvis": "pelvis",
    "spine": "spine",
    "ankle": "ankle",
    "wrist": "wrist",
    "hand": "hand",
    "foot": "foot",
    "jaw": "jaw",
    "left": "left",
    "right": "right",
    "midline": "midline",
    # finding descriptors (their phrases with the field are in PHRASES)
    "present": "present",
    "absent": "absent",
    "indeterminate": "indeterminate",
    "none": "none",
    "swelling": "swelling",
    "mass": "mass",
    "peripheral": "peripheral",
    "zonal": "zonal",
    "central": "central",
    "disorganised": "disorganised",
    "partial": "partial",
    "well_defined": "well-defined",
    "yes": "yes",
    "no": "no",
    "increased": "increased",
    "normal": "normal",
    "a": "A",
    "b": "B",
    "c": "C",
    # bone-scan phase
    "flow": "flow",
    "blood_pool": "blood pool",
    "delayed": "delayed",
    # treatment
    "indomethacin": "indomethacin",
    "other_nsaid": "other NSAID",
    "etidronate": "etidronate",
    "other_bisphosphonate": "other bisphosphonate",
    "radiotherapy": "radiotherapy",
    "physiotherapy": "physiotherapy",
    "prophylaxis": "prophylaxis",
    "treatment": "treatment",
    "post_resection": "after resection",
    # procedure
    "resection": "resection",
    "manipulation": "manipulation",
    # lab analyte
    "alp": "ALP",
    "bone_alp": "bone ALP",
    "crp": "CRP",
    "ck": "CK",
    "d_dimer": "D-dimer",
    # examination (v2)
    "flexion": "flexion",
    "extension": "extension",
    "abduction": "abduction",
    "adduction": "adduction",
    "internal_rotation": "internal rotation",
    "external_rotation": "external rotation",
    "pronation": "pronation",
    "supination": "supination",
    "dorsiflexion": "dorsiflexion",
    "plantarflexion": "plantarflexion",
    # sex
    "female": "female",
    "male": "male",
    "unknown": "unknown",
    # stage
    "early": "early",
    "mineralising": "mineralising",
    "mature": "mature",
    # activity
    "single_scan": "single scan",
    "rising": "rising",
    "plateau": "plateau",
    "declining": "declining",
    # readiness: a site without HO has no lesion to resect, so "no HO", never a verdict
    "ready": "ready",
    "not_ready": "not ready",
    "insufficient_data": "insufficient data",
    "not_applicable": "no HO",
    # criteria, their levels and statuses
    "radiographic_maturity": "radiographic maturity",
    "scan_stabilised": "bone scan stabilised",
    "alp_normal": "ALP normal",
    "time_since_injury": "time since injury",
    "not_genetic_ho": "not genetic HO (no FOP)",
    "required": "required",
    "required_if_known": "required when known",
    "advisory": "advisory",
    "met": "met",
    "unmet": "not met",
    # flags
    "genetic_ho": "genetic HO (FOP)",
    "grade_increase": "grade increase",
    "new_site": "new site",
    "progression_after_treatment": "progression after treatment",
    "recurrence": "recurrence after resection",
    "rising_activity": "rising activity",
    "rom_loss": "loss of range of motion",
    # forecast
    "passed": "forecast date passed",
    # reminder status
    "pending": "pending",
    "due": "due",
    "sent": "sent",
    "satisfied": "satisfied",
    "acknowledged": "acknowledged",
    "cancelled": "cancelled",
    "lapsed": "lapsed",
    # roles
    "clinician": "clinician",
    "surgeon": "surgeon",
    "admin": "administrator",
    # audit actions, as what happened
    "create": "added",
    "correct": "corrected",
    "void": "voided",
    "view": "viewed",
    "import": "imported",
    "sign_in": "signed in",
    "sign_in_failed": "sign-in refused",
    "acknowledge": "acknowledged",
    "user_add": "user added",
    # delivery outcomes (tracker.reminders.mail.Outcome)
    "accepted": "accepted by the mail server",
    "refused": "refused by the mail server",
    "failed": "not delivered",
    "lost_claim": "taken over by another sender",
    "unconfirmed": "sent, not confirmed",
    # timeline rows
    "injury": "injury",
    "imaging": "imaging",
    "course_start": "course started",
    "course_end": "course ended",
    "procedure": "procedure",
    "lab": "lab result",
}

# The reminder rules of model-spec section 9 (tracker.vocab.ReminderRule).
RULES: dict[str, str] = {
    "hip_ultrasound_screen": "hip ultrasound screen",
    "consider_prophylaxis": "consider prophylaxis",
    "monitoring_radiograph": "monitoring radiograph",
    "maturity_bone_scan": "bone scan for maturity",
    "course_review": "course review",
    "post_course_radiograph": "radiograph after the course",
    "readiness_review": "readiness review",
    "post_resection_prophylaxis": "prophylaxis after resection",
    "recurrence_radiograph": "radiograph for recurrence",
    # v2, the bedside rules (model-spec section 9)
    "suspected_ho_imaging": "imaging for suspected HO",
    "dvt_query_hip_ultrasound": "hip ultrasound for a DVT query (HO mimics DVT)",
}

# The tables a record lives in, as the record is called (audit rows, duplicates).
ENTITIES: dict[str, str] = {
    "patient": "patient",
    "injury": "injury",
    "imaging_study": "imaging study",
    "site_finding": "site finding",
    "bone_scan_measurement": "bone-scan measurement",
    "treatment_course": "treatment course",
    "procedure": "procedure",
    "lab_result": "lab result",
    "clinical_exam": "clinical examination",
    "range_of_motion": "range of motion",
    "team": "team",
    "reminder": "reminder",
    "delivery_attempt": "delivery attempt",
    "team_digest": "team digest",
    "user_account": "user",
    "flash_notice": "notice",
    "web_session": "sign-in session",
    "api_token": "API token",
    "audit_event": "audit event",
    "dicom_pending_site": "DICOM site awaiting a finding",
    "site_assessment": "site assessment",
    "pacs_poll_state": "PACS feed position",
    "user": "user",
    "query": "search",
}

# Field names (CSV columns, form inputs, API keys), lower case as they read mid-sentence.
FIELDS: dict[str, str] = {
    "mrn": "MRN",
    "birth_date": "birth date",
    "sex": "sex",
    "family_name": "family name",
    "given_name": "given name",
    "name": "name",
    "team": "team",
    "kind": "kind",
    "date": "date",
    "notes": "notes",
    "modality": "modality",
    "accession": "accession number",
    "indication": "indication",
    "site": "site",
    "side": "side",
    "ho": "HO",
    "soft_tissue": "soft tissue",
    "calcification": "calcification",
    "cortex": "cortex",
    "trabeculae": "trabeculae",
    "vascularity": "vascularity",
    "uptake": "uptake",
    "brooker": "Brooker grade",
    "della_valle": "Della Valle class",
    "size_mm": "size (mm)",
    "phase": "phase",
    "ratio": "ratio",
    "lesion_counts": "lesion ROI counts",
    "reference_counts": "reference ROI counts",
    "reference_region": "reference region",
    "agent": "agent",
    "intent": "intent",
    "start_date": "start date",
    "end_date": "end date",
    "planned_weeks": "planned weeks",
    "dose": "dose",
    "dose_unit": "dose unit",
    "analyte": "analyte",
    "value": "value",
    "unit": "unit",
    "ref_low": "lower reference limit",
    "ref_high": "upper reference limit",
    "swelling": "swelling",
    "warmth": "warmth",
    "erythema": "erythema",
    "pain": "pain score",
    "movement": "movement",
    "degrees": "degrees",
    "as_of": "as-of date",
    "due": "due date",
    "rule": "rule",
    "status": "status",
    "stage": "stage",
    "activity": "activity",
    "readiness": "readiness",
    "latest_ratio": "latest delayed-phase ratio",
    "flag": "flag",
    "flags": "flags",
    "forecast": "forecast",
    "reason": "reason",
    "version": "version",
    "findings": "site findings",
    "measurements": "measurements",
    "entity": "record kind",
    "file": "file",
    "username": "user name",
    "password": "password",
    "confirm": "password again",
    "role": "role",
    "email": "e-mail address",
    "escalation_email": "escalation e-mail address",
    "toml": "protocol file",
    "q": "search text",
    "injury": "injury",
    "more_rows": "rows",
}

# A value with its field, where the value alone does not say what it describes.
PHRASES: dict[tuple[str, str], str] = {
    ("ho", "present"): "HO present",
    ("ho", "absent"): "no HO",
    ("ho", "indeterminate"): "HO indeterminate",
    ("soft_tissue", "none"): "no soft-tissue change",
    ("soft_tissue", "swelling"): "soft-tissue swelling",
    ("soft_tissue", "mass"): "soft-tissue mass",
    ("calcification", "none"): "no calcification",
    ("calcification", "present"): "calcification",
    ("cortex", "none"): "no cortex",
    ("cortex", "partial"): "partial cortex",
    ("cortex", "well_defined"): "well-defined cortex",
    ("trabeculae", "yes"): "trabeculae seen",
    ("trabeculae", "no"): "no trabeculae",
    ("vascularity", "none"): "no increased vascularity",
    ("uptake", "normal"): "normal uptake",
    ("swelling", "yes"): "swelling",
    ("swelling", "no"): "no swelling",
    ("warmth", "yes"): "warmth",
    ("warmth", "no"): "no warmth",
    ("erythema", "yes"): "erythema",
    ("erythema", "no"): "no erythema",
    ("della_valle", "a"): "Della Valle A",
    ("della_valle", "b"): "Della Valle B",
    ("della_valle", "c"): "Della Valle C",
    ("phase", "flow"): "flow phase",
    ("phase", "blood_pool"): "blood-pool phase",
    ("phase", "delayed"): "delayed phase",
    ("site", "other"): "other site",
    ("kind", "other"): "other",
}
# Fields whose value reads before the field's name: "zonal calcification".
_VALUE_FIRST = frozenset({"calcification", "vascularity", "uptake"})

# In a sentence an abbreviation is enough, and "the" reads better before a date.
_IN_SENTENCE: dict[str, str] = {"fop": "FOP", "as_of": "the as-of date"}

# What a value means, for the places that explain it beside its words.
EXPLANATIONS: dict[str, str] = {
    "lapsed": "long past when first planned, not sent",
    "passed": "forecast date already passed: a new scan is due",
    "not_applicable": "no lesion at this site, nothing to resect",
    "insufficient_data": "a required criterion cannot be judged from the records",
    "required": "not met means not ready; unknown means insufficient data",
    "required_if_known": "not met means not ready; no result is not held against the site",
    "advisory": "reported only; it does not decide readiness",
    "unconfirmed": "the server never answered; not sent again, to avoid a duplicate",
}

_ALL: dict[str, str] = {**FIELDS, **ENTITIES, **RULES, **VALUES}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def has_words(token: str) -> bool:
    """Whether `token` has its own entry (not just underscores made spaces)."""
    return token in _ALL


def words(value: Any) -> str:
    """A vocabulary value as words: 'spinal_cord_injury' -> 'spinal cord injury',
    'ct' -> 'CT', 'not_applicable' -> 'no HO'. Anything unknown keeps its text with
    underscores as spaces; None is ''."""
    text = _text(value)
    if text in VALUES:
        return VALUES[text]
    if text in _ALL:
        return _ALL[text]
    return text.replace("_", " ")


def day(value: dt.date) -> str:
    """A clinical date as a person writes it: '10 Feb 2025' (no leading zero)."""
    return f"{value.day} {value:%b %Y}"


def rule(value: Any) -> str:
    """A reminder rule as words: 'maturity_bone_scan' -> 'bone scan for maturity'."""
    text = _text(value)
    return RULES.get(text, words(text))


def entity(value: Any) -> str:
    """A record kind (table name) as words: 'imaging_study' -> 'imaging study'."""
    text = _text(value)
    return ENTITIES.get(text, words(text))


_PHASE_FIELD = re.compile(r"^(flow|blood_pool|delayed)_([a-z_]+)$")


def field(name: Any) -> str:
    """A field name as words, lower case: 'as_of' -> 'as-of date', 'ho' -> 'HO',
    'delayed_ratio' (a bone scan's phase grid) -> 'delayed-phase ratio'."""
    text = _text(name)
    if text in FIELDS:
        return FIELDS[text]
    phased = _PHASE_FIELD.match(text)
    if phased and phased.group(2) in FIELDS:
        return f"{_PHASE_RATIOS[phased.group(1)].removesuffix(' ratio')} {FIELDS[phased.group(2)]}"
    return words(text)


def describe(field_name: str, value: Any) -> str:
    """A value with its field, as a finding is read out: ('cortex', 'well_defined') ->
    'well-defined cortex', ('calcification', 'zonal') -> 'zonal calcification',
    ('brooker', 2) -> 'Brooker grade 2'."""
    text = _text(value)
    if (field_name, text) in PHRASES:
        return PHRASES[(field_name, text)]
    if field_name in _VALUE_FIRST:
        return f"{words(text)} {field(field_name)}"
    return f"{field(field_name)} {words(text)}"


def place(site: Any, side: Any = None) -> str:
    """Where a finding is, as said at the bedside: ('hip', 'right') -> 'right hip'."""
    where = describe("site", site) if _text(site) == "other" else words(site)
    if not where:
        return words(side)
    return f"{words(side)} {where}" if _text(side) else where


def arrived(
    modality: Any, site: Any, side: Any, day: Any, *, body_part: Any = None, today: Any = None
) -> str:
    """A study that waits for its finding (a DICOM pending site, issue 17), as the
    worklist says it: 'radiograph of the right hip arrived on 3 Mar: record the
    finding'. A midline site is just the site ('CT of the pelvis'); a body part the
    tracker does not map is named as the header said it. The year is said only when
    it is not this year's (`today`, a date)."""
    if _text(site):
        where = words(site) if _text(side) in ("", "midline") else place(site, side)
        where = f"the {where}"
    elif _text(body_part):
        where = f"body part {_text(body_part).lower()}"
        where += f" ({words(side)})" if _text(side) else ""
    else:
        where = "an unnamed site"
    when = f"{day.day} {day:%b}"
    if today is not None and getattr(today, "year", day.year) != day.year:
        when += f" {day.year}"
    return f"{words(modality)} of {where} arrived on {when}: record the finding"


def team(name: Any) -> str:
    """A team's stored name (often a slug) as words: 'spinal_unit' -> 'spinal unit'."""
    return re.sub(r"[_]+", " ", _text(name)).strip()


def meaning(value: Any) -> str:
    """What a value means, in a sentence ('' when its words say it all)."""
    return EXPLANATIONS.get(_text(value), "")


def explained(value: Any) -> str:
    """A value's words with what it means, where that needs saying:
    'lapsed' -> 'lapsed — long past when first planned, not sent'."""
    said = meaning(value)
    return f"{words(value)} — {said}" if said else words(value)


_IRREGULAR = {
    "study": "studies",
    "this": "these",
    "is": "are",
    "was": "were",
    "has": "have",
    "reminder is": "reminders are",
}


def plural(n: int, noun: str, many: str | None = None) -> str:
    """The noun for n things: plural(1, 'patient') -> 'patient', (2) -> 'patients'."""
    if n == 1:
        return noun
    if many is not None:
        return many
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def count(n: int, noun: str, many: str | None = None) -> str:
    """A number with its noun: count(1, 'patient') -> '1 patient', '2 patients'."""
    return f"{n:,} {plural(n, noun, many)}"


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- sentences built by the machine -------------------------------------------------------

_SITES = "hip|knee|elbow|shoulder|thigh|pelvis|spine|ankle|wrist|hand|foot|jaw|other"
_PLACE = re.compile(rf"\b({_SITES}) (left|right|midline)\b")
_DESCRIBED = re.compile(
    r"\b(soft[ _]tissue|calcification|cortex|trabeculae|vascularity|uptake) "
    r"(none|swelling|mass|present|peripheral|zonal|central|disorganised|partial"
    r"|well_defined|yes|no|increased|normal)\b"
)
_HO = re.compile(r"\bHO (present|absent|indeterminate)\b")
_PHASE_RATIO = re.compile(r"\b(flow|blood_pool|delayed) ratio\b")
_PHASE_RATIOS = {
    "flow": "flow-phase ratio",
    "blood_pool": "blood-pool ratio",
    "delayed": "delayed-phase ratio",
}
_TOKEN = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_ABBREVIATIONS = {
    "ct": "CT",
    "mri": "MRI",
    "spect": "SPECT",
    "pet": "PET",
    "alp": "ALP",
    "crp": "CRP",
    "ck": "CK",
    "fop": "FOP",
    "ho": "HO",
    "mrn": "MRN",
    "nsaid": "NSAID",
    "dvt": "DVT",
    "roi": "ROI",
}
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\b")
_ROW_PATH = re.compile(r"\b(findings|sites|measurements|ratios|movements)\[(\d+)\](?:\.([a-z_]+))?")
_SPACED = {"post resection": "after resection", "other nsaid": "other NSAID"}
_SPACED_RE = re.compile(r"\b(" + "|".join(_SPACED) + r")\b")


def _token_words(match: re.Match[str]) -> str:
    token = match.group(0)
    if token in _IN_SENTENCE:
        return _IN_SENTENCE[token]
    return _ALL.get(token, token.replace("_", " "))


def _row_words(match: re.Match[str]) -> str:
    said = f"{_ROW_NOUNS[match.group(1)].lower()} {int(match.group(2)) + 1}"
    return f"{said} {field(match.group(3))}" if match.group(3) else said


def sentence(text: Any) -> str:
    """A sentence the tracker built from values, with its tokens as words:
    'hip right: cortex well_defined' -> 'right hip: well-defined cortex',
    'no alp or bone_alp result before as_of' -> 'no ALP or bone ALP result before
    the as-of date', 'recorded as imaging_study 238' -> 'recorded as imaging study 238'.
    Text that is already words comes back as it was."""
    said = _text(text)
    if not said:
        return ""
    said = _ROW_PATH.sub(_row_words, said)
    said = _DESCRIBED.sub(lambda m: describe(m.group(1).replace(" ", "_"), m.group(2)), said)
    said = _HO.sub(lambda m: describe("ho", m.group(1)), said)
    said = said.replace(" -> ", " → ")
    said = _PHASE_RATIO.sub(lambda m: _PHASE_RATIOS[m.group(1)], said)
    said = _PLACE.sub(lambda m: place(m.group(1), m.group(2)), said)
    said = _SPACED_RE.sub(lambda m: _SPACED[m.group(1)], said)
    said = _TOKEN.sub(_token_words, said)
    return _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(1)], said)


# --- field errors -------------------------------------------------------------------------

# A repeated row of a form, by the name of its list: `findings[1]` is "Finding 2".
_ROW_NOUNS = {
    "findings": "Finding",
    "sites": "Site",
    "measurements": "Ratio",
    "ratios": "Ratio",
    "movements": "Movement",
}
_PATH = re.compile(r"^(?P<rows>[a-z_]+)\[(?P<index>\d+)\]\.(?P<field>[a-z_]+)$")
# Reasons that begin with the verb: the field's name goes in front of them.
_VERBS = (
    "is ",
    "are ",
    "must ",
    "should ",
    "cannot ",
    "can ",
    "has ",
    "needs ",
    "repeats ",
    "does ",
    "was ",
)
# Reasons that begin with an instruction stand alone.
_LEADING_VALUE = re.compile(r"^-?[\d.]+(?:-\d\d-\d\d)? ")
_ORDERS = ("give ", "add ", "choose ", "enter ", "say ", "type ", "use ", "pick ")
_REWORDED = ((" is not a date in the form YYYY-MM-DD", " is not a date: write it as YYYY-MM-DD"),)


@dataclass(frozen=True)
class FieldError:
    """One refused value, in words: `where` names the row of a repeated part of the
    form ("Finding 2 (right hip)"), `says` is the sentence beside the input ("HO is
    required"); str() is the whole sentence for a summary."""

    path: str
    where: str
    says: str

    def __str__(self) -> str:
        return f"{self.where}: {self.says}" if self.where else self.says


def _reason(label: str, reason: str) -> str:
    """`reason` as a sentence about the field called `label`: the field's name goes
    before a reason that starts with the value or the verb ("Ratio -1 must be greater
    than 0", "HO is required"); an instruction, or a reason that names its fields
    itself, stands alone; tokens in it become words."""
    text = reason.strip()
    for old, new in _REWORDED:
        text = text.replace(old, new)
    text = sentence(text)
    first = text.split(" ", 1)[0].lower()
    if text.startswith(_VERBS) or text.startswith("'") or _LEADING_VALUE.match(text):
        return f"{capital(label)} {text}"
    if text.lower().startswith(_ORDERS) or first in FIELDS or first == label.lower():
        return capital(text)
    return f"{capital(label)}: {text}"


def field_error(
    path: str,
    reason: str,
    *,
    values: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> FieldError:
    """The problem `reason` on the input `path`, as a person says it.

    `values` are the submitted form values: they name a row by what was typed in it
    ("Finding 2 (right hip)", "Ratio 1 (delayed phase, left knee)"). `labels` gives a
    form's own name for a top-level field ({'reason': 'Reason for voiding'})."""
    values = values or {}
    labels = labels or {}
    row = _PATH.match(path)
    if row is None:
        label = labels.get(path) or field(path)
        return FieldError(path, "", _reason(label, reason))
    rows, index, name = row.group("rows"), int(row.group("index")), row.group("field")
    noun = _ROW_NOUNS.get(rows, capital(words(rows).rstrip("s")))
    prefix = f"{rows}[{index}]."
    context = []
    if values.get(prefix + "phase"):
        context.append(describe("phase", values[prefix + "phase"]))
    if values.get(prefix + "site") or values.get(prefix + "side"):
        context.append(place(values.get(prefix + "site", ""), values.get(prefix + "side", "")))
    if values.get(prefix + "movement"):
        context.append(words(values[prefix + "movement"]))
    where = f"{noun} {index + 1}" + (f" ({', '.join(context)})" if context else "")
    return FieldError(path, where, _reason(field(name), reason))


def field_errors(
    problems: Iterable[Any],
    *,
    values: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[FieldError]:
    """Each problem (anything with `field` and `reason`, as tracker.errors.Problem) in
    words, in the order given."""
    return [field_error(p.field, p.reason, values=values, labels=labels) for p in problems]


def summary(marked: int, unmarked: int = 0) -> str:
    """The first line of a refused form's error box, above the list of problems:
    `marked` problems sit beside an input the form shows, `unmarked` ones (a list left
    empty, a stale version) belong to none. It says "Fix the 1 field marked below."
    only when that field is marked."""
    if marked and unmarked:
        return f"Fix these problems ({count(marked, 'field')} {plural(marked, 'is')} marked below):"
    if marked:
        return f"Fix the {count(marked, 'field')} marked below."
    return "Fix these:" if unmarked > 1 else "Fix this:"
