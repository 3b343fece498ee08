"""The edges of the calendar (issue 15, item 8): `as_of` runs from 1900-01-01 to the
clinic's today plus 366 days, on every page, report, figure and API answer that takes
it, and on every `--as-of` of the command line. Outside those bounds each answers a
4xx (or exit code 2) whose words name the as-of date and say why, never a 500."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.web_support import DEMO, api_token, sign_in
from tracker.cli import run

TODAY = dt.date.today()  # the clinic's today: the app's wall clock
MRN = "H-READY"
# each outside the bounds, with the reason as_of_problem gives
BAD = {
    "9999-12-31": "9999-12-31 is more than 366 days ahead",
    "0001-01-01": "0001-01-01 is before 1900-01-01",
    "1899-12-31": "1899-12-31 is before 1900-01-01",
    (TODAY + dt.timedelta(days=367)).isoformat(): (
        f"{TODAY + dt.timedelta(days=367)} is more than 366 days ahead"
    ),
}
EDGES = ("1900-01-01", (TODAY + dt.timedelta(days=366)).isoformat())
# every page, figure and report that takes ?as_of=
PAGES = (
    f"/patients/{MRN}/trend.svg",
    f"/patients/{MRN}/report.html",
    f"/patients/{MRN}/report.pdf",
    "/board",
    "/board/report.html",
    "/board/report.pdf",
)
API = (f"/api/v1/patients/{MRN}", f"/api/v1/patients/{MRN}/assessment")


def visible(page: str) -> str:
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def surgeon(client: TestClient) -> TestClient:
    return sign_in(client, "surgeon")


def test_an_as_of_outside_the_calendar_is_refused_in_words_on_every_page(
    surgeon: TestClient,
) -> None:
    for url in PAGES:
        for as_of, reason in BAD.items():
            answer = surgeon.get(url, params={"as_of": as_of})
            assert answer.status_code == 422, (url, as_of, answer.status_code)
            said = visible(answer.text)
            assert f"as-of date: {reason}" in said, (url, as_of, said[:600])


def test_the_patient_page_marks_the_as_of_field_and_shows_today(surgeon: TestClient) -> None:
    for as_of, reason in BAD.items():
        answer = surgeon.get(f"/patients/{MRN}", params={"as_of": as_of})
        assert answer.status_code == 422, (as_of, answer.text[:300])
        assert 'aria-invalid="true"' in answer.text
        said = visible(answer.text)
        assert f"The as-of date {reason}; showing today ({TODAY.isoformat()})" in said
        assert f"Assessed as of {TODAY.isoformat()}" in said


def test_the_api_refuses_an_as_of_outside_the_calendar_naming_the_query_field(
    client: TestClient, demo_engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"}
    for url in API:
        for as_of, reason in BAD.items():
            answer = client.get(url, params={"as_of": as_of}, headers=headers)
            assert answer.status_code == 422, (url, as_of, answer.text[:300])
            assert answer.json()["detail"] == [
                {"loc": ["query", "as_of"], "msg": reason, "type": "value_error"}
            ]
        for as_of in ("2026-02-30", "99999-01-01", "tomorrow"):  # not dates: FastAPI's 422
            answer = client.get(url, params={"as_of": as_of}, headers=headers)
            assert answer.status_code == 422, (url, as_of)
            assert answer.json()["detail"][0]["loc"] == ["query", "as_of"]


def test_the_edges_of_the_calendar_still_answer(surgeon: TestClient, demo_engine: Engine) -> None:
    """1900-01-01 and today + 366 days are as-of dates: each page answers; a board, report or
    figure as of a day before the first record says so (a 400 in words), never a 500."""
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"}
    refused = set()
    for as_of in EDGES:
        for url in (f"/patients/{MRN}", *PAGES, *API):
            answer = surgeon.get(url, params={"as_of": as_of}, headers=headers)
            if answer.status_code != 200:
                refused.add((url, as_of))
                assert answer.status_code == 400, (url, as_of, answer.status_code)
                said = visible(answer.text)
                assert f"as-of date {as_of} is before" in said, said
                assert "choose a later date" in said, said
    # the board, the reports and the figure need a record on or before the day
    assert refused == {(u, "1900-01-01") for u in PAGES}


def test_answers_without_an_as_of_ignore_one_and_edge_cursors_are_never_a_500(
    surgeon: TestClient, demo_engine: Engine
) -> None:
    """The worklist, the reminders API and FHIR take no as_of (they answer as of
    today); an as_of sent to them changes nothing, and a page position dated at the
    edge of the calendar is refused, or an empty page, never a 500."""
    headers = {"Authorization": f"Bearer {api_token(demo_engine, 'surgeon')}"}
    for url in ("/worklist", f"/fhir/Patient/{MRN}/$everything", "/api/v1/reminders"):
        for as_of in BAD:
            answer = surgeon.get(url, params={"as_of": as_of}, headers=headers)
            assert answer.status_code == 200, (url, as_of, answer.text[:300])
    for day in ("9999-12-31", "0001-01-01", "1899-12-31"):
        for url, name in (("/worklist", "after"), ("/worklist", "before"),
                          ("/api/v1/reminders", "cursor")):  # fmt: skip
            answer = surgeon.get(url, params={name: f"{day}.1"}, headers=headers)
            assert answer.status_code < 500, (url, name, day, answer.text[:300])


@pytest.fixture
def cli_db(tmp_path: Path) -> list[str]:
    base = ["--database-url", f"sqlite:///{tmp_path / 'tracker.db'}"]
    assert run([*base, "import", str(DEMO)]) == 0
    return base


def test_every_as_of_option_of_the_command_line_has_the_bounds(
    cli_db: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = (
        ["assess", MRN],
        ["report", MRN, "--out", str(tmp_path / "out")],
        ["report", "--board", "--out", str(tmp_path / "out")],
        ["reminders", "plan", "--dry-run"],
        ["board", "refresh"],
    )
    capsys.readouterr()
    for command in commands:
        for as_of, reason in BAD.items():
            assert run([*cli_db, *command, "--as-of", as_of]) == 2, (command, as_of)
            said = " ".join(capsys.readouterr().err.split())
            assert f"--as-of {reason}." in said, (command, said)
        assert run([*cli_db, *command, "--as-of", "2026-02-30"]) == 2
        assert "--as-of '2026-02-30' is not a date" in capsys.readouterr().err
    assert run([*cli_db, "assess", MRN, "--as-of", EDGES[1]]) == 0
    capsys.readouterr()
    assert run([*cli_db, "assess", MRN, "--as-of", EDGES[0]]) == 2  # in bounds; no record yet
    assert "1900-01-01 is before the first record of H-READY" in capsys.readouterr().err
