"""Real `ho-tracker serve` processes for the tests that need more than one app: a
free port, the process started on it, and the wait until it answers /healthz."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60.0  # a loaded 2-core machine has taken 26 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`ho-tracker serve` on `port` with `env`, its output appended to `log`."""
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
    """Until `base` answers /healthz (a loaded machine may take a while to start);
    the end of `log` is the failure's message if the process exits or never answers."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{base} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} not healthy: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def serving(env: dict[str, str], logs: Sequence[Path]) -> Iterator[list[str]]:
    """One `ho-tracker serve` per log, each on a free port and healthy: their base
    URLs. On leaving, each is stopped (killed if it has not stopped within 10 s)."""
    ports = [free_port() for _ in logs]
    processes = [serve(env, port, log) for port, log in zip(ports, logs, strict=True)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process, log in zip(bases, processes, logs, strict=True):
            wait_healthy(base, process, log)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
