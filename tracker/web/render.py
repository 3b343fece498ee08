"""Server-rendered pages: one Jinja2 environment, autoescaped."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from tracker.templating import jinja_environment

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def _d(value: dt.date | None) -> str:
    return value.isoformat() if value else ""


@cache
def environment() -> Environment:
    env = jinja_environment(TEMPLATES_DIR)
    env.filters["d"] = _d
    env.globals["urlencode"] = urlencode
    return env


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    from tracker.web.flash import take_notices

    viewer = getattr(request.state, "viewer", None)
    csrf = getattr(request.state, "csrf", "")
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            viewer=viewer,
            csrf=csrf,
            path=request.url.path,
            notices=take_notices(request),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)
