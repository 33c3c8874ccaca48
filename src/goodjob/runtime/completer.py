"""The Completer: records outcomes in batches, one ``complete()`` statement per flush.

Worker threads hand their outcome over and go straight back to claiming; this thread writes
what accumulated every few milliseconds. Counters (succeeded, failed) move only after the row
is written, so nothing reports a job finished before its row says so. When the database is
down, outcomes are kept and written once it is back (the claims stay fenced meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from goodjob.errors import Error
from goodjob.performer import Outcome, Performer

if TYPE_CHECKING:
    from goodjob.runtime.scheduler import Scheduler

logger = logging.getLogger("goodjob.completer")

FLUSH_INTERVAL = 0.002  # seconds of accumulation before a flush: batches a burst
RETRY_BACKOFF = 0.5  # seconds between attempts while the database is unreachable
MAX_BATCH = 500


class Completer:
    """Accumulates outcomes from every scheduler of a capsule and writes them in batches."""

    def __init__(
        self,
        performer: Performer,
        *,
        on_recorded: Callable[[list[tuple[Scheduler, Outcome]]], None] | None = None,
    ) -> None:
        self.performer = performer
        self.on_recorded = on_recorded
        self._lock = threading.Lock()
        self._queue: list[tuple[Scheduler, Outcome]] = []
        self._event = threading.Event()
        self._stopping = False
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="goodjob-completer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, scheduler: Scheduler, outcome: Outcome) -> None:
        with self._lock:
            self._queue.append((scheduler, outcome))
        self._event.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def stop(self, timeout: float | None = 10.0) -> None:
        """Write everything submitted so far, then stop."""
        self._stopping = True
        self._event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._event.wait()
            if not self._stopping:
                time.sleep(FLUSH_INTERVAL)
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._in_flight = len(batch)
                if not self._queue:
                    self._event.clear()
            if batch:
                self._flush(batch)
            with self._lock:
                self._in_flight = 0
                done = self._stopping and not self._queue
            if done:
                return

    def _flush(self, batch: list[tuple[Scheduler, Outcome]]) -> None:
        attempts = 0
        while True:
            try:
                recorded = self.performer.complete([outcome for _, outcome in batch])
                break
            except Error as exc:
                attempts += 1
                if self._stopping and attempts >= 3:
                    # Shutting down with the database gone: the claims are released by the
                    # sweep of whichever process sees this one's row die.
                    logger.error("outcomes not recorded: %s", exc, extra={"action": "complete"})
                    return
                logger.warning("recording outcomes failed: %s; retrying", exc)
                time.sleep(RETRY_BACKOFF)
        if self.on_recorded is not None:
            # Only what was written counts; a fenced (zombie) outcome was logged by complete().
            self.on_recorded([(s, o) for s, o in batch if o.job.id in recorded])
