"""A real PACS for the PACS feed's tests (issue 17): Orthanc with its DICOMweb plugin
from Debian's packages, started per test on a free loopback port (`tests/orthanc.py`).
Skipped, with the reason, where Orthanc is not installed; CI installs it and fails
if these tests were skipped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.orthanc import OrthancServer, missing


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., OrthancServer]]:
    """`orthanc_factory(limit_find_results=0)`: a started Orthanc in a folder of its
    own under tmp_path; every one made is stopped after the test."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    made: list[OrthancServer] = []

    def make(limit_find_results: int = 0) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc-{len(made)}", limit_find_results)
        made.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in made:
            server.stop()


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., OrthancServer]) -> OrthancServer:
    """A started Orthanc with no cap on its answers, stopped after the test."""
    return orthanc_factory()
