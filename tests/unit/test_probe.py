"""The probe server's answers and the systemd notify protocol, without a database."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from goodjob import ConfigurationError, Settings, probe
from goodjob.cli.main import main
from goodjob.probe import MAX_CONCURRENT, ProbeServer, SystemdNotifier
from tests.helpers import wait_until

UNFINISHED = b"GET /status HTTP/1.0\r\n"  # a request line whose headers never end


def _get(port: int, path: str, host: str = "127.0.0.1") -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as response:
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


@contextlib.contextmanager
def _running() -> Iterator[ProbeServer]:
    server = ProbeServer(0, host="127.0.0.1", started=lambda: True, connected=lambda: True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=2)


def _closed_by_server(sock: socket.socket, deadline: float, *, trickle: bool = False) -> bool:
    """Whether the server closes ``sock`` before ``deadline`` (a time.monotonic() value); with
    ``trickle``, the client meanwhile sends one more header byte every 0.1 s."""
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(min(remaining, 0.1) if trickle else remaining)
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            if trickle:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")
        except ConnectionResetError:
            return True
    return False


def test_silent_connections_hold_no_thread_and_do_not_block_the_probe() -> None:
    # issue 11: each connection used to get a thread that waited for its request for ever.
    threads_before = threading.active_count()
    with _running() as server, contextlib.ExitStack() as stack:
        for _ in range(50):
            stack.enter_context(_connect(server.port))
        asked = time.monotonic()
        assert _get(server.port, "/status") == 200
        assert time.monotonic() - asked < 2
        # The accepting thread, and a request thread that may not have ended yet.
        assert threading.active_count() - threads_before <= MAX_CONCURRENT + 2


def test_clients_that_do_not_finish_their_request_are_disconnected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probe, "REQUEST_TIMEOUT", 0.5)
    with (
        _running() as server,
        _connect(server.port) as silent,
        _connect(server.port) as unfinished,
        _connect(server.port) as trickling,
    ):
        unfinished.sendall(UNFINISHED)
        trickling.sendall(UNFINISHED + b"X-Slow: ")
        # Up to 0.5 s to start a request plus 0.5 s to finish it, and a margin for a slow host.
        deadline = time.monotonic() + 2.5
        assert _closed_by_server(trickling, deadline, trickle=True)  # first: it trickles now
        assert _closed_by_server(silent, deadline)
        assert _closed_by_server(unfinished, deadline)


def test_requests_beyond_the_slots_are_answered_503_at_once() -> None:
    threads_before = threading.active_count()
    with _running() as server, contextlib.ExitStack() as stack:
        for _ in range(MAX_CONCURRENT):
            stack.enter_context(_connect(server.port)).sendall(UNFINISHED)
        wait_until(
            lambda: _get(server.port, "/status") == 503,
            timeout=3,
            message="a 503 while every slot holds an unfinished request",
        )
        assert threading.active_count() - threads_before <= MAX_CONCURRENT + 2
        stack.close()  # the clients hang up, their requests end and free their slots
        wait_until(lambda: _get(server.port, "/status") == 200, timeout=3, message="a free slot")


def test_stop_does_not_wait_for_clients() -> None:
    server = ProbeServer(0, host="127.0.0.1", started=lambda: True, connected=lambda: True)
    server.start()
    with _connect(server.port), _connect(server.port) as unfinished:
        unfinished.sendall(UNFINISHED)
        stopper = threading.Thread(target=server.stop, daemon=True)
        stopper.start()
        stopper.join(3)
        assert not stopper.is_alive()


def test_the_probe_host_setting() -> None:
    with _running() as server:
        assert server._server.server_address[0] == "127.0.0.1"
    assert Settings.load(environ={}).probe_host == "0.0.0.0"
    assert Settings.load(environ={"GOODJOB_PROBE_HOST": "127.0.0.1"}).probe_host == "127.0.0.1"
    for empty in ("", "  "):
        with pytest.raises(ConfigurationError, match="GOODJOB_PROBE_HOST"):
            Settings.load(environ={"GOODJOB_PROBE_HOST": empty})
    assert "--probe-host" in CliRunner().invoke(main, ["start", "--help"]).output


def test_an_ipv6_probe_host() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = ProbeServer(0, host="::1", started=lambda: True, connected=lambda: True)
    server.start()
    try:
        assert _get(server.port, "/status", host="[::1]") == 200
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


def test_metrics_are_served_when_given_and_a_failing_render_is_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    renders = [b"goodjob_processes 1.0\n"]

    def render() -> bytes:
        if not renders:
            raise RuntimeError("database down")
        return renders.pop()

    without = ProbeServer(0, host="127.0.0.1", started=lambda: True, connected=lambda: True)
    served = ProbeServer(
        0, host="127.0.0.1", started=lambda: True, connected=lambda: True, metrics=render
    )
    without.start()
    served.start()
    try:
        assert _get(without.port, "/metrics") == 404  # enable_metrics off: no such page
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=2) as r:
            assert r.read() == b"goodjob_processes 1.0\n"
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert _get(served.port, "/metrics") == 503
        assert "/metrics failed" in caplog.text
        assert _get(served.port, "/status") == 200  # the probes go on
    finally:
        without.stop()
        served.stop()
