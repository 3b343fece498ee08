"""The PACS feed's faults (issue 17): a PACS that is down, slow, refuses the
credentials, fails, or sends malformed JSON fails the poll cleanly: nothing written,
the error kept in words with a back-off, one log line per distinct problem. And the
settings, refused naming the setting."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import count_rows, write_csv
from tests.orthanc import free_port
from tracker.cli import run
from tracker.errors import TrackerError
from tracker.interchange.csv_import import import_folder
from tracker.pacs import PacsFault, PacsSettings, poll, poll_if_due, read_state
from tracker.pacs.state import backoff

TODAY = dt.date(2026, 11, 20)
SINCE = dt.date(2026, 11, 1)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


def study_json(mrn: str, date: str, uid: str) -> dict[str, object]:
    return {
        "0020000D": {"vr": "UI", "Value": [uid]},
        "00100020": {"vr": "LO", "Value": [mrn]},
        "00080020": {"vr": "DA", "Value": [date]},
        "00080061": {"vr": "CS", "Value": ["CR"]},
        "00180015": {"vr": "CS", "Value": ["HIP"]},
        "00200060": {"vr": "CS", "Value": ["L"]},
        "00201206": {"vr": "IS", "Value": [1]},
    }


class FakePacs:
    """A local HTTP server whose answer to every request the test sets."""

    def __init__(self) -> None:
        self.answer: Answer = self.send_json([])
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests += 1
                owner.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/dicom-web"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def send(status: int, body: bytes, kind: str = "application/dicom+json") -> Answer:
        def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        return answer

    @classmethod
    def send_json(cls, value: object) -> Answer:
        return cls.send(200, json.dumps(value).encode())

    def settings(self, **extra: str) -> PacsSettings:
        settings = PacsSettings.from_environ(
            {"HO_TRACKER_PACS_URL": self.url, "HO_TRACKER_PACS_TIMEOUT_SECONDS": "0.5", **extra}
        )
        assert settings is not None
        return settings


@pytest.fixture
def pacs() -> Iterator[FakePacs]:
    fake = FakePacs()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def clinic(engine: Engine, tmp_path: Path) -> Engine:
    write_csv(tmp_path / "patients", "patients.csv", [{"mrn": "H-1"}])
    import_folder(engine, tmp_path / "patients")
    return engine


def slow(handler: http.server.BaseHTTPRequestHandler) -> None:
    time.sleep(2)
    FakePacs.send_json([])(handler)


FAULTS = {
    "401": (FakePacs.send(401, b"no"), "PACS refused the credentials (401)"),
    "500": (FakePacs.send(500, b"boom"), "PACS failed with a server error (500)"),
    "malformed": (FakePacs.send(200, b'[{"0020000D": '), "PACS sent malformed JSON"),
    "not a list": (FakePacs.send_json(["x"]), "PACS sent malformed JSON"),
    "slow": (slow, "PACS did not answer within 0.5 s at "),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_fails_the_poll_cleanly_with_its_words_and_a_back_off(
    clinic: Engine, pacs: FakePacs, fault: str
) -> None:
    answer, words = FAULTS[fault]
    pacs.answer = answer
    before = count_rows(clinic)

    with pytest.raises(PacsFault, match=words.replace("(", r"\(").replace(")", r"\)")):
        poll(engine=clinic, settings=pacs.settings(), since=SINCE, today=TODAY, now=NOW)

    assert count_rows(clinic) == before  # nothing written
    state = read_state(engine=clinic)
    assert state.last_error is not None and state.last_error.startswith(words)
    assert state.last_error_at == NOW and state.failures == 1
    assert state.next_attempt_at == NOW + timedelta(minutes=1)
    assert state.complete_through is None and state.last_success_at is None


def test_a_pacs_that_is_down_is_named_by_its_address(clinic: Engine) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    settings = PacsSettings.from_environ({"HO_TRACKER_PACS_URL": url})
    assert settings is not None
    with pytest.raises(PacsFault, match=f"PACS not reachable at {url}"):
        poll(engine=clinic, settings=settings, since=SINCE, today=TODAY)


def test_the_back_off_doubles_up_to_an_hour_and_a_success_clears_it(
    clinic: Engine, pacs: FakePacs
) -> None:
    assert [backoff(n).total_seconds() // 60 for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    pacs.answer = FakePacs.send(500, b"")
    settings = pacs.settings()
    now = NOW
    waits = []
    for _ in range(3):
        assert poll_if_due(engine=clinic, settings=settings, now=now) is None
        state = read_state(engine=clinic)
        assert state.next_attempt_at is not None
        waits.append(state.next_attempt_at - now)
        # asked again before the back-off is over: the job does not poll at all
        asked = pacs.requests
        early = now + timedelta(seconds=30)
        assert poll_if_due(engine=clinic, settings=settings, now=early) is None
        assert pacs.requests == asked
        now = state.next_attempt_at
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]

    pacs.answer = FakePacs.send_json([study_json("H-1", "20261103", "1.2.3.1")])
    report = poll_if_due(engine=clinic, settings=settings, now=now)
    assert report is not None and report.created == 1
    state = read_state(engine=clinic)
    assert state.failures == 0 and state.last_success_at == now
    assert state.next_attempt_at == now + timedelta(minutes=settings.poll_minutes)
    assert state.last_error == "PACS failed with a server error (500)"  # kept, for the admin


def test_one_log_line_per_distinct_problem_not_per_retry(
    clinic: Engine, pacs: FakePacs, caplog: pytest.LogCaptureFixture
) -> None:
    settings = pacs.settings()
    caplog.set_level(logging.WARNING, logger="tracker.pacs")
    for answer in ("500", "500", "500", "401", "401"):
        pacs.answer = FAULTS[answer][0]
        with pytest.raises(PacsFault):
            poll(engine=clinic, settings=settings, since=SINCE, today=TODAY)
    said = [r.getMessage() for r in caplog.records if "poll failed" in r.getMessage()]
    assert said == [
        "PACS poll failed: PACS failed with a server error (500)",
        "PACS poll failed: PACS refused the credentials (401)",
    ]


def test_a_study_with_a_bad_header_is_skipped_and_counted_not_fatal(
    clinic: Engine, pacs: FakePacs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracker.pacs")
    bad_date = [study_json("H-1", "2026-11-3", f"1.2.3.{i}") for i in range(3)]
    pacs.answer = FakePacs.send_json([study_json("H-1", "20261103", "1.2.3.9"), *bad_date])

    report = poll(engine=clinic, settings=pacs.settings(), since=SINCE, today=TODAY)

    assert report.created == 1
    assert report.skipped == {"(0008,0020) StudyDate '2026-11-3' is not YYYYMMDD": 3}
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 1


def test_credentials_are_sent_to_the_pacs(clinic: Engine, pacs: FakePacs) -> None:
    seen: list[str | None] = []

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        FakePacs.send_json([])(handler)

    pacs.answer = answer
    settings = pacs.settings(HO_TRACKER_PACS_USER="tracker", HO_TRACKER_PACS_PASSWORD="s3cret")
    poll(engine=clinic, settings=settings, since=SINCE, today=TODAY)
    assert seen == ["Basic dHJhY2tlcjpzM2NyZXQ="]  # base64 of tracker:s3cret


def test_no_pacs_url_means_no_feed_and_bad_settings_are_refused_by_name(tmp_path: Path) -> None:
    assert PacsSettings.from_environ({}) is None
    base = {"HO_TRACKER_PACS_URL": "http://pacs:8042/dicom-web/"}
    settings = PacsSettings.from_environ(base)
    assert settings is not None
    assert (settings.url, settings.page_limit, settings.poll_minutes) == (
        "http://pacs:8042/dicom-web",
        1000,
        15,
    )
    refused = {
        "HO_TRACKER_PACS_URL": {"HO_TRACKER_PACS_URL": "pacs:8042"},
        "HO_TRACKER_PACS_PAGE_LIMIT": {**base, "HO_TRACKER_PACS_PAGE_LIMIT": "lots"},
        "HO_TRACKER_PACS_POLL_MINUTES": {**base, "HO_TRACKER_PACS_POLL_MINUTES": "0"},
        "HO_TRACKER_PACS_PASSWORD": {**base, "HO_TRACKER_PACS_USER": "me"},
        "HO_TRACKER_PACS_CA_FILE": {**base, "HO_TRACKER_PACS_CA_FILE": str(tmp_path / "no")},
    }
    for name, environ in refused.items():
        with pytest.raises(TrackerError, match=name):
            PacsSettings.from_environ(environ)


def test_the_cli_polls_prints_the_report_in_words_and_the_status(
    clinic: Engine,
    pacs: FakePacs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    database = ["--database-url", str(clinic.url)]
    monkeypatch.delenv("HO_TRACKER_PACS_URL", raising=False)
    assert run([*database, "pacs", "poll"]) == 2
    assert "set HO_TRACKER_PACS_URL" in capsys.readouterr().err

    monkeypatch.setenv("HO_TRACKER_PACS_URL", pacs.url)
    pacs.answer = FakePacs.send_json(
        [study_json("H-1", "20261103", "1.2.3.1"), study_json("H-9", "20261103", "1.2.3.2")]
    )
    assert run([*database, "pacs", "poll", "--since", "2026-11-01"]) == 0
    said = capsys.readouterr().out
    assert "2 studies seen: 1 new imaging study and 1 pending site added" in said
    assert "1 of patients the tracker does not follow (skipped)" in said

    pacs.answer = FakePacs.send(401, b"")
    assert run([*database, "pacs", "poll"]) == 2
    assert "PACS refused the credentials (401)" in capsys.readouterr().err
    assert run([*database, "pacs", "status"]) == 0
    status = capsys.readouterr().out
    assert f"PACS: {pacs.url}" in status and "Last error: PACS refused the credentials" in status
    assert "Last successful poll: " in status and "Failed polls in a row: 1." in status
    assert run([*database, "pacs", "poll", "--since", "3 Nov"]) == 2
    assert "--since '3 Nov' is not a date" in capsys.readouterr().err
