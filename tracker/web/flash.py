"""One-time notices ("Reminder acknowledged") carried from the request that did the
work to the next page the same browser session opens (issue 14).

They live in the database, keyed by the session's nonce: never in the URL, so no link
can make the app announce something it did not do, and never in process memory, so
any app process behind a load balancer shows them (issue 6, scale-out)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi import Request

from tracker.store.models import FlashNotice, table_of
from tracker.web.auth import engine_of

flash_notice = table_of(FlashNotice)
MAX_LENGTH = 1000
# a notice nobody came back for is of no use a day later
STALE_AFTER = dt.timedelta(days=1)


def _nonce(request: Request) -> str | None:
    viewer = getattr(request.state, "viewer", None)
    return getattr(viewer, "session_nonce", None)


def flash(request: Request, text: str) -> None:
    """Say `text` on the next page this session opens. API-token requests have no
    session and nothing to show it on, so for them this does nothing."""
    nonce = _nonce(request)
    if nonce is None:
        return
    with engine_of(request).begin() as conn:
        conn.execute(flash_notice.insert().values(session_nonce=nonce, text=text[:MAX_LENGTH]))


def take_notices(request: Request) -> list[str]:
    """This session's waiting notices, oldest first, removed as they are read."""
    nonce = _nonce(request)
    if nonce is None:
        return []
    f = flash_notice.c
    engine = engine_of(request)
    with engine.connect() as conn:  # a read: most pages have nothing waiting
        rows = conn.execute(
            sa.select(f.id, f.text).where(f.session_nonce == nonce).order_by(f.id)
        ).all()
    if not rows:
        return []
    with engine.begin() as conn:
        taken = conn.execute(
            sa.delete(flash_notice).where(f.id.in_([row.id for row in rows])).returning(f.id)
        ).scalars()
        shown = set(taken)  # another request of this session may have taken some first
        conn.execute(
            sa.delete(flash_notice).where(f.created_at < dt.datetime.now(dt.UTC) - STALE_AFTER)
        )
    return [row.text for row in rows if row.id in shown]
