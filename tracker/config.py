"""Settings, read once from the environment (prefix HO_TRACKER_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("data") / "tracker.db"


class Settings(BaseSettings):
    """Where the tracker keeps its data and how it reaches services.

    `database_url` defaults to an SQLite file `data/tracker.db` under the current
    folder; set HO_TRACKER_DATABASE_URL (for example
    `postgresql+psycopg://user@host/db`) for a multi-user unit.
    """

    model_config = SettingsConfigDict(env_prefix="HO_TRACKER_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH.as_posix()}"


def get_settings() -> Settings:
    return Settings()
