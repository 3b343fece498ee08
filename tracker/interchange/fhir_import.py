"""FHIR import: a Bundle (as `fhir_export` writes it) back into the store.

The Bundle is turned into interchange rows (the nine CSV files) and handed to the
CSV import, so a Bundle is checked by exactly the rules a CSV folder is, re-import
adds nothing (natural keys) and the whole Bundle is stored in one transaction or
not at all. Every problem the CSV import finds is reported at the FHIR element the
value came from (`Bundle.entry[3].resource.component[brooker].valueInteger`).

Read: Patient, Condition (injuries; the derived HO Conditions are summaries and
are skipped), ImagingStudy (with its indication), Observation (site findings, bone
scans, labs, bedside examinations and range of motion; the derived `stage` component
is skipped), MedicationStatement and Procedure (courses and procedures).
ServiceRequests (the tracker's imaging reminders, `fhir_requests`) are skipped:
reminders are planned from the records, never imported. Anything else is refused,
as is a reference that points at no entry of the Bundle and a code that names no
word of the tracker's vocabulary.

Hostile input (issue 15) is refused in words, never with a traceback: a file that is
not JSON (with its line and column), JSON nested deeper than `MAX_DEPTH` (counted
without recursion before `json.loads` or fhir.resources could recurse), a top level
that is not a Bundle, an entry whose resourceType is missing, unknown to FHIR R4 or
not one the tracker reads (each named by its entry), and whatever fhir.resources
refuses (named by its element).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.engine import Engine

from tracker import vocab
from tracker.errors import Problem, ValidationFailed
from tracker.interchange import csv_format as fmt
from tracker.interchange import fhir_codes as codes
from tracker.interchange.csv_export import text_columns, write_csv
from tracker.interchange.csv_format import format_number
from tracker.interchange.csv_import import ImportAudit, ImportSummary, import_folder
from tracker.progress import Progress

SUPPORTED = (
    "Patient",
    "Condition",
    "ImagingStudy",
    "Observation",
    "MedicationStatement",
    "Procedure",
)
# Derived from the records and skipped on import (the next plan run makes them again).
SKIPPED = ("ServiceRequest",)
Resource = dict[str, Any]

# Deepest nesting of JSON arrays and objects read. A tracker Bundle needs about a dozen
# levels; far deeper input is hostile (json.loads and pydantic recurse into it).
MAX_DEPTH = 64


@dataclass
class _Row:
    """One interchange row and, per column, the FHIR element it came from."""

    values: dict[str, str]
    paths: dict[str, str]
    entry: str


@dataclass
class _Reading:
    source: str
    problems: list[Problem] = field(default_factory=list)
    rows: dict[str, list[_Row]] = field(default_factory=lambda: {f.name: [] for f in fmt.FORMATS})

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(Problem(self.source, None, path, reason))


def import_bundle_file(
    engine: Engine,
    path: Path,
    *,
    today: dt.date | None = None,
    progress: Progress | None = None,
    audit: ImportAudit | None = None,
) -> ImportSummary:
    """Validate and store a Bundle file; ValidationFailed names file and element."""
    source = path.name
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        reason = f"cannot be read: {error}"
        raise ValidationFailed([Problem(source, None, "Bundle", reason)]) from None
    except UnicodeDecodeError as error:
        reason = f"is not JSON: it is not UTF-8 text (byte {error.start + 1})"
        raise ValidationFailed([Problem(source, None, "Bundle", reason)]) from None
    document = parse_json(text, source)
    return import_bundle(
        engine, document, source=source, today=today, progress=progress, audit=audit
    )


def import_bundle(
    engine: Engine,
    document: Any,
    *,
    source: str = "bundle",
    today: dt.date | None = None,
    progress: Progress | None = None,
    audit: ImportAudit | None = None,
) -> ImportSummary:
    """Validate and store a Bundle given as parsed JSON; all or nothing (`audit`: as
    `import_folder`'s, in the import's transaction)."""
    reading = read_bundle(document, source)
    if reading.problems:
        raise ValidationFailed(reading.problems)
    with tempfile.TemporaryDirectory(prefix="ho-fhir-") as folder:
        origin = _write_tables(reading, Path(folder))
        try:
            return import_folder(engine, Path(folder), today=today, progress=progress, audit=audit)
        except ValidationFailed as failed:
            raise ValidationFailed(
                [_at_element(p, origin, source) for p in failed.problems]
            ) from None


def parse_json(text: str, source: str) -> Any:
    """`text` as JSON, or ValidationFailed in words: where it stops being JSON (line
    and column), or that it nests deeper than MAX_DEPTH (checked first, without
    recursion: json.loads recurses, and raises RecursionError near 1000 levels)."""

    def refuse(reason: str) -> ValidationFailed:
        return ValidationFailed([Problem(source, None, "Bundle", reason)])

    depth = _text_depth(text)
    if depth > MAX_DEPTH:
        raise refuse(_too_deep(depth))  # the text's count, brackets outside strings
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise refuse(
            f"is not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except (ValueError, RecursionError) as error:  # NaN, a 5000-digit number, ...
        said = str(error).split(";")[0] or type(error).__name__
        raise refuse(f"is not JSON the tracker can read: {said}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# A JSON string (escapes included), so the brackets inside text are not counted.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _text_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON `text` nest, counted without parsing
    (an unclosed string only makes the count too high, and such text is no JSON)."""
    steps = (1 if b in "[{" else -1 for b in _BRACKET.findall(_JSON_STRING.sub("", text)))
    return max(itertools.accumulate(steps, initial=0))


def _document_depth(document: Any) -> int:
    """How deeply parsed JSON nests, walked without recursion; stops past MAX_DEPTH."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(depth: int) -> str:
    found = f"{depth} levels" if depth > MAX_DEPTH + 1 else f"more than {MAX_DEPTH} levels"
    return f"nests arrays and objects {found} deep; a tracker Bundle needs at most {MAX_DEPTH}"


def read_bundle(document: Any, source: str) -> _Reading:
    """The Bundle's interchange rows, or the problems that stop it being read."""
    reading = _Reading(source)
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        found = _json_kind(document)
        if isinstance(document, dict):
            kind = document.get("resourceType")
            found = f"a {_shown(kind)}" if kind else "an object without a resourceType"
        reading.problem("Bundle.resourceType", f"the file must hold one FHIR Bundle, not {found}")
        return reading
    depth = _document_depth(document)
    if depth > MAX_DEPTH:
        reading.problem("Bundle", _too_deep(depth))
        return reading
    _check_entries(reading, document)
    if reading.problems:
        return reading  # fhir.resources fails on these with a KeyError, not words
    try:
        Bundle.model_validate(document)
    except pydantic.ValidationError as error:
        for item in error.errors()[:50]:
            reading.problem(_element(item["loc"]), f"is not valid FHIR R4: {item['msg']}")
        return reading
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        # e.g. a contained resource of a type FHIR R4 has not (KeyError 'R4.FooType')
        reading.problem("Bundle", f"is not valid FHIR R4 ({type(error).__name__}: {_shown(error)})")
        return reading
    entries = document.get("entry") or []
    targets = _targets(entries)
    patients = {url for url, (kind, _, _) in targets.items() if kind == "Patient"}
    for index, entry in enumerate(entries):
        at = f"Bundle.entry[{index}].resource"
        resource = _Resource(reading, entry["resource"], at, targets, patients)
        try:
            resource.read()
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # valid FHIR the readers did not foresee the shape of: refused, not a traceback
            said = f"{type(error).__name__}: {_shown(error)}"
            reading.problem(at, f"cannot be read by the tracker ({said})")
    return reading


def _check_entries(reading: _Reading, document: Resource) -> None:
    """Each entry holds one resource of a type the tracker reads: a missing, unknown or
    unsupported resourceType is refused, naming the entry."""
    entries = document.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        reading.problem("Bundle.entry", f"must be a list of entries, not {_json_kind(entries)}")
        return
    supported = ", ".join(SUPPORTED)
    for index, entry in enumerate(entries):
        at = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            reading.problem(at, f"must be an object with a resource, not {_json_kind(entry)}")
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            found = "missing" if resource is None else f"{_json_kind(resource)}, not an object"
            reading.problem(f"{at}.resource", f"is {found}; each entry holds one resource")
            continue
        kind = resource.get("resourceType")
        path = f"{at}.resource.resourceType"
        if kind is None or kind == "":
            reading.problem(path, f"is required: the type of the resource ({supported})")
        elif not isinstance(kind, str):
            reading.problem(path, f"must be the name of a resource type, not {_json_kind(kind)}")
        elif kind not in SUPPORTED and kind not in SKIPPED:
            known = _is_fhir_type(kind)
            what = "is not supported" if known else "is not a FHIR R4 resource type"
            reading.problem(path, f"'{_shown(kind)}' {what}; a tracker Bundle holds {supported}")


def _is_fhir_type(name: str) -> bool:
    try:
        get_fhir_model_class(name)
    except (KeyError, ValueError):
        return False
    return True


def _shown(value: Any) -> str:
    """A value quoted in a refusal, cut short: the words must stay readable."""
    text = str(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _json_kind(value: Any) -> str:
    """What a JSON value is, in words (for a refusal)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    kinds = {dict: "an object", list: "an array", str: "a string", int: "a number"}
    return kinds.get(type(value), "a number" if isinstance(value, float) else "a value")


def _element(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location under the Bundle: Bundle.entry.0.resource.gender."""
    return ".".join(["Bundle", *(str(part) for part in loc)])


Targets = dict[str, tuple[str, Resource, int]]


def _targets(entries: list[dict[str, Any]]) -> Targets:
    """Every way an entry can be referred to (its fullUrl, Type/id): kind, resource, index."""
    found: Targets = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType", "")
        if entry.get("fullUrl"):
            found[entry["fullUrl"]] = (kind, resource, index)
        if resource.get("id"):
            found[f"{kind}/{resource['id']}"] = (kind, resource, index)
    return found


class _Resource:
    """Reads one resource into interchange rows, noting each value's element."""

    def __init__(
        self,
        reading: _Reading,
        resource: Resource,
        at: str,
        targets: Targets,
        patients: set[str],
    ) -> None:
        self.reading, self.resource, self.at = reading, resource, at
        self.targets, self.patients = targets, patients
        self.values: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        self.ok = True

    def problem(self, path: str, reason: str) -> None:
        self.ok = False
        self.reading.problem(path, reason)

    def set(self, column: str, value: str | None, path: str) -> None:
        self.values[column] = value or ""
        self.paths[column] = path

    def emit(self, file: fmt.FileFormat) -> None:
        if self.ok:
            self.reading.rows[file.name].append(_Row(dict(self.values), dict(self.paths), self.at))

    # --- dispatch ---

    def read(self) -> None:
        kind = self.resource["resourceType"]
        if kind in SKIPPED:
            return
        if kind == "Patient":
            self._patient()
            return
        self._subject()
        if kind == "ImagingStudy":
            return  # read with each of its findings
        record = self._record_category()
        if record is None:
            return
        if kind == "Condition":
            if record == codes.HO_SITE:
                return  # a summary of the findings, not a record of its own
            self._expect(record, (codes.INJURY,))
            self._injury()
        elif kind == "Observation":
            readers = {
                codes.FINDING: self._finding,
                codes.BONE_SCAN: self._bone_scan,
                codes.LAB: self._lab,
                codes.EXAM: self._exam,
                codes.ROM: self._range_of_motion,
            }
            self._expect(record, tuple(readers))
            readers.get(record, lambda: None)()
        elif kind == "MedicationStatement":
            self._expect(record, (codes.COURSE,))
            self._medication_course()
        else:
            self._expect(record, (codes.COURSE, codes.PROCEDURE))
            if record == codes.COURSE:
                self._procedure_course()
            elif record == codes.PROCEDURE:
                self._procedure()

    def _record_category(self) -> str | None:
        category = self.resource.get("category")
        concepts = category if isinstance(category, list) else [category] if category else []
        for concept in concepts:
            for c in concept.get("coding", []):
                if c.get("system") == codes.RECORD:
                    return str(c.get("code"))
        self.problem(
            f"{self.at}.category",
            f"has no coding from {codes.RECORD}, so the tracker cannot tell which record "
            "this is; export it with ho-tracker or add that category",
        )
        return None

    def _expect(self, record: str, allowed: tuple[str, ...]) -> None:
        if record not in allowed:
            self.problem(
                f"{self.at}.category",
                f"'{record}' is not a record a {self.resource['resourceType']} can hold "
                f"here; expected {', '.join(allowed)}",
            )

    # --- shared elements ---

    def _subject(self) -> None:
        reference = (self.resource.get("subject") or {}).get("reference")
        path = f"{self.at}.subject"
        if not reference:
            self.problem(path, "is required: the Patient entry this record belongs to")
            return
        if reference not in self.patients:
            self.problem(path, f"'{reference}' refers to no Patient entry in this Bundle")
            return
        self.set("mrn", _mrn_of(self.targets[reference][1]), path)

    def word(self, concept: Any, system: str, path: str, column: str) -> None:
        """A vocabulary word from a CodeableConcept: the tracker coding, or a standard
        code with a one-to-one tracker word. Words outside the vocabulary are refused
        by the CSV checks, with the allowed values listed."""
        codings = (concept or {}).get("coding", []) if isinstance(concept, dict) else []
        for c in codings:
            if c.get("system") == system:
                self.set(column, str(c.get("code", "")), f"{path}.coding")
                return
        for c in codings:
            word = codes.READ_BACK.get(system, {}).get(c.get("system", ""), {}).get(c.get("code"))
            if word:
                self.set(column, word, f"{path}.coding")
                return
        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "no coding"
        self.problem(
            path,
            f"{shown} is outside the tracker's vocabulary; use a coding from {system} "
            f"({', '.join(codes.vocabulary_words(system))})",
        )

    def date(self, value: Any, path: str, column: str, required: bool = True) -> None:
        text = str(value) if value else ""
        if not text and required:
            self.problem(path, "is required")
            return
        # A dateTime keeps only its calendar day: clinical dates are days (model-spec 2).
        self.set(column, text[:10], path)

    def number(self, value: Any, path: str, column: str) -> None:
        if value is None or value == "":
            self.set(column, "", path)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"'{value}' is not a number")
        else:
            self.set(column, format_number(float(value)), path)

    def note(self, path_base: str) -> None:
        notes = self.resource.get("note") or []
        text = "\n".join(n.get("text", "") for n in notes if n.get("text"))
        self.set("notes", text, f"{path_base}.note")

    def body_site(self, concept: Any, path: str) -> None:
        self.word(concept, codes.SITE, path, "site")
        laterality = _extension(concept, codes.LATERALITY_EXT)
        if laterality is None:
            self.problem(path, f"has no laterality extension ({codes.LATERALITY_EXT})")
            return
        self.word(
            laterality.get("valueCodeableConcept"),
            codes.SIDE,
            f"{path}.extension[laterality].valueCodeableConcept",
            "side",
        )

    # --- one reader per interchange file ---

    def _patient(self) -> None:
        r, at = self.resource, self.at
        self.set("mrn", _mrn_of(r), f"{at}.identifier")
        if not self.values["mrn"]:
            self.problem(f"{at}.identifier", f"needs an identifier with system {codes.MRN_SYSTEM}")
        name = (r.get("name") or [{}])[0]
        self.set("family_name", name.get("family"), f"{at}.name[0].family")
        self.set("given_name", " ".join(name.get("given") or []), f"{at}.name[0].given")
        self.set("sex", r.get("gender"), f"{at}.gender")
        self.set("birth_date", r.get("birthDate"), f"{at}.birthDate")
        team = _extension(r, codes.TEAM_EXT)
        self.set("team", (team or {}).get("valueString"), f"{at}.extension[team]")
        self.emit(fmt.PATIENTS)

    def _injury(self) -> None:
        r, at = self.resource, self.at
        self.word(r.get("code"), codes.INJURY_KIND, f"{at}.code", "kind")
        self.date(r.get("onsetDateTime"), f"{at}.onsetDateTime", "date")
        self.note(at)
        self.emit(fmt.INJURIES)

    def _finding(self) -> None:
        r, at = self.resource, self.at
        study = self._study()
        if study is None:
            return
        study_resource, study_at = study
        self.date(study_resource.get("started"), f"{study_at}.started", "date")
        modality = _extension(study_resource, codes.MODALITY_EXT)
        if modality is not None:
            self.set("modality", modality.get("valueCode"), f"{study_at}.extension[modality]")
        else:
            self.word(
                {"coding": study_resource.get("modality") or []},
                codes.MODALITY,
                f"{study_at}.modality",
                "modality",
            )
        accession = next(
            (
                i.get("value")
                for i in study_resource.get("identifier") or []
                if any(c.get("code") == "ACSN" for c in (i.get("type") or {}).get("coding", []))
            ),
            None,
        )
        self.set("accession", accession, f"{study_at}.identifier")
        reasons = study_resource.get("reasonCode") or []
        if reasons:
            path = f"{study_at}.reasonCode[0]"
            self.word(reasons[0], codes.INDICATION, path, "indication")
        else:
            self.set("indication", "", f"{study_at}.reasonCode")
        self.body_site(r.get("bodySite"), f"{at}.bodySite")
        self.word(r.get("valueCodeableConcept"), codes.HO, f"{at}.valueCodeableConcept", "ho")
        components = self._components((*codes.FINDING_WORDS, "brooker", "size_mm", "stage"))
        for name in codes.FINDING_WORDS:
            item, path = components.get(name, ({}, ""))
            value = _code_of(item.get("valueCodeableConcept"), codes.ELEMENT)
            self.set(name, value, f"{path}.valueCodeableConcept")
        brooker, path = components.get("brooker", ({}, ""))
        self.number(brooker.get("valueInteger"), f"{path}.valueInteger", "brooker")
        size, path = components.get("size_mm", ({}, ""))
        self.number(
            (size.get("valueQuantity") or {}).get("value"), f"{path}.valueQuantity", "size_mm"
        )
        self.note(at)
        self.emit(fmt.IMAGING)

    def _study(self) -> tuple[Resource, str] | None:
        derived = self.resource.get("derivedFrom") or []
        path = f"{self.at}.derivedFrom"
        if not derived:
            self.problem(path, "is required: the ImagingStudy this finding was read from")
            return None
        reference = derived[0].get("reference", "")
        kind, study, index = self.targets.get(reference, ("", {}, -1))
        if kind != "ImagingStudy":
            self.problem(f"{path}[0]", f"'{reference}' refers to no ImagingStudy in this Bundle")
            return None
        return study, f"Bundle.entry[{index}].resource"

    def _components(self, allowed: tuple[str, ...]) -> dict[str, tuple[dict[str, Any], str]]:
        """Components by name; one the tracker has no column for is refused, not dropped."""
        found = {}
        for index, item in enumerate(self.resource.get("component") or []):
            name = _code_of(item.get("code"), codes.ELEMENT) or _read_back(
                item.get("code"), codes.ELEMENT
            )
            if name not in allowed:
                self.problem(
                    f"{self.at}.component[{index}].code",
                    f"'{name}' is not one of the components the tracker stores here "
                    f"(codes from {codes.ELEMENT}: {', '.join(allowed)})",
                )
                continue
            found[name] = (item, f"{self.at}.component[{name}]")
        return found

    def _bone_scan(self) -> None:
        r, at = self.resource, self.at
        self.date(r.get("effectiveDateTime"), f"{at}.effectiveDateTime", "date")
        self.body_site(r.get("bodySite"), f"{at}.bodySite")
        components = self._components(
            ("phase", "lesion_counts", "reference_counts", "reference_region")
        )
        phase, path = components.get("phase", ({}, f"{at}.component[phase]"))
        self.word(
            phase.get("valueCodeableConcept"), codes.PHASE, f"{path}.valueCodeableConcept", "phase"
        )
        self.number((r.get("valueQuantity") or {}).get("value"), f"{at}.valueQuantity", "ratio")
        for name in ("lesion_counts", "reference_counts"):
            item, path = components.get(name, ({}, ""))
            self.number(
                (item.get("valueQuantity") or {}).get("value"), f"{path}.valueQuantity", name
            )
        region, path = components.get("reference_region", ({}, ""))
        self.set("reference_region", region.get("valueString"), f"{path}.valueString")
        self.emit(fmt.BONE_SCANS)

    def _lab(self) -> None:
        r, at = self.resource, self.at
        self.date(r.get("effectiveDateTime"), f"{at}.effectiveDateTime", "date")
        self.word(r.get("code"), codes.ANALYTE, f"{at}.code", "analyte")
        quantity = r.get("valueQuantity") or {}
        self.number(quantity.get("value"), f"{at}.valueQuantity.value", "value")
        self._lab_unit(quantity, f"{at}.valueQuantity")
        reference = (r.get("referenceRange") or [{}])[0]
        for bound, column in (("low", "ref_low"), ("high", "ref_high")):
            self.number(
                (reference.get(bound) or {}).get("value"), f"{at}.referenceRange[0].{bound}", column
            )
        self.emit(fmt.LABS)

    def _exam(self) -> None:
        r, at = self.resource, self.at
        self.date(r.get("effectiveDateTime"), f"{at}.effectiveDateTime", "date")
        self.body_site(r.get("bodySite"), f"{at}.bodySite")
        components = self._components((*vocab.EXAM_SIGNS, "pain"))
        for sign in vocab.EXAM_SIGNS:
            item, path = components.get(sign, ({}, f"{at}.component[{sign}]"))
            concept, seen = item.get("valueCodeableConcept"), item.get("valueBoolean")
            if concept is not None:
                self.word(concept, codes.SIGN, f"{path}.valueCodeableConcept", sign)
            elif seen is not None:  # another system's true / false
                self.set(sign, "yes" if seen else "no", f"{path}.valueBoolean")
            elif item:
                self.problem(path, "needs a valueCodeableConcept (yes or no)")
            else:
                self.set(sign, "", path)
        pain, path = components.get("pain", ({}, f"{at}.component[pain]"))
        if pain and pain.get("valueInteger") is None:
            self.problem(path, "needs a valueInteger (the 0-10 rating)")
        self.number(pain.get("valueInteger"), f"{path}.valueInteger", "pain")
        self.note(at)
        self.emit(fmt.EXAMS)

    def _range_of_motion(self) -> None:
        r, at = self.resource, self.at
        self.date(r.get("effectiveDateTime"), f"{at}.effectiveDateTime", "date")
        self.body_site(r.get("bodySite"), f"{at}.bodySite")
        self.word(r.get("code"), codes.MOVEMENT, f"{at}.code", "movement")
        quantity = r.get("valueQuantity") or {}
        path = f"{at}.valueQuantity"
        code, unit = quantity.get("code"), quantity.get("unit")
        if (code or unit or codes.DEGREES) not in (codes.DEGREES, "°", "degrees"):
            self.problem(
                f"{path}.{'code' if code else 'unit'}",
                f"'{_shown(code or unit)}' is not a unit of range of motion; "
                f"degrees are written as UCUM '{codes.DEGREES}'",
            )
        self.number(quantity.get("value"), f"{path}.value", "degrees")
        self.emit(fmt.ROM)

    def _lab_unit(self, quantity: dict[str, Any], path: str) -> None:
        """The unit from its UCUM code when there is one (the display text may say
        `µg/L` for the code `ug/L`), else from the unit text. The CSV checks then hold
        it to its analyte's units (model-spec v2, section 1), at the element it came
        from; the only rewriting is UCUM's annotation braces (`mg/L{FEU}`)."""
        code = quantity.get("code")
        if quantity.get("system") == codes.UCUM and isinstance(code, str) and code:
            self.set("unit", _UCUM_ANNOTATION.sub(r" \1", code), f"{path}.code")
        else:
            self.set("unit", quantity.get("unit"), f"{path}.unit")

    def _course_common(self, agent: Any, agent_path: str) -> None:
        r, at = self.resource, self.at
        self.word(agent, codes.AGENT, agent_path, "agent")
        reasons = r.get("reasonCode") or []
        self.word(reasons[0] if reasons else None, codes.INTENT, f"{at}.reasonCode[0]", "intent")
        weeks = _extension(r, codes.PLANNED_WEEKS_EXT) or {}
        self.number(weeks.get("valueDecimal"), f"{at}.extension[planned-weeks]", "planned_weeks")

    def _period(self, period: Any, path: str) -> None:
        period = period or {}
        self.date(period.get("start"), f"{path}.start", "start_date")
        self.date(period.get("end"), f"{path}.end", "end_date", required=False)

    def _site_or_blank(self, concept: Any, path: str) -> None:
        if concept:
            self.body_site(concept, path)
        else:
            self.set("site", "", path)
            self.set("side", "", path)

    def _medication_course(self) -> None:
        r, at = self.resource, self.at
        self._course_common(r.get("medicationCodeableConcept"), f"{at}.medicationCodeableConcept")
        self._period(r.get("effectivePeriod"), f"{at}.effectivePeriod")
        dosage = (r.get("dosage") or [{}])[0]
        dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity") or {}
        path = f"{at}.dosage[0].doseAndRate[0].doseQuantity"
        self.number(dose.get("value"), f"{path}.value", "dose")
        self.set("dose_unit", dose.get("unit"), f"{path}.unit")
        self._site_or_blank(dosage.get("site"), f"{at}.dosage[0].site")
        self.emit(fmt.TREATMENTS)

    def _procedure_course(self) -> None:
        r, at = self.resource, self.at
        self._course_common(r.get("code"), f"{at}.code")
        self._period(r.get("performedPeriod"), f"{at}.performedPeriod")
        dose = (_extension(r, codes.DOSE_EXT) or {}).get("valueQuantity") or {}
        self.number(dose.get("value"), f"{at}.extension[dose].valueQuantity.value", "dose")
        self.set("dose_unit", dose.get("unit"), f"{at}.extension[dose].valueQuantity.unit")
        self._site_or_blank((r.get("bodySite") or [None])[0], f"{at}.bodySite[0]")
        self.emit(fmt.TREATMENTS)

    def _procedure(self) -> None:
        r, at = self.resource, self.at
        self.word(r.get("code"), codes.PROCEDURE_KIND, f"{at}.code", "kind")
        self.date(r.get("performedDateTime"), f"{at}.performedDateTime", "date")
        self.body_site((r.get("bodySite") or [None])[0], f"{at}.bodySite[0]")
        self.note(at)
        self.emit(fmt.PROCEDURES)


_UCUM_ANNOTATION = re.compile(r"\{(FEU|DDU)\}$")  # UCUM writes mg/L FEU as mg/L{FEU}


def _extension(element: Any, url: str) -> dict[str, Any] | None:
    if not isinstance(element, dict):
        return None
    return next((e for e in element.get("extension") or [] if e.get("url") == url), None)


def _code_of(concept: Any, system: str) -> str | None:
    for c in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        if c.get("system") == system:
            return str(c.get("code"))
    return None


def _read_back(concept: Any, system: str) -> str | None:
    """The tracker word a standard coding of `concept` stands for (codes.READ_BACK)."""
    for c in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        word = codes.READ_BACK.get(system, {}).get(c.get("system", ""), {}).get(c.get("code"))
        if word:
            return word
    return None


def _mrn_of(patient: Resource) -> str:
    for identifier in patient.get("identifier") or []:
        if identifier.get("system") == codes.MRN_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return ""


def _write_tables(reading: _Reading, folder: Path) -> dict[tuple[str, int], _Row]:
    """Write the rows as interchange CSVs; remember which element each line came from.

    Written as the CSV export writes (csv_export.write_csv: a lone CR quoted, formula
    text neutralised), which is what the CSV import reads back, so every value reaches
    the import's checks as it stood in the Bundle: `'=x` stays `'=x`, a lone CR keeps its row."""
    origin: dict[tuple[str, int], _Row] = {}
    for file in fmt.FORMATS:
        rows = reading.rows[file.name]
        if not rows and file is not fmt.PATIENTS:
            continue
        columns = file.column_names
        cells = [[row.values.get(c, "") for c in columns] for row in rows]
        frame = pd.DataFrame(cells, columns=columns, dtype=object)
        write_csv(frame, folder / file.name, text=text_columns(file))
        for line, row in enumerate(rows, start=2):
            origin[(file.name, line)] = row
    return origin


def _at_element(problem: Problem, origin: dict[tuple[str, int], _Row], source: str) -> Problem:
    row = origin.get((problem.source, problem.line or 0))
    if row is None:
        return Problem(source, None, f"Bundle ({problem.source})", problem.reason)
    return Problem(source, None, row.paths.get(problem.field, row.entry), problem.reason)
