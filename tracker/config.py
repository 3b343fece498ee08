"""Settings, read once from the environment (prefix HO_TRACKER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("data") / "tracker.db"
DEFAULT_SENDER = "ho-tracker@localhost"


class Settings(BaseSettings):
    """Where the tracker keeps its data and how it reaches services.

    `database_url` defaults to an SQLite file `data/tracker.db` under the current
    folder; set HO_TRACKER_DATABASE_URL (for example
    `postgresql+psycopg://user@host/db`) for a multi-user unit.
    """

    model_config = SettingsConfigDict(env_prefix="HO_TRACKER_", extra="ignore")

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH.as_posix()}"

    # Reminder e-mail (model-spec section 9): HO_TRACKER_SMTP_HOST, _PORT, _TLS
    # ("starttls", "ssl" or "none"), _USER, _PASSWORD, _FROM, _CA_FILE.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = DEFAULT_SENDER
    # PEM file of the CA(s) to trust for the server's certificate (TLS "ssl" or
    # "starttls"), for a clinic's own CA; default: the system's trusted CAs
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = 30.0
    # the right-hand side of reminder Message-IDs (default: the domain of smtp_from)
    message_id_domain: str | None = None
    # a claimed reminder is left alone by other processes this long (crash recovery)
    delivery_lease_seconds: float = 120.0
    # failed sends are retried after retry_base_seconds, doubling up to retry_max_seconds
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 6 * 3600.0
    # scheduler: how often each job runs, and the clinic protocol file it plans with
    plan_interval_seconds: float = 3600.0
    deliver_interval_seconds: float = 60.0
    protocol_file: Path | None = None
    # the web app (issue 15): the largest request body it reads (an upload, an API call),
    # refused with 413 above; behind_https adds HSTS and marks every cookie Secure
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    behind_https: bool = False
    # a signed-in session unused this long is refused (HO_TRACKER_SESSION_IDLE_MINUTES);
    # however busy, a session lasts at most 12 hours (issue 15)
    session_idle_minutes: float = Field(default=60.0, gt=0)

    @field_validator("smtp_from")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        # it becomes the From header and MAIL FROM: one rule for addresses (issue 15);
        # the built-in default, a placeholder for a unit without mail, passes as it is
        from pydantic_core import PydanticCustomError

        from tracker.addresses import checked_address

        if value == DEFAULT_SENDER:
            return value
        try:
            return checked_address(value)
        except ValueError as refused:
            raise PydanticCustomError("email", "{reason}", {"reason": str(refused)}) from None

    @field_validator("message_id_domain")
    @classmethod
    def _message_id_domain_is_a_domain(cls, value: str | None) -> str | None:
        # the right-hand side of a Message-ID header: a domain, as an address has one
        from pydantic_core import PydanticCustomError

        from tracker.addresses import checked_address

        if value is None:
            return None
        try:
            return checked_address(f"reminder@{value}").rpartition("@")[2]
        except ValueError:
            reason = "is not a domain name, like clinic.example.org"
            raise PydanticCustomError("domain", "{reason}", {"reason": reason}) from None


def get_settings() -> Settings:
    """The settings, or one clear message naming each bad HO_TRACKER_ variable."""
    from tracker.errors import Problem, ValidationFailed

    try:
        return Settings()
    except ValidationError as error:
        raise ValidationFailed(
            Problem(
                source="environment",
                line=None,
                field="HO_TRACKER_" + "_".join(str(p) for p in e["loc"]).upper(),
                reason=f"{e['msg']} (got {e.get('input')!r})",
            )
            for e in error.errors()
        ) from None
