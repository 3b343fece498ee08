"""Words, not tokens: every vocabulary value, rule, record kind and field has words of
its own in tracker.labels, and the sentences built from them read as a person says
them. A new value added to the vocabulary without words fails here."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
from sqlmodel import SQLModel

import tracker.store.models  # noqa: F401  (registers every table)
from tracker import labels, vocab
from tracker.errors import Problem, ValidationFailed
from tracker.interchange.csv_format import FORMATS
from tracker.protocol import CriterionName, Level
from tracker.reminders import mail, rules
from tracker.staging.activity import Activity
from tracker.staging.flags import Flag
from tracker.staging.readiness import Readiness, Status
from tracker.staging.stage import Stage
from tracker.templating import words
from tracker.web import formspec

# Abbreviations a clinician reads in capitals, whatever the stored token.
ABBREVIATIONS = {"ct", "mri", "spect", "pet", "alp", "crp", "ck", "fop"}


def vocabulary_enums() -> list[type[StrEnum]]:
    """Every StrEnum of tracker/vocab.py, plus the ones the core and the mail add."""
    found = [
        value
        for value in vars(vocab).values()
        if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
    ]
    assert len(found) >= 20, "vocab.py is walked for its enumerations"
    return [*found, Stage, Activity, Readiness, Status, Flag, Level, CriterionName, mail.Outcome]


VALUES = sorted({m.value for enum in vocabulary_enums() for m in enum})


@pytest.mark.parametrize("token", VALUES)
def test_every_vocabulary_value_has_words_of_its_own(token: str) -> None:
    assert labels.has_words(token), f"add words for '{token}' to tracker/labels.py VALUES"
    said = labels.words(token)
    assert said and "_" not in said
    if "_" in token or token in ABBREVIATIONS:
        assert said != token
    if token in ABBREVIATIONS:
        assert token.upper() in said


def test_the_words_people_asked_for_are_the_ones_shown() -> None:
    assert labels.words("spinal_cord_injury") == "spinal cord injury"
    assert labels.describe("cortex", "well_defined") == "well-defined cortex"
    assert labels.words("bone_scan") == "bone scan"
    assert [labels.words(m) for m in ("ct", "mri", "spect", "pet")] == ["CT", "MRI", "SPECT", "PET"]
    assert [labels.words(a) for a in vocab.Analyte] == ["ALP", "bone ALP", "CRP", "CK", "D-dimer"]
    assert labels.words("fop").startswith("FOP (fibrodysplasia ossificans progressiva)")
    assert labels.words("not_ready") == "not ready"
    assert labels.words("not_applicable") == "no HO"
    assert labels.rule("maturity_bone_scan") == "bone scan for maturity"
    assert labels.entity("imaging_study") == "imaging study"
    assert labels.field("as_of") == "as-of date"
    assert labels.field("ho") == "HO"
    assert labels.field("size_mm") == "size (mm)"
    assert labels.field("ref_high") == "upper reference limit"
    assert "_" not in labels.words("required_if_known")
    assert labels.words("required_if_known") != "required if known"


@pytest.mark.parametrize("rule", sorted({*rules.RULES, *(r.value for r in vocab.ReminderRule)}))
def test_every_reminder_rule_has_words(rule: str) -> None:
    assert rule in labels.RULES, f"add words for the rule '{rule}' to tracker/labels.py RULES"
    assert labels.rule(rule) != rule and "_" not in labels.rule(rule)
    assert words(rule) == labels.rule(rule)  # the |words filter knows rules too


@pytest.mark.parametrize("table", sorted(SQLModel.metadata.tables))
def test_every_record_kind_has_words(table: str) -> None:
    assert table in labels.ENTITIES, f"add words for the table '{table}' to ENTITIES"
    assert "_" not in labels.entity(table)


def form_and_file_fields() -> list[str]:
    """Every CSV column and every input of every form (a bone scan's phase grid too)."""
    names = {c for fmt in FORMATS for c in fmt.column_names}
    specs = [v for v in vars(formspec).values() if isinstance(v, formspec.FormSpec)]
    for spec in specs:
        names |= {f.name for f in (*spec.fields, *spec.row_fields)}
        grid = getattr(spec, "grid_fields", ())
        names |= {f"{line}_{f.name}" for line in getattr(spec, "grid_rows", ()) for f in grid}
    names |= {f.name for f in formspec.NEW_USER}
    names |= {formspec.TOKEN_NAME.name, formspec.PROTOCOL_TEXT.name}
    return sorted(names)


@pytest.mark.parametrize("name", form_and_file_fields())
def test_every_form_and_file_field_has_words(name: str) -> None:
    assert labels.field(name) != name.replace("_", " ") or name in labels.FIELDS, (
        f"add words for the field '{name}' to FIELDS"
    )
    assert "_" not in labels.field(name)


def test_a_bone_scan_phase_grid_names_its_phase() -> None:
    assert labels.field("delayed_ratio") == "delayed-phase ratio"
    typed = {"sites[1].site": "knee", "sites[1].side": "right"}
    said = labels.field_error("sites[1].delayed_ratio", "0 must be greater than 0", values=typed)
    assert str(said) == "Site 2 (right knee): Delayed-phase ratio 0 must be greater than 0"


def test_templating_words_delegate_to_the_labels_module() -> None:
    for token in ("well_defined", "ct", "not_applicable", "imaging_study", "as_of"):
        assert words(token) == labels.words(token)
    assert words(None) == ""
    assert words("brain_injury_unit") == "brain injury unit"  # a team slug


def test_a_site_reads_side_first_as_at_the_bedside() -> None:
    assert labels.place("hip", "right") == "right hip"
    assert labels.place("spine", "midline") == "midline spine"
    assert labels.place("other", "left") == "left other site"
    assert labels.place("knee", None) == "knee"


@pytest.mark.parametrize(
    ("n", "noun", "said"),
    [(0, "patient", "0 patients"), (1, "patient", "1 patient"), (2, "patient", "2 patients"),
     (1, "study", "1 study"), (3, "study", "3 studies"), (1200, "site", "1,200 sites")],
)  # fmt: skip
def test_counts_have_the_right_plural(n: int, noun: str, said: str) -> None:
    assert labels.count(n, noun) == said


def test_machine_sentences_lose_their_tokens() -> None:
    timeline = "hip right: HO present, soft tissue mass, cortex well_defined, trabeculae yes"
    assert labels.sentence(timeline) == (
        "right hip: HO present, soft-tissue mass, well-defined cortex, trabeculae seen"
    )
    evidence = "no alp or bone_alp result in the 90 days before as_of"
    assert labels.sentence(evidence) == (
        "no ALP or bone ALP result in the 90 days before the as-of date"
    )
    assert labels.sentence("spinal_cord_injury 2023-05-20; no fop recorded") == (
        "spinal cord injury 2023-05-20; no FOP recorded"
    )
    duplicate = "already recorded as imaging_study 238; correct that one instead"
    assert labels.sentence(duplicate) == (
        "already recorded as imaging study 238; correct that one instead"
    )
    assert labels.sentence("Already in words.") == "Already in words."


def findings_typed() -> dict[str, str]:
    return {
        "findings[0].site": "knee", "findings[0].side": "left", "findings[0].ho": "present",
        "findings[1].site": "hip", "findings[1].side": "right", "findings[1].ho": "",
    }  # fmt: skip


def test_a_field_error_names_the_finding_by_its_number_and_site() -> None:
    said = labels.field_error("findings[1].ho", "is required", values=findings_typed())
    assert str(said) == "Finding 2 (right hip): HO is required"
    assert said.says == "HO is required"  # beside the input, inside "Finding 2"


def test_a_ratio_error_names_its_phase_and_site() -> None:
    typed = {"measurements[0].site": "knee", "measurements[0].side": "left",
             "measurements[0].phase": "delayed", "measurements[0].ratio": "-1"}  # fmt: skip
    said = labels.field_error("measurements[0].ratio", "-1 must be greater than 0", values=typed)
    assert str(said) == "Ratio 1 (delayed phase, left knee): Ratio -1 must be greater than 0"


def test_a_form_names_its_own_field_and_no_sentence_starts_with_a_verb() -> None:
    said = labels.field_error(
        "reason", "is required: say why the record is void", labels={"reason": "Reason for voiding"}
    )
    assert str(said) == "Reason for voiding is required: say why the record is void"
    assert str(labels.field_error("findings", "give at least one site finding")) == (
        "Give at least one site finding"
    )
    allowed = labels.field_error("cortex", "'wd' is not one of none, partial, well_defined")
    assert str(allowed) == "Cortex 'wd' is not one of none, partial, well-defined"
    limits = labels.field_error("ref_low", "is greater than ref_high")
    assert str(limits) == "Lower reference limit is greater than upper reference limit"


def test_validation_failed_speaks_in_sentences_and_counts_its_problems() -> None:
    one = ValidationFailed([Problem("imaging_study", None, "findings[1].ho", "is required")])
    assert str(one).startswith("1 problem found: ")
    assert one.sentences(findings_typed()) == ["Finding 2 (right hip): HO is required"]
    two = ValidationFailed([Problem("labs.csv", 3, "analyte", "is required")] * 2)
    assert str(two).startswith("2 problems found: ")
    assert two.sentences() == ["labs.csv line 3: Analyte is required"] * 2


@pytest.mark.parametrize(
    ("marked", "unmarked", "said"),
    [(1, 0, "Fix the 1 field marked below."), (2, 0, "Fix the 2 fields marked below."),
     (0, 1, "Fix this:"), (0, 2, "Fix these:"),
     (1, 1, "Fix these problems (1 field is marked below):"),
     (2, 1, "Fix these problems (2 fields are marked below):")],
)  # fmt: skip
def test_the_error_summary_counts_only_fields_that_are_marked(
    marked: int, unmarked: int, said: str
) -> None:
    assert labels.summary(marked, unmarked) == said


def test_reminder_mail_names_the_rule_and_site_in_words() -> None:
    assert mail.reminder_words("maturity_bone_scan", "hip", "right") == (
        "bone scan for maturity",
        " (right hip)",
    )
    line = mail.digest_line(
        {"id": 7, "mrn": "A1", "rule": "post_resection_prophylaxis", "site": "elbow",
         "side": "left", "due": "2026-11-02", "status": "due"}
    )  # fmt: skip
    assert line == "- #7 A1 prophylaxis after resection (left elbow) due 2026-11-02 (due)"
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", line)
    assert mail.digest_subject("spinal_unit", "2026-11-02", 1) == (
        "HO tracker: 1 open reminder for spinal_unit (2026-11-02)"
    )
    assert mail.why_words("radiotherapy (post resection) from 2025-03-13") == (
        "radiotherapy (after resection) from 2025-03-13"
    )
