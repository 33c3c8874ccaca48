"""Health probes: an HTTP server for orchestrators and systemd's notify protocol.

Endpoints (GoodJob's meanings): ``/status`` 200 while the process runs; ``/status/started`` 200
once the worker runs its pools; ``/status/connected`` 200 once it is started and connected
(LISTEN up, or the database answering when LISTEN/NOTIFY is off); 503 otherwise. With
``NOTIFY_SOCKET`` set (systemd ``Type=notify``), :class:`SystemdNotifier` sends ``READY=1`` once
started, ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while connected, and ``STOPPING=1``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("goodjob.probe")

Check = Callable[[], bool]


class ProbeServer:
    """Serves the status endpoints on ``port`` (0 picks a free port; see ``.port``)."""

    def __init__(
        self, port: int, *, started: Check, connected: Check, host: str = "0.0.0.0"
    ) -> None:
        checks: dict[str, Check] = {
            "/status": lambda: True,
            "/status/started": started,
            "/status/connected": lambda: started() and connected(),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?")[0].rstrip("/") or "/")
                if check is None:
                    self._reply(404, "not found")
                    return
                ok = False
                with contextlib.suppress(Exception):
                    ok = check()
                self._reply(200 if ok else 503, "OK" if ok else "Service Unavailable")

            def _reply(self, code: int, text: str) -> None:
                body = (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug(format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="goodjob-probe", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        logger.info("probe server on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SystemdNotifier:
    """sd_notify without libsystemd: datagrams to ``$NOTIFY_SOCKET``; a no-op when unset."""

    def __init__(self, connected: Check | None = None) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET")
        self.connected = connected
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_interval = int(usec) / 2_000_000 if usec and usec.isdigit() else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> None:
        if not self.address:
            return
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
        except OSError as exc:
            logger.warning("systemd notify failed: %s", exc)

    def ready(self) -> None:
        self.notify("READY=1")
        if self.enabled and self.watchdog_interval:
            self._thread = threading.Thread(
                target=self._watchdog, name="goodjob-watchdog", daemon=True
            )
            self._thread.start()

    def stopping(self) -> None:
        self.notify("STOPPING=1")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watchdog(self) -> None:
        assert self.watchdog_interval is not None
        while not self._stop.wait(self.watchdog_interval):
            if self.connected is None or self.connected():
                self.notify("WATCHDOG=1")
