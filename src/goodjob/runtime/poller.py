"""The Poller (the safety net behind LISTEN/NOTIFY) and the future-job cache.

The Poller wakes every pool each ``poll_interval`` seconds; while the notifier is down it polls
every second instead, so work still starts promptly. The FutureCache keeps wake-up timers for
jobs scheduled in the future (from NOTIFY payloads, retries and a warm-up query at start), so a
job scheduled for T starts at T rather than at the next poll. It holds at most ``max_cache``
timers, keeping the earliest; the poller re-warms it, so an overflow only delays the late ones.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from goodjob.errors import Error

if TYPE_CHECKING:
    from goodjob.app import GoodJob

logger = logging.getLogger("goodjob.poller")

DEGRADED_POLL_INTERVAL = 1.0  # seconds between polls while LISTEN is down
# Wake a little after the scheduled time: the claim compares with the database clock, and a
# wake-up a hair early would find the job not yet due.
TIMER_MARGIN = 0.003

Wake = Callable[[str | None], None]


class Poller:
    """Calls ``tick()`` every poll interval (or faster while ``degraded()`` says so)."""

    def __init__(
        self, interval: float, tick: Callable[[], None], degraded: Callable[[], bool]
    ) -> None:
        self.interval = interval
        self.tick = tick
        self.degraded = degraded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="goodjob-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            if self.degraded():
                wait = DEGRADED_POLL_INTERVAL
            elif self.interval > 0:
                wait = self.interval
            else:
                wait = DEGRADED_POLL_INTERVAL  # polling disabled: only check for degradation
            if self._stop.wait(wait):
                return
            if self.interval > 0 or self.degraded():
                try:
                    self.tick()
                except Exception:
                    logger.exception("poll failed")


class FutureCache:
    """Timers that wake the pools serving a queue when a scheduled job becomes due."""

    def __init__(self, gj: GoodJob, max_size: int, wake: Wake) -> None:
        self.gj = gj
        self.max_size = max_size
        self.wake = wake
        self._heap: list[tuple[float, str]] = []
        self._entries: set[tuple[float, str]] = set()
        self._cond = threading.Condition()
        self._stop = False
        self._offset = 0.0  # database clock minus local clock, measured at each warm-up
        self._thread = threading.Thread(target=self._run, name="goodjob-future-cache", daemon=True)

    def __len__(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    def add(self, queue: str, db_epoch: float) -> None:
        """Remember that a job on ``queue`` is due at ``db_epoch`` (database clock)."""
        if self.max_size <= 0:
            return
        at = db_epoch - self._offset + TIMER_MARGIN
        if at <= time.time():
            self.wake(queue)
            return
        entry = (round(at, 3), queue)
        with self._cond:
            if entry in self._entries:
                return
            if len(self._heap) >= self.max_size:
                latest = max(self._heap)
                if entry >= latest:
                    return  # later than everything kept: the poller will find it
                self._heap.remove(latest)
                self._entries.discard(latest)
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, entry)
            self._entries.add(entry)
            if self._heap[0] == entry:
                self._cond.notify()

    def warm(self, horizon: float | None = None) -> None:
        """Load the next ``max_size`` scheduled jobs' start times (due within ``horizon`` s).

        At start the whole cache is filled; each poll then only looks as far ahead as the next
        poll, which is all it must cover, so a large schedule costs a small query.
        """
        if self.max_size <= 0:
            return
        try:
            rows = self.gj.database.execute(
                "runtime_future_jobs", {"limit": self.max_size, "horizon": horizon}
            )
        except Error as exc:
            logger.warning("future-job cache warm-up failed: %s", exc)
            return
        if rows:
            self._offset = float(rows[0]["now_epoch"]) - time.time()
        for row in rows:
            if row["queue_name"] is not None:
                self.add(row["queue_name"], float(row["scheduled_epoch"]))

    def _run(self) -> None:
        while True:
            due: list[str] = []
            with self._cond:
                if self._stop:
                    return
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    entry = heapq.heappop(self._heap)
                    self._entries.discard(entry)
                    due.append(entry[1])
                if not due:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout)
                    continue
            for queue in dict.fromkeys(due):
                self.wake(queue)
