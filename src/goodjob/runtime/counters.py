"""The capsule's counters of recorded outcomes, per pool: a middleware like any other."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from goodjob.middleware import Middleware
from goodjob.records.claims import Outcome


class Counters(Middleware):
    """Counts outcomes once written: succeeded, and failed (a handled error included), per pool.

    Only written outcomes count, so nothing reports a job finished before its row says so.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self._pools: dict[int, list[int]] = {}  # pool index -> [succeeded, failed]

    def after_record(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            for outcome in outcomes:
                counts = self._pools.setdefault(outcome.job.pool, [0, 0])
                counts[outcome.failed] += 1
                if outcome.failed:
                    self.failed += 1
                else:
                    self.succeeded += 1

    def pool(self, index: int) -> dict[str, int]:
        """The counts of one pool, for its entry in the process state."""
        succeeded, failed = self._pools.get(index, (0, 0))
        return {"succeeded": succeeded, "failed": failed}

    def process_state(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "failed": self.failed}
