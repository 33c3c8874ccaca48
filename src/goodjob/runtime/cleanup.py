"""Background cleanup of preserved job records.

Runs every ``cleanup_interval_jobs`` recorded jobs or every ``cleanup_interval_seconds``,
whichever comes first (0 disables a trigger, -1 means after every job), on its own thread,
deleting in chunks with SKIP LOCKED so it never blocks a claim or a completion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from goodjob.errors import Error

logger = logging.getLogger("goodjob.cleanup")


class Cleaner:
    """Calls ``cleanup`` (which deletes old finished jobs, returning how many) by job count and
    by time."""

    def __init__(
        self, cleanup: Callable[[], int], *, every_jobs: int, every_seconds: float
    ) -> None:
        self.cleanup = cleanup
        self.every_jobs = every_jobs
        self.every_seconds = every_seconds
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
                deleted = self.cleanup()
            except Error as exc:
                logger.warning("cleanup failed: %s", exc, extra={"action": "cleanup"})
                continue
            self.runs += 1
            self.deleted += deleted
            if deleted:
                logger.info("cleaned up %d preserved jobs", deleted, extra={"action": "cleanup"})
