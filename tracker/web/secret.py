"""The key that signs session cookies and CSRF tokens.

Several app processes must agree on it (issue 6, scale-out), so it never lives in
process memory alone: HO_TRACKER_SECRET_KEY when set; on the SQLite default, a
key generated once into a file beside the database (mode 0600) and read by every
process on that machine. A shared PostgreSQL database has no such "beside", so
there the key must be configured.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from sqlalchemy.engine import Engine

from tracker.errors import TrackerError

ENV_NAME = "HO_TRACKER_SECRET_KEY"
MIN_LENGTH = 32


def secret_key(engine: Engine, configured: str | None = None) -> str:
    """The configured key, or (SQLite only) the one kept beside the database."""
    configured = configured if configured is not None else os.environ.get(ENV_NAME)
    if configured:
        if len(configured) < MIN_LENGTH:
            raise TrackerError(
                f"{ENV_NAME} is too short ({len(configured)} characters); use at least "
                f"{MIN_LENGTH} random characters, for example from `openssl rand -hex 32`."
            )
        return configured
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise TrackerError(
            f"Set {ENV_NAME} (at least {MIN_LENGTH} random characters, the same for every "
            "app process) to serve the web app on this database."
        )
    return _key_beside(Path(url.database))


def key_file_for(database: Path) -> Path:
    return database.with_name(database.name + ".secret")


def _key_beside(database: Path) -> str:
    path = key_file_for(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when two processes start at once, one creates the file, the other reads it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = ""
        for _ in range(50):  # the creator may not have written yet
            key = path.read_text(encoding="ascii").strip()
            if key:
                return key
            time.sleep(0.02)
        raise TrackerError(
            f"The secret key file {path} is empty; delete it and start again."
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text(encoding="ascii").strip()
