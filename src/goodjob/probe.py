"""Health probes: an HTTP server for orchestrators and systemd's notify protocol.

Endpoints (GoodJob's meanings): ``/status`` 200 while the process runs; ``/status/started`` 200
once the worker runs its pools; ``/status/connected`` 200 once it is started and connected
(LISTEN up, or the database answering when LISTEN/NOTIFY is off); 503 otherwise. With the
``enable_metrics`` setting, ``/metrics`` serves Prometheus metrics (goodjob.metrics). With
``NOTIFY_SOCKET`` set (systemd ``Type=notify``), :class:`SystemdNotifier` sends ``READY=1`` once
started, ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while connected, and ``STOPPING=1``.

The probe server answers anyone who can reach its port, so clients that connect and never finish
a request (a "slowloris") must not pile up threads or connections (issue 11): a connection costs
no thread until it sends something, a client has ``REQUEST_TIMEOUT`` seconds to start its request
and as long again to finish it, and at most ``MAX_CONCURRENT`` requests are handled at once (any
more are answered 503 at once).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

logger = logging.getLogger("goodjob.probe")

Check = Callable[[], bool]

REQUEST_TIMEOUT = 5.0  # seconds a client has to start its request, then as long to finish it
MAX_CONCURRENT = 8  # requests handled at once, one thread each; any more are answered 503
MAX_WAITING = 64  # connections that have sent nothing yet; a new one beyond this closes the oldest
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format
_POLL_INTERVAL = 0.5  # seconds; how soon the accepting loop notices stop()
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)


class ProbeServer:
    """Serves the status endpoints on ``host``:``port`` (0 picks a free port; see ``.port``)."""

    def __init__(
        self,
        port: int,
        *,
        started: Check,
        connected: Check,
        host: str = "0.0.0.0",
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        checks: dict[str, Check] = {
            "/status": lambda: True,
            "/status/started": started,
            "/status/connected": lambda: started() and connected(),
        }

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT  # the socket's: no single read or write waits longer
            # Errors (a malformed request, a method other than GET) get one line of text, not
            # BaseHTTP's HTML page.
            error_message_format = "%(code)d %(message)s\n"
            error_content_type = "text/plain"

            def setup(self) -> None:
                super().setup()
                # issue 11: the socket timeout bounds each read, so a client sending a byte every
                # few seconds would keep this thread for ever; one deadline bounds the request.
                self.rfile.close()
                self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.timeout))

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/") or "/"
                if path == "/metrics" and metrics is not None:
                    self._metrics(metrics)
                    return
                check = checks.get(path)
                if check is None:
                    self._reply(404, "not found")
                    return
                ok = False
                with contextlib.suppress(Exception):
                    ok = check()
                self._reply(200 if ok else 503, "OK" if ok else "Service Unavailable")

            def _metrics(self, render: Callable[[], bytes]) -> None:
                try:
                    body = render()
                except Exception:
                    # The database is down, say: the scrape fails visibly, the worker goes on.
                    logger.exception("/metrics failed")
                    self._reply(503, "metrics unavailable")
                    return
                self._reply(200, body, METRICS_CONTENT_TYPE)

            def _reply(self, code: int, text: str | bytes, kind: str = "text/plain") -> None:
                body = text if isinstance(text, bytes) else (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # The standard reason only: BaseHTTP's messages quote the request line back,
                # up to 64 KiB of it, in the status line and the body.
                super().send_error(code)

            def version_string(self) -> str:
                return "goodjob"  # not BaseHTTP's default, which names the Python version

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug(format, *args)

        self._server = _Server((host, port), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve, name="goodjob-probe", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        logger.info("probe server on %s port %d", self._server.server_address[0], self.port)

    def stop(self) -> None:
        """Stop accepting and close the port; requests in flight end by their own deadline."""
        self._server.stopping.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        self._server.server_close()


class _Server(socketserver.TCPServer):
    """A TCP server whose connections cannot pile up threads (issue 11).

    :meth:`serve` replaces ``serve_forever``: one thread accepts connections and watches them in
    a selector until they send something, so a client that connects and stays silent holds a file
    descriptor (at most ``MAX_WAITING``) but no thread, and is closed after ``REQUEST_TIMEOUT``.
    A connection that has sent something is handled on a daemon thread of its own, at most
    ``MAX_CONCURRENT`` at once; when every slot is busy it is answered 503 from the accepting
    thread instead of getting another thread.
    """

    allow_reuse_address = True
    request_queue_size = MAX_WAITING  # the listen() backlog; the default of 5 drops bursts

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._request_timeout = REQUEST_TIMEOUT
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    def serve(self) -> None:
        """Accept, wait for the first bytes, and dispatch connections until ``stopping``."""
        # Silent connections, oldest first; as every one waits as long, the first expires first.
        waiting: dict[socket.socket, float] = {}
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:

            def forget(conn: socket.socket) -> None:
                selector.unregister(conn)
                del waiting[conn]

            selector.register(self.socket, selectors.EVENT_READ)
            while not self.stopping.is_set():
                wait = _POLL_INTERVAL
                if waiting:
                    wait = min(wait, max(0.0, next(iter(waiting.values())) - time.monotonic()))
                for key, _ in selector.select(wait):
                    if key.data is None:  # the listening socket
                        try:
                            conn, address = self.socket.accept()
                        except OSError:  # the client went away before we accepted it
                            continue
                        if len(waiting) >= MAX_WAITING:
                            oldest = next(iter(waiting))
                            forget(oldest)
                            oldest.close()
                        waiting[conn] = time.monotonic() + self._request_timeout
                        selector.register(conn, selectors.EVENT_READ, (conn, address))
                    elif key.data[0] in waiting:  # not evicted earlier in this same round
                        conn, address = key.data
                        forget(conn)
                        self.process_request(conn, address)
                now = time.monotonic()
                while waiting and next(iter(waiting.values())) <= now:
                    expired = next(iter(waiting))
                    forget(expired)
                    expired.close()
            for conn in waiting:
                conn.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle the request on a thread of its own if a slot is free, else answer 503 now."""
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        thread = threading.Thread(
            target=self._handle,
            args=(request, client_address),
            name="goodjob-probe-request",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had
            self._slots.release()
            self._refuse(request)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        request.setblocking(False)  # the accepting thread must never wait on a client
        with contextlib.suppress(OSError):
            request.recv(65536)  # read what was sent, so that closing does not reset the 503
        with contextlib.suppress(OSError):
            request.sendall(_BUSY)  # a few bytes into an empty send buffer
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is routine here, not a traceback on stderr.
        logger.debug("probe request from %s failed", client_address, exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with one deadline for all reads together (issue 11: a timeout per read
    lets a client that sends a byte every few seconds hold its thread for ever)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = time.monotonic() + timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took too long")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


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
