"""The Notifier: LISTEN on a dedicated connection and wake the pools that serve a queue.

The same connection holds the process row's session advisory lock (when
``advisory_lock_heartbeat`` is on), so the lock lives exactly as long as the session this process
listens on; heartbeats go through the pool. When the connection drops (database restart, network
cut) the notifier reports itself down, drops the lock registration, and reconnects with
exponential back-off; meanwhile the poller polls quickly. After a reconnect every pool is woken
once, because NOTIFYs sent while it was away are lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

from goodjob.capsule_tracker import CapsuleTracker
from goodjob.db import CHANNEL, Database, DedicatedConnection
from goodjob.errors import Error
from goodjob.middleware import MiddlewareChain

logger = logging.getLogger("goodjob.notifier")

WAIT_SLICE = 1.0  # seconds per wait for notifications, so a stop request is seen promptly
KEEPALIVE_INTERVAL = 10.0  # seconds between pings of an otherwise silent connection
BACKOFF_FIRST = 0.2  # seconds before the first reconnect attempt
BACKOFF_MAX = 5.0

Handler = Callable[[str | None, float | None], None]  # (queue, scheduled_at epoch seconds)


class Notifier:
    """Listens for NOTIFYs on channel ``goodjob`` and calls ``on_notify(queue, scheduled_at)``,
    or ``on_cancel(job_id, attempt)`` for a cancelled running job."""

    def __init__(
        self,
        database: Database,
        tracker: CapsuleTracker,
        on_notify: Handler,
        *,
        on_reconnect: Callable[[], None] | None = None,
        on_cancel: Callable[[uuid.UUID, int], None] | None = None,
        hold_advisory_lock: bool = True,
        errors: MiddlewareChain | None = None,
    ) -> None:
        self.errors = errors or MiddlewareChain()
        self.database = database
        self.tracker = tracker
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.on_cancel = on_cancel
        self.hold_advisory_lock = hold_advisory_lock
        self.connected = threading.Event()
        self.ever_connected = False
        self._stop = threading.Event()
        self._conn: DedicatedConnection | None = None
        self._registered = False
        self._thread = threading.Thread(target=self._run, name="goodjob-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; drops the advisory lock registration (on the notifier's thread)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                self._connect()
                backoff = BACKOFF_FIRST
                self._listen()
            except Error as exc:
                if self._stop.is_set():
                    break
                logger.warning(
                    "notifier disconnected: %s; reconnecting in %.1fs",
                    exc,
                    backoff,
                    extra={"action": "notifier_down"},
                )
                self.errors.on_error(exc)
            finally:
                self._disconnect()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _connect(self) -> None:
        conn = self.database.dedicated("notifier", url=self.database.listen_url)
        self._conn = conn
        conn.listen(CHANNEL)
        if self.hold_advisory_lock:
            self.tracker.register(with_advisory_lock=True, connection=conn)
            self._registered = True
        reconnect = self.ever_connected
        self.ever_connected = True
        self.connected.set()
        logger.info("listening", extra={"action": "notifier_up", "reconnect": reconnect})
        if self.on_reconnect is not None:
            self.on_reconnect()  # NOTIFYs sent while disconnected are lost: look now

    def _listen(self) -> None:
        assert self._conn is not None
        last_traffic = time.monotonic()
        while not self._stop.is_set():
            payloads = self._conn.notifies(WAIT_SLICE)
            now = time.monotonic()
            if payloads:
                last_traffic = now
                for payload in payloads:
                    self._dispatch(payload)
            elif now - last_traffic >= KEEPALIVE_INTERVAL:
                if not self._conn.ping():
                    raise Error("keepalive ping failed")
                last_traffic = now

    def _dispatch(self, payload: str) -> None:
        queue: str | None = None
        scheduled_at: float | None = None
        try:
            data = json.loads(payload)
            if isinstance(data, dict):
                if "cancel" in data and self.on_cancel is not None:
                    # job_cancel: a running job was cancelled. (Its queue is woken as well, as
                    # for any payload naming one.)
                    self.on_cancel(uuid.UUID(str(data["cancel"])), int(data["attempt"]))
                queue = data.get("queue")
                raw = data.get("scheduled_at")
                scheduled_at = float(raw) if raw is not None else None
        except (ValueError, TypeError):
            logger.debug("ignoring unparseable payload %r", payload)
        self.on_notify(queue, scheduled_at)

    def _disconnect(self) -> None:
        self.connected.clear()
        if self._registered:
            self._registered = False
            tracker = self.tracker
            try:
                tracker.unregister(with_advisory_lock=True)
            except Error as exc:
                logger.debug("advisory unlock on a broken connection: %s", exc)
            if tracker.locks and not self._stop.is_set():
                # Only the LISTEN session may have died (a proxy's idle timeout, a terminated
                # backend) while this process is healthy: mark the row heartbeat-only at once,
                # so other processes' sweeps judge it by its heartbeat instead of the lost lock
                # and do not re-run its jobs. If the database is unreachable this fails, and the
                # row dies with the lock, as it should.
                try:
                    tracker.heartbeat_only()
                except Error as exc:
                    logger.debug("could not mark the row heartbeat-only: %s", exc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
