"""The cron manager: one thread, one timer for the next due run of every entry.

Every process with cron enabled runs one; each enqueues every run of every entry, and the
database keeps the one that comes first (``records/cron_runs.py``): no leader election, nothing
lost when a process dies. Times come from the database's clock (the capsule's
:class:`~goodjob.runtime.poller.DatabaseClock`), so hosts whose clocks disagree still enqueue
the same runs. At start, runs missed within ``cron_graceful_restart_period`` are enqueued once
each (older ones are skipped, and an entry that never ran has missed nothing); a run that
cannot be enqueued (the database is away) is tried again until it is as old as that period, or
a minute.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import threading
from collections.abc import Callable, Sequence

from goodjob.cron import CronEntry
from goodjob.db import Database
from goodjob.errors import Error
from goodjob.middleware import MiddlewareChain
from goodjob.options import JobRequest
from goodjob.records import cron_runs
from goodjob.runtime.poller import DatabaseClock

logger = logging.getLogger("goodjob.cron")

RETRY_BACKOFF = 1.0  # seconds between attempts at a run the database refused
MIN_RETRY_PERIOD = 60.0  # seconds: a failed run is tried again for at least this long
MAX_SLEEP = 30.0  # seconds: wake at least this often, to follow corrections of the clock


class CronManager:
    """Enqueues the runs of ``entries`` as they come due."""

    def __init__(
        self,
        database: Database,
        entries: Sequence[CronEntry],
        requests: Callable[[CronEntry], JobRequest],
        clock: DatabaseClock,
        *,
        graceful_restart_period: float | None,
        errors: MiddlewareChain | None = None,
    ) -> None:
        self.database = database
        self.entries = tuple(entries)
        self.requests = {entry.key: requests(entry) for entry in self.entries}
        self.clock = clock
        self.period = graceful_restart_period or 0.0
        self.errors = errors or MiddlewareChain()
        self.enqueued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="goodjob-cron", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now(), dt.UTC)

    def _run(self) -> None:
        due: list[tuple[dt.datetime, int]] = []
        for index, entry in enumerate(self.entries):
            first = entry.next_run(self._catch_up_from(entry))
            if first is not None:
                due.append((first, index))
        heapq.heapify(due)
        retry_for = max(self.period, MIN_RETRY_PERIOD)
        while due and not self._stop.is_set():
            at, index = due[0]
            wait = at.timestamp() - self.clock.now()
            if wait > 0:
                self._stop.wait(min(wait, MAX_SLEEP))
                continue
            entry = self.entries[index]
            if not self._enqueue(entry, at):
                if self.clock.now() - at.timestamp() < retry_for:
                    self._stop.wait(RETRY_BACKOFF)
                    continue
                logger.error(
                    "cron run skipped: it could not be enqueued in time",
                    extra={"cron_key": entry.key, "cron_at": at.isoformat()},
                )
            following = entry.next_run(at)
            if following is None:
                heapq.heappop(due)
            else:
                heapq.heapreplace(due, (following, index))

    def _catch_up_from(self, entry: CronEntry) -> dt.datetime:
        """Where an entry's runs start: after its last run enqueued (by any process), if that
        is within the graceful restart period, so the runs missed since are enqueued; else now.
        An entry that never ran has missed nothing."""
        now = self._now()
        if self.period <= 0:
            return now
        try:
            state = cron_runs.states(self.database).get(entry.key)
        except Error as exc:
            logger.warning("cron catch-up skipped: %s", exc, extra={"cron_key": entry.key})
            return now
        if state is None or state.last_at is None:
            return now
        return max(state.last_at, now - dt.timedelta(seconds=self.period))

    def _enqueue(self, entry: CronEntry, at: dt.datetime) -> bool:
        """Enqueue one run; False when the database could not be asked."""
        try:
            job_id = cron_runs.enqueue_run(
                self.database,
                entry.key,
                at,
                self.requests[entry.key],
                enabled_by_default=entry.enabled_by_default,
            )
        except Error as exc:
            logger.warning("cron run of %s failed: %s", entry.key, exc, extra={"action": "cron"})
            self.errors.on_error(exc)
            return False
        if job_id is not None:
            self.enqueued += 1
            logger.info(
                "enqueued cron run %s at %s",
                entry.key,
                at.isoformat(),
                extra={"cron_key": entry.key, "cron_at": at.isoformat(), "job_id": str(job_id)},
            )
        return True
