"""E-mail over real SMTP sessions (aiosmtpd on 127.0.0.1): the daily digest per team,
STARTTLS and SSL with a certificate made for the test and a login the server checks,
and the clear messages of a bad certificate, CA file or password."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.engine import Engine

from tests.reminders.reminder_support import (  # noqa: F401  (fixtures)
    FakeClock,
    Mailbox,
    SmtpServer,
    add_patient,
    free_port,
    give_team_address,
    lite,
    reminders,
    smtp,
)
from tracker.protocol import Protocol
from tracker.reminders.delivery import Deliverer
from tracker.reminders.planner import plan

# the implicit-TLS server says AUTH without STARTTLS is risky: here TLS is the link
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

PROTOCOL = Protocol()
DAY = date(2025, 3, 3)  # GMT: the 08:00 send hour in London is 08:00 UTC
USER, PASSWORD = "ho-tracker", "s3cret-for-the-test"


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def course_ending(engine: Engine, mrn: str, end: date, team: str) -> None:
    """A patient whose prophylaxis course ends on `end`: one course_review due then."""
    add_patient(
        engine,
        mrn,
        team=team,
        courses=[{"agent": "etidronate", "intent": "prophylaxis",
                  "start": (end - timedelta(days=30)).isoformat(), "end": end.isoformat()}],
    )  # fmt: skip


def deliverer(engine: Engine, settings: Any, clock: FakeClock) -> Deliverer:
    return Deliverer(engine=engine, protocol=PROTOCOL, settings=settings, clock=clock)


def attempts(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, outcome, detail FROM delivery_attempt ORDER BY id")
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


# --- the daily digest -------------------------------------------------------------------


def test_daily_digest_is_one_mail_per_team_listing_its_due_and_overdue_reminders(
    lite: Engine, smtp: SmtpServer
) -> None:
    course_ending(lite, "A001", DAY, team="ward7")  # due today
    course_ending(lite, "A002", DAY - timedelta(days=5), team="ward7")  # overdue
    course_ending(lite, "A003", DAY + timedelta(days=20), team="ward7")  # pending: not yet
    course_ending(lite, "B001", DAY - timedelta(days=2), team="ward9")
    give_team_address(lite, "ward7", "ward7@clinic.example.org")
    give_team_address(lite, "ward9", "ward9@clinic.example.org")
    clock = FakeClock(at(DAY, hour=7))
    plan(engine=lite, as_of=DAY, protocol=PROTOCOL, now=clock())
    ids = {(r["rule"], r["due"]): r["id"] for r in reminders(lite)}

    assert deliverer(lite, smtp.settings(), clock).digest() == 0  # before the send hour
    clock.jump(hours=1)
    assert deliverer(lite, smtp.settings(), clock).digest() == 2
    mails = {m.recipient: m for m in smtp.mailbox.received}
    assert set(mails) == {"ward7@clinic.example.org", "ward9@clinic.example.org"}

    ward7 = mails["ward7@clinic.example.org"]
    assert ward7.message_id == f"<digest-ward7-{DAY.isoformat()}@clinic.example.org>"
    assert ward7.subject == f"HO tracker: 2 open reminders for ward7 ({DAY.isoformat()})"
    lines = [line for line in ward7.body.splitlines() if line.startswith("- ")]
    overdue = DAY - timedelta(days=5)
    assert lines == [  # oldest due first, each with its id, patient, rule, date and status
        f"- #{ids[('course_review', overdue)]} A002 course review due {overdue} (due)",
        f"- #{ids[('course_review', DAY)]} A001 course review due {DAY} (due)",
    ]
    assert "A003" not in ward7.body and "B001" not in ward7.body

    ward9 = mails["ward9@clinic.example.org"]
    assert "B001 course review due 2025-03-01 (due)" in ward9.body
    assert "A00" not in ward9.body

    # once a clinic day: a second run, or a second process, sends nothing more
    clock.jump(hours=3)
    assert deliverer(lite, smtp.settings(), clock).digest() == 0
    assert len(smtp.mailbox.received) == 2
    # the next day brings the next digest (nothing was acknowledged)
    clock.jump(days=1)
    assert deliverer(lite, smtp.settings(), clock).digest() == 2
    assert len(smtp.mailbox.received) == 4


# --- TLS and login ------------------------------------------------------------------------


@dataclass
class Logins:
    """An aiosmtpd authenticator: accepts USER/PASSWORD only, and keeps every try."""

    tries: list[tuple[str, str, bool]] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (login, password) == (USER, PASSWORD)
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.tries.append((login, password, over_tls))
        return AuthResult(success=ok, handled=False)


@dataclass
class TlsServer:
    mailbox: Mailbox
    logins: Logins
    port: int
    ca_file: Path

    def settings(self, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_from": "ho-tracker@clinic.example.org",
            "smtp_user": USER,
            "smtp_password": PASSWORD,
            "smtp_ca_file": self.ca_file,
            "smtp_timeout_seconds": 5,
        }
        values.update(overrides)
        return SmtpServer(self.mailbox, self.port, None).settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A CA made for this test, and the server's certificate for 127.0.0.1 from it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("ca") / "clinic-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


def tls_server(mode: str, certificate: tuple[ssl.SSLContext, Path]) -> Iterator[TlsServer]:
    context, ca_file = certificate
    mailbox, logins, port = Mailbox(), Logins(), free_port()
    tls: dict[str, Any] = (
        # aiosmtpd offers AUTH on implicit TLS only when told TLS is not required (it
        # checks for STARTTLS); Logins records that each login did come over TLS
        {"ssl_context": context, "auth_require_tls": False}
        if mode == "ssl"
        else {"tls_context": context, "require_starttls": True}
    )
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=logins, auth_required=True, **tls
    )
    controller.start()
    try:
        yield TlsServer(mailbox, logins, port, ca_file)
    finally:
        controller.stop()


@pytest.fixture
def starttls(certificate: tuple[ssl.SSLContext, Path]) -> Iterator[TlsServer]:
    yield from tls_server("starttls", certificate)


@pytest.fixture
def implicit_tls(certificate: tuple[ssl.SSLContext, Path]) -> Iterator[TlsServer]:
    yield from tls_server("ssl", certificate)


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_reminder_goes_out_over_tls_with_the_clinic_ca_and_a_checked_login(
    lite: Engine, starttls: TlsServer, implicit_tls: TlsServer, mode: str
) -> None:
    server = starttls if mode == "starttls" else implicit_tls
    course_ending(lite, "A001", DAY, team="ward7")
    give_team_address(lite)
    clock = FakeClock(at(DAY))
    plan(engine=lite, as_of=DAY, protocol=PROTOCOL, now=clock())
    report = deliverer(lite, server.settings(smtp_tls=mode), clock).deliver()
    assert report.sent == 1, report.problems
    [mail] = server.mailbox.received
    [row] = reminders(lite)
    assert mail.message_id == row["message_id"] and row["status"] == "sent"
    assert "A001" in mail.body
    assert server.logins.tries == [(USER, PASSWORD, True)]  # logged in, inside TLS
    assert [(kind, outcome) for kind, outcome, _ in attempts(lite)] == [("reminder", "accepted")]


def test_wrong_password_keeps_the_reminder_due_and_names_the_settings(
    lite: Engine, starttls: TlsServer
) -> None:
    course_ending(lite, "A001", DAY, team="ward7")
    give_team_address(lite)
    clock = FakeClock(at(DAY))
    plan(engine=lite, as_of=DAY, protocol=PROTOCOL, now=clock())
    settings = starttls.settings(smtp_tls="starttls", smtp_password="wrong")
    report = deliverer(lite, settings, clock).deliver()
    assert (report.sent, report.waiting) == (0, 1)
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN): all refused
    assert starttls.logins.tries and set(starttls.logins.tries) == {(USER, "wrong", True)}
    [row] = reminders(lite)
    assert row["status"] == "due" and row["attempts"] == 1
    assert f"refused the login of '{USER}'" in row["last_error"]
    assert "HO_TRACKER_SMTP_PASSWORD" in row["last_error"]
    [(kind, outcome, detail)] = attempts(lite)
    assert (kind, outcome) == ("reminder", "failed") and "HO_TRACKER_SMTP_USER" in detail
    assert starttls.mailbox.received == []
    # the right password, after the back-off: delivered once
    clock.jump(minutes=2)
    assert deliverer(lite, starttls.settings(smtp_tls="starttls"), clock).deliver().sent == 1
    assert len(starttls.mailbox.received) == 1


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_untrusted_certificate_or_bad_ca_file_is_named_and_nothing_is_sent(
    lite: Engine, starttls: TlsServer, implicit_tls: TlsServer, mode: str, tmp_path: Path
) -> None:
    server = starttls if mode == "starttls" else implicit_tls
    course_ending(lite, "A001", DAY, team="ward7")
    give_team_address(lite)
    clock = FakeClock(at(DAY))
    plan(engine=lite, as_of=DAY, protocol=PROTOCOL, now=clock())

    system_cas = server.settings(smtp_tls=mode, smtp_ca_file=None)  # the test CA is unknown
    report = deliverer(lite, system_cas, clock).deliver()
    assert report.waiting == 1 and report.sent == 0
    assert "TLS certificate that is not trusted" in report.problems[0]
    assert "HO_TRACKER_SMTP_CA_FILE" in report.problems[0]
    assert server.logins.tries == []  # the password never left over an untrusted link

    missing = tmp_path / "no-such-ca.pem"
    clock.jump(minutes=2)
    report = deliverer(lite, server.settings(smtp_tls=mode, smtp_ca_file=missing), clock).deliver()
    assert report.waiting == 1
    assert f"HO_TRACKER_SMTP_CA_FILE {missing} is not a readable file" in report.problems[0]

    [row] = reminders(lite)
    assert row["status"] == "due" and row["attempts"] == 2
    assert [outcome for _, outcome, _ in attempts(lite)] == ["failed", "failed"]
    assert server.mailbox.received == []
