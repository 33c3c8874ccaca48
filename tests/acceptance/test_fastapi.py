"""The README's FastAPI example (``examples/fastapi_app.py``) under a real uvicorn server: the
async-mode worker starts with the app, runs the jobs its requests enqueue, and stops with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import EXAMPLES, sql, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOODJOB_")}
    env.update(DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)],
        cwd=EXAMPLES,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_jobs_run_inside_the_uvicorn_server_and_stop_with_it(
    server: tuple[subprocess.Popen[bytes], str], database_url: str, tmp_path: Path
) -> None:
    proc, base = server

    def up() -> bool:
        try:
            return httpx.get(f"{base}/docs").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=30, message="uvicorn to serve")
    job_id = httpx.post(f"{base}/signup", params={"address": "ada@example.com"}).json()["job"]
    state = wait_until(
        lambda: (s := httpx.get(f"{base}/jobs/{job_id}").json())["status"] == "succeeded" and s,
        timeout=15,
        message="the job to succeed",
    )
    assert state["result"] == "welcome sent to ada@example.com"
    # The worker is the server's own: one process row, its pid the server's.
    rows = sql(database_url, "SELECT state->>'pid' FROM goodjob_processes")
    assert rows == [(str(proc.pid),)]

    proc.send_signal(signal.SIGTERM)
    # Recent uvicorns shut down gracefully, then end by the signal they were sent.
    assert proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "uvicorn.log").read_text()
    assert sql(database_url, "SELECT count(*) FROM goodjob_processes") == [(0,)]
