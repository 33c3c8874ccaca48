"""A Scheduler: one thread pool serving one queue selection.

Threads sleep until woken (NOTIFY, poll, a future-job timer). A woken thread claims, runs and
keeps draining until a claim comes back empty. When several threads are idle, one claim
statement fetches a job for each of them (``claim(limit=1 + idle)``) and hands the extras over,
so a burst costs one round trip instead of one per thread. Outcomes go to the batching
:class:`~goodjob.runtime.completer.Completer`; the thread does not wait for them to be written.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from goodjob.errors import Error, JobInterrupted
from goodjob.performer import ClaimedJob, Outcome, Performer
from goodjob.queues import PoolSpec

if TYPE_CHECKING:
    from goodjob.app import GoodJob
    from goodjob.runtime.completer import Completer

logger = logging.getLogger("goodjob.scheduler")

CLAIM_ERROR_BACKOFF = 1.0  # seconds a thread waits after a failed claim (database down)


class Scheduler:
    """One pool of ``spec.threads`` threads claiming from ``spec.queues``."""

    def __init__(
        self,
        gj: GoodJob,
        spec: PoolSpec,
        completer: Completer,
        *,
        index: int,
        shutdown: threading.Event,
        loop: Any = None,
    ) -> None:
        self.gj = gj
        self.spec = spec
        self.index = index
        self.completer = completer
        self.performer = Performer(gj, spec.queues, loop=loop, shutdown=shutdown)
        self._shutdown = shutdown  # set: stop claiming (jobs see current_job().shutting_down)
        self._cond = threading.Condition()
        self._pending: collections.deque[ClaimedJob] = collections.deque()
        self._wakeups = 0
        self._idle = 0
        self._running: dict[int, ClaimedJob] = {}  # thread ident -> job it runs
        self._threads: list[threading.Thread] = []
        self.last_active = time.monotonic()
        self.claimed = 0
        self.succeeded = 0
        self.failed = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.spec.threads):
            thread = threading.Thread(
                target=self._work, name=f"goodjob-worker-{self.index}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop claiming; threads finish their current job and exit."""
        with self._cond:
            self._cond.notify_all()

    def join(self, deadline: float | None) -> bool:
        """Wait for the threads until ``deadline`` (monotonic; None waits forever)."""
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads)

    def take_unstarted(self) -> list[ClaimedJob]:
        """Claimed jobs no thread started (handed over as shutdown began): to be released."""
        with self._cond:
            jobs = list(self._pending)
            self._pending.clear()
        return jobs

    def running_jobs(self) -> list[ClaimedJob]:
        with self._cond:
            return list(self._running.values())

    def interrupt(self) -> None:
        """Raise JobInterrupted inside every thread still running a job (shutdown timeout)."""
        with self._cond:
            idents = list(self._running)
        for ident in idents:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(_ShutdownInterrupt)
            )

    # -- waking ---------------------------------------------------------------------------

    def wake(self, count: int = 1) -> None:
        """Ask up to ``count`` threads to look for work."""
        with self._cond:
            self._wakeups = min(self._wakeups + count, self.spec.threads)
            self._cond.notify(count)

    def serves(self, queue: str | None) -> bool:
        return queue is None or self.spec.queues.serves(queue)

    # -- figures --------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        return not self._running and not self._pending

    def state(self) -> dict[str, Any]:
        return {
            "queues": str(self.spec.queues),
            "max_threads": self.spec.threads,
            "busy_threads": len(self._running),
            "available_threads": self.spec.threads - len(self._running),
            "claimed": self.claimed,
            "succeeded": self.succeeded,
            "failed": self.failed,
        }

    # -- the thread -----------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._drain_loop()
        except _ShutdownInterrupt:
            return  # landed between jobs: the thread was stopping anyway

    def _drain_loop(self) -> None:
        ident = threading.get_ident()
        draining = False
        while True:
            job: ClaimedJob | None = None
            with self._cond:
                while (
                    not draining
                    and not self._pending
                    and self._wakeups == 0
                    and not self._shutdown.is_set()
                ):
                    self._idle += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._idle -= 1
                if self._shutdown.is_set():
                    return
                if self._pending:
                    job = self._pending.popleft()
                elif self._wakeups and not draining:
                    self._wakeups -= 1
                idle = self._idle
            if job is None:
                job = self._claim(1 + idle)
                if job is None:
                    draining = False
                    continue
            draining = True
            self._perform(ident, job)

    def _claim(self, limit: int) -> ClaimedJob | None:
        try:
            jobs = self.performer.claim(limit)
        except Error as exc:
            logger.warning("claim failed: %s", exc, extra={"action": "claim"})
            self._shutdown.wait(CLAIM_ERROR_BACKOFF)
            return None
        if not jobs:
            return None
        self.claimed += len(jobs)
        if len(jobs) > 1:
            with self._cond:
                self._pending.extend(jobs[1:])
                self._cond.notify(len(jobs) - 1)
        elif limit == 1 and self._idle:
            # Fan-out: a full batch suggests more work; let one more idle thread look.
            self.wake(1)
        return jobs[0]

    def _perform(self, ident: int, job: ClaimedJob) -> None:
        with self._cond:
            self._running[ident] = job
        outcome: Outcome | None = None
        try:
            outcome = self.performer.perform(job)
        except _ShutdownInterrupt:
            # Shutdown timeout: the capsule releases this job's claim itself.
            outcome = None
        finally:
            with self._cond:
                self._running.pop(ident, None)
            self.last_active = time.monotonic()
        if outcome is not None:
            self.completer.submit(self, outcome)


class _ShutdownInterrupt(JobInterrupted):
    """Delivered into a worker thread whose job outlived the shutdown timeout."""

    def __init__(self, reason: str = "the worker shut down before the job finished") -> None:
        super().__init__(reason)
