"""The one Jinja2 set-up shared by the surgeon reports and the web app: escaping on,
undefined names an error, tidy whitespace, and vocab values shown as words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


def words(value: Any) -> str:
    """vocab values as words: 'insufficient_data' -> 'insufficient data'."""
    return "" if value is None else str(value).replace("_", " ")


def jinja_environment(templates: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates),
        autoescape=select_autoescape(["j2", "html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["words"] = words
    return env
