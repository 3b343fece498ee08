"""The security and reliability matrix of issue 15: the web fixtures (the demo cohort,
one user per role, a test client) on both backends."""

from __future__ import annotations

from tests.web.conftest import client, demo_engine

__all__ = ["client", "demo_engine"]
