"""The security and reliability matrix of issue 15: the web fixtures (the demo cohort,
one user per role, a test client) on both backends, and a real SMTP server
(`support.mail_server`)."""

from __future__ import annotations

from tests.security.support import mail_server
from tests.web.conftest import client, demo_engine

__all__ = ["client", "demo_engine", "mail_server"]
