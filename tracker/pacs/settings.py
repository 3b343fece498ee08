"""Where the PACS is and how to ask it (`HO_TRACKER_PACS_*`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tracker.errors import TrackerError

PREFIX = "HO_TRACKER_PACS_"
DEFAULT_PAGE_LIMIT = 1000
DEFAULT_POLL_MINUTES = 15
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_FIRST_DAYS = 30


@dataclass(frozen=True)
class PacsSettings:
    """The DICOMweb root (`…/dicom-web`), optional credentials and CA file, the issuer
    of patient IDs sent with per-patient queries, the most results asked per QIDO-RS
    request, how often the job polls, the request timeout, and how far back the very
    first poll reads when the tracker has no position yet."""

    url: str
    user: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    issuer: str | None = None
    page_limit: int = DEFAULT_PAGE_LIMIT
    poll_minutes: int = DEFAULT_POLL_MINUTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    first_days: int = DEFAULT_FIRST_DAYS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PacsSettings | None:
        """The settings the environment gives, or None when `HO_TRACKER_PACS_URL` is
        unset (no PACS feed). A bad value is refused naming the setting."""

        def get(name: str) -> str | None:
            value = environ.get(PREFIX + name, "").strip()
            return value or None

        url = get("URL")
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise TrackerError(
                f"{PREFIX}URL '{url[:80]}' is not an http:// or https:// address; give the "
                "PACS's DICOMweb root, e.g. http://pacs:8042/dicom-web."
            )
        user, password = get("USER"), get("PASSWORD")
        if (user is None) != (password is None):
            raise TrackerError(
                f"{PREFIX}USER and {PREFIX}PASSWORD go together; set both or neither."
            )
        ca = get("CA_FILE")
        if ca is not None and not Path(ca).is_file():
            raise TrackerError(f"{PREFIX}CA_FILE '{ca}' is not a file; name a PEM file.")

        def number(name: str, default: float, low: float, high: float, kind: type) -> float:
            said = get(name)
            if said is None:
                return default
            try:
                value = kind(said)
            except ValueError:
                value = None
            if value is None or not low <= value <= high:
                what = "a whole number" if kind is int else "a number"
                raise TrackerError(
                    f"{PREFIX}{name} '{said[:40]}' must be {what} from {low:g} to {high:g}."
                )
            return value

        return cls(
            url=url.rstrip("/"),
            user=user,
            password=password,
            ca_file=Path(ca) if ca is not None else None,
            issuer=get("ISSUER"),
            page_limit=int(number("PAGE_LIMIT", DEFAULT_PAGE_LIMIT, 2, 100_000, int)),
            poll_minutes=int(number("POLL_MINUTES", DEFAULT_POLL_MINUTES, 1, 24 * 60, int)),
            timeout_seconds=number("TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, 0.1, 600, float),
            first_days=int(number("FIRST_DAYS", DEFAULT_FIRST_DAYS, 0, 36_500, int)),
        )
