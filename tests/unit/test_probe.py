"""The probe server's answers and the systemd notify protocol, without a database."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from goodjob.probe import ProbeServer, SystemdNotifier


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_probe_answers_follow_the_checks() -> None:
    state = {"started": False, "connected": False}
    server = ProbeServer(
        0,
        host="127.0.0.1",
        started=lambda: state["started"],
        connected=lambda: state["connected"],
    )
    server.start()
    try:
        paths = ("/status", "/status/started", "/status/connected")
        assert [_get(server.port, p) for p in paths] == [200, 503, 503]
        state["connected"] = True
        assert _get(server.port, "/status/connected") == 503  # connected but not started
        state["started"] = True
        assert _get(server.port, "/status/started") == 200
        assert _get(server.port, "/status/connected") == 200
        assert _get(server.port, "/elsewhere") == 404
    finally:
        server.stop()


def test_systemd_notifications(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a watchdog ping every 50 ms
        notifier = SystemdNotifier(connected=lambda: True)
        notifier.ready()
        assert sock.recv(64) == b"READY=1"
        assert sock.recv(64) == b"WATCHDOG=1"
        notifier.stopping()
        messages = []
        while (message := sock.recv(64)) != b"STOPPING=1":
            messages.append(message)
        assert set(messages) <= {b"WATCHDOG=1"}


def test_systemd_notifier_is_a_no_op_without_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    notifier.ready()
    notifier.stopping()
