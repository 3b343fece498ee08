"""Server-rendered pages: one Jinja2 environment, autoescaped."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def _words(value: Any) -> str:
    """vocab values as words: 'insufficient_data' -> 'insufficient data'."""
    return "" if value is None else str(value).replace("_", " ")


def _d(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["j2", "html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["words"] = _words
    env.filters["d"] = _d
    env.globals["urlencode"] = urlencode
    return env


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    csrf = getattr(request.state, "csrf", "")
    html = (
        environment()
        .get_template(template)
        .render(request=request, viewer=viewer, csrf=csrf, path=request.url.path, **context)
    )
    return HTMLResponse(html, status_code=status)
