"""Background cleanup of preserved job records.

Runs every ``cleanup_interval_jobs`` recorded jobs or every ``cleanup_interval_seconds``,
whichever comes first (0 disables a trigger, -1 means after every job), on its own thread,
deleting in chunks with SKIP LOCKED so it never blocks a claim or a completion.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from goodjob.errors import Error

if TYPE_CHECKING:
    from goodjob.app import GoodJob

logger = logging.getLogger("goodjob.cleanup")

CHUNK = 1_000  # rows per DELETE: short transactions, no long row locks


def cleanup_preserved(gj: GoodJob, older_than: float | None = None) -> int:
    """Delete finished jobs older than ``older_than`` seconds (the setting by default)."""
    settings = gj.settings
    params = {
        "older_than": settings.cleanup_preserved_jobs_before_seconds_ago
        if older_than is None
        else older_than,
        "include_discarded": settings.cleanup_discarded_jobs,
        "chunk": CHUNK,
    }
    total = 0
    while True:
        deleted = int(gj.database.execute("runtime_cleanup_preserved", params)[0]["deleted"])
        total += deleted
        if deleted < CHUNK:
            return total


class Cleaner:
    """Triggers :func:`cleanup_preserved` by job count and by time."""

    def __init__(self, gj: GoodJob) -> None:
        self.gj = gj
        self.every_jobs = gj.settings.cleanup_interval_jobs
        self.every_seconds = gj.settings.cleanup_interval_seconds
        self._jobs = 0
        self._last = time.monotonic()
        self._event = threading.Event()
        self._stop = threading.Event()
        self.runs = 0
        self.deleted = 0
        self._thread = threading.Thread(target=self._run, name="goodjob-cleanup", daemon=True)

    @property
    def enabled(self) -> bool:
        return self.every_jobs != 0 or self.every_seconds != 0

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def jobs_recorded(self, count: int) -> None:
        self._jobs += count
        if self.every_jobs < 0 or self.every_seconds < 0 or 0 < self.every_jobs <= self._jobs:
            self._event.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self.every_seconds if self.every_seconds > 0 else None
            if timeout is not None:
                timeout = max(0.0, self._last + timeout - time.monotonic())
            self._event.wait(timeout)
            self._event.clear()
            if self._stop.is_set():
                return
            self._jobs = 0
            self._last = time.monotonic()
            try:
                deleted = cleanup_preserved(self.gj)
            except Error as exc:
                logger.warning("cleanup failed: %s", exc, extra={"action": "cleanup"})
                continue
            self.runs += 1
            self.deleted += deleted
            if deleted:
                logger.info("cleaned up %d preserved jobs", deleted, extra={"action": "cleanup"})
