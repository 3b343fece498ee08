"""E-mail over SMTP, handed over in two phases so a message is never sent twice.

SMTP accepts a message when the server answers the final "." of DATA. Whoever
sends that dot cannot know, if it dies a moment later, whether the server took the
message; and whoever restarts cannot ask the server. So `send` writes the whole
message except the final dot, then calls `hand_over(write_dot)`: the caller commits
"sent" in the database and writes the dot right after the commit leaves (it may
also refuse, without writing the dot, for example when its claim was taken over).
A process killed before that commit leaves the server with an unfinished DATA,
which it discards: the reminder is still due and goes out later. A process killed
after it leaves a row marked sent whose server answer is unknown: it is never
handed over again (at most once), and shows as unconfirmed. The only loss left is
a kill in the microseconds between sending the commit and sending the dot.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from enum import StrEnum
from typing import Any

from tracker import labels
from tracker.addresses import address_problem, shown
from tracker.config import Settings
from tracker.values import CONTROL_RE, control_reason

# Setting up a session (TCP, TLS, the greeting) waits at most this long, whatever
# HO_TRACKER_SMTP_TIMEOUT_SECONDS allows a session's replies: an unreachable server
# fails in seconds, so a run with thousands due cannot hang on it (issue 14).
CONNECT_TIMEOUT_SECONDS = 5.0


class Outcome(StrEnum):
    accepted = "accepted"  # the server answered the final dot with 2xx
    refused = "refused"  # the server said no (4xx/5xx) before or at the dot
    failed = "failed"  # no server, no TLS, a dropped connection before the dot
    lost_claim = "lost_claim"  # hand_over said no: nothing was handed over
    unconfirmed = "unconfirmed"  # the dot went out, the answer never came


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    handed_over: bool = False  # True once the final dot was written


class Unsendable(ValueError):
    """A message that cannot be composed from these values (a header would carry a
    line break, an address is not one): a delivery failure with this reason, retried
    later, never a crash of the run (issue 15)."""


class BadCaFile(OSError):
    """HO_TRACKER_SMTP_CA_FILE cannot be used."""


class SmtpChannel:
    """The clinic's SMTP server, from settings (HO_TRACKER_SMTP_*)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("no SMTP server configured")
        self.settings = settings
        self._sessions: set[smtplib.SMTP] = set()  # under way, for `abort`
        self._sessions_lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.smtp_port}"

    def _tls(self) -> ssl.SSLContext:
        """Verify the server's certificate and name against the system's CAs, or only
        against HO_TRACKER_SMTP_CA_FILE when set (a clinic's own CA)."""
        ca_file = self.settings.smtp_ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except OSError as error:  # missing file, or no PEM certificate in it
            raise BadCaFile(
                f"HO_TRACKER_SMTP_CA_FILE {ca_file} is not a readable file of PEM CA "
                f"certificates: {_say(error)}"
            ) from error

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        host, port, timeout = s.smtp_host or "", s.smtp_port, s.smtp_timeout_seconds
        connect_timeout = min(timeout, CONNECT_TIMEOUT_SECONDS)
        smtp: smtplib.SMTP
        if s.smtp_tls == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=connect_timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(host, port, timeout=connect_timeout)
        with self._sessions_lock:
            self._sessions.add(smtp)
        try:
            if smtp.sock is not None:  # connected and greeted: replies may take longer
                smtp.sock.settimeout(timeout)
            smtp.timeout = timeout
            smtp.ehlo_or_helo_if_needed()
            if s.smtp_tls == "starttls":
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if s.smtp_user:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                smtp.login(s.smtp_user, password)
        except BaseException:
            with self._sessions_lock:
                self._sessions.discard(smtp)
            smtp.close()  # no session: do not leave the socket open
            raise
        return smtp

    def _connect_failure(self, error: BaseException) -> str:
        """Why no session was set up, naming the setting to look at."""
        s = self.settings
        if isinstance(error, smtplib.SMTPAuthenticationError):
            return (
                f"the SMTP server {self.where} refused the login of {s.smtp_user!r} "
                f"(HO_TRACKER_SMTP_USER, HO_TRACKER_SMTP_PASSWORD): {_say(error)}"
            )
        if isinstance(error, ssl.SSLCertVerificationError):
            return (
                f"the SMTP server {self.where} sent a TLS certificate that is not trusted "
                f"(HO_TRACKER_SMTP_CA_FILE names a CA to trust): {error.verify_message}"
            )
        if isinstance(error, BadCaFile):
            return str(error)
        if isinstance(error, smtplib.SMTPNotSupportedError):
            return (
                f"the SMTP server {self.where} does not offer what HO_TRACKER_SMTP_TLS "
                f"({s.smtp_tls}) or HO_TRACKER_SMTP_USER ask for: {_say(error)}"
            )
        return f"cannot reach the SMTP server {self.where}: {_say(error)}"

    def send(
        self,
        message: EmailMessage,
        recipient: str,
        hand_over: Callable[[Callable[[], None]], bool],
    ) -> SendResult:
        """Hand `message` to the server for `recipient` (see the module doc)."""
        try:  # before any session: a message that cannot be written is not started
            problem = address_problem(recipient)
            if problem is not None:
                raise Unsendable(f"the recipient '{shown(recipient)}' {problem}")
            data = _dot_stuffed(message.as_bytes(policy=SMTP_POLICY))
        except (ValueError, TypeError, LookupError) as error:  # UnicodeError is a ValueError
            return SendResult(Outcome.failed, f"the e-mail could not be written: {error}")
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as error:
            return SendResult(Outcome.failed, self._connect_failure(error))
        handed_over = in_data = False
        try:
            code, reply = smtp.mail(self.settings.smtp_from)
            if code != 250:
                return SendResult(Outcome.refused, f"MAIL FROM refused: {code} {_text(reply)}")
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                return SendResult(
                    Outcome.refused, f"RCPT TO {recipient} refused: {code} {_text(reply)}"
                )
            code, reply = smtp.docmd("DATA")
            if code != 354:
                return SendResult(Outcome.refused, f"DATA refused: {code} {_text(reply)}")
            in_data = True
            smtp.send(data)

            def write_dot() -> None:
                nonlocal handed_over
                handed_over = True
                smtp.send(b".\r\n")

            if not hand_over(write_dot):
                return SendResult(Outcome.lost_claim, "claim lost before hand-over; not sent")
            code, reply = smtp.getreply()
            if 200 <= code < 300:
                return SendResult(Outcome.accepted, f"{code} {_text(reply)}", handed_over=True)
            return SendResult(
                Outcome.refused, f"message refused: {code} {_text(reply)}", handed_over=True
            )
        except (OSError, smtplib.SMTPException) as error:
            if handed_over:
                return SendResult(
                    Outcome.unconfirmed,
                    f"the server {self.where} did not confirm ({_say(error)}); "
                    "not sent again, to avoid a duplicate",
                    handed_over=True,
                )
            return SendResult(Outcome.failed, f"SMTP server {self.where}: {_say(error)}")
        finally:
            with self._sessions_lock:
                self._sessions.discard(smtp)
            # Inside an unfinished DATA a QUIT would be message text: just hang up,
            # and the server throws the unfinished message away.
            _close(smtp, polite=handed_over or not in_data)

    def abort(self) -> None:
        """Hang up every session under way, from any thread (a shutdown that cannot
        wait for a slow server): `send` returns at once. A message not yet handed over
        is discarded by the server (failed); one waiting for the answer to its final
        dot ends unconfirmed, and is never sent again."""
        with self._sessions_lock:
            sessions = list(self._sessions)
        for smtp in sessions:
            sock = smtp.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)


def _close(smtp: smtplib.SMTP, polite: bool) -> None:
    try:
        if polite and smtp.sock is not None:
            smtp.sock.settimeout(2)
            smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        smtp.close()


def _dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2: a line starting with "." gets another; end with CRLF."""
    data = re.sub(rb"(?m)^\.", b"..", re.sub(rb"\r?\n", b"\r\n", data))
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _say(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    text = str(error) or type(error).__name__
    return text


def header_text(text: str) -> str:
    """A value for a header from text that may predate the input rules (a team name):
    every control character written out (`\\r`, `\\n`), so it can never end the header
    or start another."""
    return shown(text)


def _header(name: str, value: str) -> str:
    found = CONTROL_RE.search(value)
    if found:
        raise Unsendable(f"the {name} header '{shown(value)}' {control_reason(found.group())}")
    return value


def _address(name: str, value: str) -> str:
    problem = address_problem(value)
    if problem is not None:
        raise Unsendable(f"the {name} address '{shown(value)}' {problem}")
    return value


def compose(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    message_id: str,
    when: datetime,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A plain-text message. Headers are built only from checked values: the To address
    by the address rule (`tracker.addresses`; the From address is HO_TRACKER_SMTP_FROM,
    checked by the same rule in `config`), every header with no control character at
    all (a trailing line break too, which the email package lets through and which
    ends the header block early). Unsendable names the header."""
    message = EmailMessage()
    message["From"] = _header("From", sender)
    message["To"] = _address("To", recipient)
    message["Subject"] = _header("Subject", subject)
    message["Date"] = format_datetime(when)
    message["Message-ID"] = _header("Message-ID", message_id)
    for name, value in (headers or {}).items():
        message[_header("header name", name)] = _header(name, value)
    message.set_content(body)
    return message


# --- what a reminder e-mail says, in words (tracker.labels), never tokens ---


def reminder_words(rule: str, site: str | None, side: str | None) -> tuple[str, str]:
    """A reminder's rule and place as the e-mail says them: ('maturity_bone_scan',
    'hip', 'right') -> ('bone scan for maturity', ' (right hip)')."""
    where = f" ({labels.place(site, side)})" if site else ""
    return labels.rule(rule), where


def why_words(detail: str | None) -> str:
    """The reason a reminder was planned, with any token in it as words."""
    return labels.sentence(detail or "")


def digest_line(item: Mapping[str, Any]) -> str:
    """One open reminder in a team's daily digest (an MRN stored before the input rules
    is shown with its control characters written out: one line per reminder)."""
    what, where = reminder_words(item["rule"], item.get("site"), item.get("side"))
    return (
        f"- #{item['id']} {shown(item['mrn'])} {what}{where} "
        f"due {item['due']} ({labels.words(item['status'])})"
    )


def digest_subject(team: str, day: str, open_count: int) -> str:
    count = labels.count(open_count, "open reminder")
    return f"HO tracker: {count} for {header_text(team)} ({day})"
