"""Scale-out (issue 6): two real app processes serve one PostgreSQL database, and
nothing that matters lives in either process's memory. A session made by one is
honoured by the other, a correction saved on one makes the same correction on the
other stale, and failed sign-ins spread over both count together."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVER_URL, private_postgres_url, reset_postgres
from tests.web.web_support import DEMO, PASSWORD, add_role_users, csrf_in
from tracker.interchange.csv_import import import_folder
from tracker.store import database
from tracker.web.auth import NAME_FREE_FAILURES

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60.0  # a loaded 2-core machine has taken 26 s
SECRET = "s" * 48  # the same key in both processes, from the environment as in production


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli import main; main()"]
        + ["serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{base} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} not healthy: {log.read_text(errors='replace')[-2000:]}")


def sign_in(client: httpx.Client, form_on: str, post_to: str, username: str, password: str) -> int:
    """GET the sign-in form on one process and POST it to another: the answer's status."""
    page = client.get(f"{form_on}/signin")
    response = client.post(
        f"{post_to}/signin",
        data={"username": username, "password": password, "csrf_token": csrf_in(page.text)},
    )
    return response.status_code


@pytest.mark.postgres
def test_two_app_processes_share_one_postgres_database(tmp_path: Path) -> None:
    if not SERVER_URL:
        pytest.skip("HO_TRACKER_TEST_POSTGRES_URL is not set")
    url = private_postgres_url("scaleout")
    engine = reset_postgres(url)
    try:
        database.upgrade(engine)
        import_folder(engine, DEMO)
        add_role_users(engine)
        from tracker.services.patients import patient_story

        story, _ = patient_story(engine=engine, mrn="H-READY")
        lab = story.labs[0]
    finally:
        engine.dispose()

    env = {**os.environ, "HO_TRACKER_DATABASE_URL": url, "HO_TRACKER_SECRET_KEY": SECRET}
    ports = (free_port(), free_port())
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    processes = [serve(env, port, log) for port, log in zip(ports, logs, strict=True)]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        for base, process, log in zip((a, b), processes, logs, strict=True):
            wait_healthy(base, process, log)
        with httpx.Client(follow_redirects=False, timeout=10) as client:
            # a session made by A is honoured by B (cookies are not per port)
            assert sign_in(client, a, a, "clinician", PASSWORD) == 303
            assert client.get(f"{b}/worklist").status_code == 200
            assert client.get(f"{a}/worklist").status_code == 200

            # the same correction opened on both: saved on A, so stale on B
            path = f"/patients/H-READY/labs/{lab.id}/edit"
            on_a, on_b = client.get(f"{a}{path}"), client.get(f"{b}{path}")
            version = re.search(r'name="version" value="(\d+)"', on_a.text)
            assert version and f'name="version" value="{version.group(1)}"' in on_b.text
            values = {"date": lab.date.isoformat(), "analyte": lab.analyte, "unit": lab.unit,
                      "save": "1", "version": version.group(1)}  # fmt: skip
            saved = client.post(
                f"{a}{path}", data={**values, "value": "77", "csrf_token": csrf_in(on_a.text)}
            )
            assert saved.status_code == 303, saved.text
            late = client.post(
                f"{b}{path}", data={**values, "value": "88", "csrf_token": csrf_in(on_b.text)}
            )
            assert late.status_code == 409, late.text
            assert "reload" in late.text.lower()

            # failed sign-ins on A and B count together (the form of one posts to the other)
            client.cookies.clear()
            for n in range(NAME_FREE_FAILURES + 1):  # each process alone saw too few
                first, second = (a, b) if n % 2 == 0 else (b, a)
                assert sign_in(client, first, second, "surgeon", "wrong") == 401
            assert sign_in(client, a, a, "surgeon", PASSWORD) == 429
            assert sign_in(client, b, b, "surgeon", PASSWORD) == 429
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
