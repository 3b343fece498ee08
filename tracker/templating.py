"""The one Jinja2 set-up shared by the surgeon reports and the web app: escaping on,
undefined names an error, tidy whitespace, and vocab values shown as words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

# Values whose words are not just the token with spaces (model-spec v2): a site
# without HO has no lesion to resect, so its readiness reads "no HO", never a verdict.
LABELS: dict[str, str] = {
    "not_applicable": "no HO",
    "recurrence": "recurrence after resection",
    "lapsed": "lapsed",
    "passed": "forecast date passed",
}

# What a status means, for the places that explain it beside the word.
EXPLANATIONS: dict[str, str] = {
    "lapsed": "long past when first planned, not sent",
    "passed": "forecast date already passed: a new scan is due",
}


def words(value: Any) -> str:
    """vocab values as words: 'insufficient_data' -> 'insufficient data',
    'not_applicable' -> 'no HO'."""
    if value is None:
        return ""
    text = str(value)
    return LABELS.get(text, text.replace("_", " "))


def meaning(value: Any) -> str:
    """What a value means, in a sentence ('' when its words say it all)."""
    return EXPLANATIONS.get("" if value is None else str(value), "")


def explained(value: Any) -> str:
    """A value's words with what it means, where that needs saying:
    'lapsed' -> 'lapsed — long past when first planned, not sent'."""
    text = "" if value is None else str(value)
    said = meaning(text)
    return f"{words(text)} — {said}" if said else words(text)


def jinja_environment(templates: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates),
        autoescape=select_autoescape(["j2", "html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["words"] = words
    env.filters["explained"] = explained
    env.filters["meaning"] = meaning
    return env
