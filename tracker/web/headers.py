"""Security headers and the upload limit, on every response (issue 15).

One pure ASGI middleware wraps the whole app (outside Starlette's own error
middleware, so a 500 carries the headers too):

- a Content-Security-Policy with no inline script and no third-party origin, with
  `frame-ancestors 'none'` and `X-Frame-Options: DENY`, `nosniff` and
  `Referrer-Policy: no-referrer`; a report opened in the browser is a standalone
  document with its own inline style and data: figures, so it gets a sandboxed
  policy that allows exactly that and no script at all;
- `Cache-Control: no-store` on everything but /static (revalidated) - pages,
  reports, figures, the API, FHIR, CSV exports and /healthz (a cached probe would
  lie);
- HSTS, and the Secure flag on every cookie, when the settings say the app runs
  behind HTTPS;
- a request body larger than `max_upload_bytes` is refused with 413 before it is
  read into memory: at once by its Content-Length, else (a chunked body) as soon
  as the bytes read pass the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# a report (HTML with its own <style> and data: images) or an SVG figure: no script
DOCUMENT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
)
HSTS = "max-age=31536000; includeSubDomains"
MACHINE_PREFIXES = ("/api/", "/fhir/")


class BodyTooLarge(Exception):
    """Raised to the app when a streamed body passes the limit; it stops the read."""


def size_words(n: int) -> str:
    """20971520 -> '20 MB' (binary units, as a file manager shows them)."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


class SecurityHeaders:
    """The headers above on every HTTP response, and the upload limit."""

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int, behind_https: bool) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.behind_https = behind_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        state = {"started": False, "too_large": False, "refused": False}

        async def send_with_headers(message: Message) -> None:
            if state["too_large"]:  # whatever the app made of the cut-off body
                if not state["refused"]:
                    state["refused"] = True
                    await self._refuse(path, send_with_headers_raw)
                return
            await send_with_headers_raw(message)

        async def send_with_headers_raw(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                message["headers"] = self._headers(path, list(message.get("headers", [])))
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_upload_bytes:
            state["refused"] = True
            await self._refuse(path, send_with_headers_raw)
            return

        read = 0

        async def counting_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_upload_bytes:
                    state["too_large"] = True
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except BodyTooLarge:
            pass
        except Exception:
            if not state["started"]:  # the 500 gets the headers too
                await send_with_headers_raw(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise
        if state["too_large"] and not state["refused"]:
            state["refused"] = True
            await self._refuse(path, send_with_headers_raw)

    def _headers(self, path: str, headers: list[Any]) -> list[Any]:
        names = {bytes(k).lower() for k, _ in headers}
        content_type = dict((bytes(k).lower(), bytes(v)) for k, v in headers).get(
            b"content-type", b""
        )
        document = b"content-disposition" in names and content_type.startswith(b"text/html")
        document = document or content_type.startswith(b"image/svg")
        out = [(k, v) for k, v in headers if bytes(k).lower() != b"cache-control"]
        out.append(
            (b"content-security-policy", (DOCUMENT_POLICY if document else PAGE_POLICY).encode())
        )
        out += [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-cache" if path.startswith("/static/") else b"no-store"),
        ]
        if self.behind_https:
            out.append((b"strict-transport-security", HSTS.encode()))
            out = [
                (k, bytes(v) + b"; Secure")
                if bytes(k).lower() == b"set-cookie" and b"secure" not in bytes(v).lower()
                else (k, v)
                for k, v in out
            ]
        return out

    async def _refuse(self, path: str, send: Send) -> None:
        limit = size_words(self.max_upload_bytes)
        message = f"The file is larger than {limit}, the most this server accepts."
        if path.startswith(MACHINE_PREFIXES):
            body = json.dumps({"detail": message}).encode()
            media = b"application/json"
        else:
            from tracker.web.render import environment

            html = (
                environment()
                .get_template("error.j2")
                .render(
                    viewer=None,
                    csrf="",
                    path=path,
                    notices=[],
                    title="File too large",
                    message=message + " Split it into smaller files and import each.",
                )
            )
            body = html.encode()
            media = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", media),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
