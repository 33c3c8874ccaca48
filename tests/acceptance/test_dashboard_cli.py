"""``goodjob dashboard`` (issue 17): the real command serves the dashboard, on 127.0.0.1 unless
told otherwise, and stops on SIGTERM, with success."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_addresses(port: int) -> list[str]:
    """The IPv4 addresses a socket listens on at ``port`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_the_command_serves_the_dashboard_on_localhost(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "GOODJOB_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "dashboard.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "goodjob", "dashboard", "--port", str(port), "--read-only"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:

        def up() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=2)
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
                return None

        page = wait_until(up, timeout=30, interval=0.1, message="the dashboard to answer")
        assert page.status_code == 200
        assert "read-only" in page.text
        assert _listening_addresses(port) == ["127.0.0.1"]
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, and the command exits with success.
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = (tmp_path / "dashboard.log").read_text()
    assert f"http://127.0.0.1:{port}/" in output
    assert "Finished server process" in output
