"""The one Jinja2 set-up shared by the surgeon reports and the web app: escaping on,
undefined names an error, tidy whitespace, and vocabulary values shown as words
(the words themselves live in `tracker.labels`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tracker import labels

# Kept for callers that read them here; the one table is tracker.labels.
LABELS = labels.VALUES
EXPLANATIONS = labels.EXPLANATIONS


def words(value: Any) -> str:
    """vocab values as words: 'insufficient_data' -> 'insufficient data',
    'not_applicable' -> 'no HO', 'ct' -> 'CT'."""
    return labels.words(value)


def meaning(value: Any) -> str:
    """What a value means, in a sentence ('' when its words say it all)."""
    return labels.meaning(value)


def explained(value: Any) -> str:
    """A value's words with what it means, where that needs saying:
    'lapsed' -> 'lapsed — long past when first planned, not sent'."""
    return labels.explained(value)


def marked_fields(
    errors: Mapping[str, Any],
    fields: Iterable[Any] = (),
    rows_name: str | None = None,
    row_fields: Iterable[Any] = (),
    rows: int = 0,
) -> int:
    """How many of the `errors` (input name -> message) sit beside an input the form
    shows: its top fields and `rows` repeated rows. A problem on anything else (the
    version, a whole list) is not "marked below"."""
    shown = {f.name for f in fields}
    if rows_name:
        shown |= {f"{rows_name}[{i}].{f.name}" for i in range(rows) for f in row_fields}
    return sum(1 for name in errors if name in shown)


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
    env.filters["rule"] = labels.rule
    env.filters["entity"] = labels.entity
    env.filters["field"] = labels.field
    env.filters["team"] = labels.team
    env.filters["sentence"] = labels.sentence
    env.filters["capital"] = labels.capital
    env.filters["count"] = labels.count
    env.filters["plural"] = labels.plural
    env.globals["place"] = labels.place
    env.globals["arrived"] = labels.arrived
    env.globals["describe"] = labels.describe
    env.globals["marked_fields"] = marked_fields
    env.globals["error_summary"] = labels.summary
    return env
