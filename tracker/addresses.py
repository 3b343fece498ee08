"""E-mail addresses (issue 15, requirement 7): one rule, the maintained
`email-validator` library through pydantic, not a regular expression.

A team's addresses (`services.teams`), HO_TRACKER_SMTP_FROM (`config`) and, at compose
time, every address a message is built from (`reminders.mail`) are checked here, so
an address that would break a message (a line break after `To:` moves the Subject,
Date and Message-ID into the body) is refused where it is set and, if it was stored
before this rule, is a delivery failure with its reason, never a broken message.
"""

from __future__ import annotations

from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from tracker.values import CONTROL_RE, control_reason

__all__ = ["EXAMPLE", "address_problem", "checked_address", "shown"]

EXAMPLE = "ward7@hospital.nhs.uk"
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def shown(text: str) -> str:
    """`text` with every control character written out (`\\r`, `\\n`, `\\x00`), for a
    message about a bad value: the value is shown, never replayed."""
    return CONTROL_RE.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def _checked(text: str) -> tuple[str | None, str | None]:
    """(the address as the library normalises it, None) or (None, why not)."""
    found = CONTROL_RE.search(text)
    if found:
        return None, control_reason(found.group())
    if text != text.strip():
        return None, "starts or ends with a space"
    if "<" in text or ">" in text:
        return None, "has a name or angle brackets: give the address alone, like " + EXAMPLE
    try:
        _, normalised = validate_email(text)
    except PydanticCustomError as error:
        reason = str((error.context or {}).get("reason") or error.message())
        return None, f"is not an e-mail address ({reason.rstrip('.')}); give one like {EXAMPLE}"
    if not normalised.isascii():
        # SMTP without the SMTPUTF8 extension carries ASCII addresses only
        return None, (
            "has characters outside ASCII, which the mail server may not carry; give the "
            "address in ASCII (a domain in its xn-- form)"
        )
    return normalised, None


def address_problem(text: str) -> str | None:
    """Why `text` cannot be an e-mail address, or None."""
    return _checked(text)[1]


def checked_address(text: str) -> str:
    """`text` as the library normalises it (the domain in lower case); ValueError with
    the reason when it is not an address."""
    normalised, problem = _checked(text)
    if normalised is None:
        raise ValueError(problem)
    return normalised
