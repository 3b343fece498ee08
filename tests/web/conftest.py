"""Web fixtures: the demo cohort with one user per role, and a test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO, add_role_users, make_client
from tracker.interchange.csv_import import import_folder


@pytest.fixture
def demo_engine(engine: Engine) -> Engine:
    """The demo cohort and one user per role, on each backend."""
    import_folder(engine, DEMO)
    add_role_users(engine)
    return engine


@pytest.fixture
def client(demo_engine: Engine) -> Iterator[TestClient]:
    with make_client(demo_engine) as c:
        yield c
