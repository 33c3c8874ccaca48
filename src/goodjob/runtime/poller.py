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

from goodjob.db import Database
from goodjob.errors import Error

logger = logging.getLogger("goodjob.poller")

DEGRADED_POLL_INTERVAL = 1.0  # seconds between polls while LISTEN is down
# Wake a little after the scheduled time: the claim compares with the database clock, and a
# wake-up a hair early would find the job not yet due.
TIMER_MARGIN = 0.003
DUE_NOW = 0.01  # seconds: a job due sooner than this is woken for at once, not timed

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


class DatabaseClock:
    """The database's clock, read from this process: all due times are the database's.

    Wake-up timers run on ``time.monotonic()``; a due time from the database (an epoch in its
    clock) is turned into a monotonic one with an offset measured against the database's
    ``clock_timestamp()`` at every warm-up, so a host whose clock is off by minutes still starts
    jobs on time (issue 11; DESIGN 1.3). Until the first measurement the local clock stands in.
    """

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()
        self.error = 0.0  # seconds the last measurement may be off: half its round trip

    def measured(self, db_epoch: float, sent: float, received: float) -> None:
        """Record the database's epoch seen between monotonic ``sent`` and ``received``."""
        self._offset = db_epoch - (sent + received) / 2
        self.error = (received - sent) / 2

    def monotonic(self, db_epoch: float) -> float:
        """The monotonic time at which the database's clock reads ``db_epoch``."""
        return db_epoch - self._offset

    def now(self) -> float:
        """The database's clock now, in epoch seconds."""
        return time.monotonic() + self._offset


class FutureCache:
    """Timers that wake the pools serving a queue when a scheduled job becomes due."""

    def __init__(self, database: Database | None, max_size: int, wake: Wake) -> None:
        self.database = database
        self.max_size = max_size
        self.wake = wake
        self.clock = DatabaseClock()
        self._heap: list[tuple[float, str]] = []  # (monotonic due time, queue)
        self._entries: set[tuple[float, str]] = set()
        self._cond = threading.Condition()
        self._stop = False
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

    def add(self, queue: str, db_epoch: float) -> bool:
        """Remember that a job on ``queue`` is due at ``db_epoch`` (the database's clock).

        Returns False when it is due already, so the caller wakes the queue now; True when it is
        not (a timer is set, or, with the cache full or disabled, the poller will find it).
        """
        at = self.clock.monotonic(db_epoch) + TIMER_MARGIN
        # The reading of the database's clock may be off by its error (half its round trip): a
        # timer set for `at` could fire before the job is due, its claim find nothing, and the
        # job wait for the next poll. So the timer is for the latest moment it can be due.
        latest = at + self.clock.error
        if at > time.monotonic() + DUE_NOW:
            return self._add(queue, latest)
        self._add(queue, latest)  # due now, as far as we can tell; a timer if it may not be
        return False

    def add_after(self, queue: str, seconds: float) -> bool:
        """:meth:`add` for a job due ``seconds`` from now (a retry's wait)."""
        return self._add(queue, time.monotonic() + seconds + TIMER_MARGIN)

    def _add(self, queue: str, at: float) -> bool:
        if at <= time.monotonic() + DUE_NOW:
            return False
        if self.max_size <= 0:
            return True
        entry = (round(at, 3), queue)
        with self._cond:
            if entry in self._entries:
                return True
            if len(self._heap) >= self.max_size:
                latest = max(self._heap)
                if entry >= latest:
                    return True  # later than everything kept: the poller will find it
                self._heap.remove(latest)
                self._entries.discard(latest)
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, entry)
            self._entries.add(entry)
            if self._heap[0] == entry:
                self._cond.notify()
        return True

    def warm(self, horizon: float | None = None) -> None:
        """Measure the database's clock and load the next ``max_size`` scheduled jobs' start
        times (due within ``horizon`` s).

        At start the whole cache is filled; each poll then only looks as far ahead as the next
        poll, which is all it must cover, so a large schedule costs a small query.
        """
        if self.database is None:
            return
        try:
            sent = time.monotonic()
            rows = self.database.execute(
                "runtime_future_jobs", {"limit": self.max_size, "horizon": horizon}
            )
            received = time.monotonic()
        except Error as exc:
            logger.warning("future-job cache warm-up failed: %s", exc)
            return
        self.clock.measured(float(rows[0]["now_epoch"]), sent, received)
        for row in rows:
            if row["queue_name"] is not None and not self.add(
                row["queue_name"], float(row["scheduled_epoch"])
            ):
                self.wake(row["queue_name"])

    def _run(self) -> None:
        while True:
            due: list[str] = []
            with self._cond:
                if self._stop:
                    return
                now = time.monotonic()
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
