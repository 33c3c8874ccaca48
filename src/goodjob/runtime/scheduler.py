"""A Scheduler: one thread pool serving one queue selection.

A claimer thread sleeps until woken (NOTIFY, poll, a future-job timer), then claims as many jobs
as the pool has free threads, in one statement, and hands them to those threads; a single
wake-up (a poll) puts every thread to work (fan-out). While claims bring jobs back it keeps
draining: it claims again, in one statement, as soon as fewer jobs wait than there are threads.
A full claim starts a drain and only an empty one ends it; the claimer then sleeps until the
next wake-up. Outcomes go to the batching :class:`~goodjob.runtime.completer.Completer`;
threads do not wait for them to be written.

**Claiming ahead, bounded by time** (issue 12). While draining, the pool also claims the jobs
its threads will start within a window (:data:`AHEAD_WINDOW`, or a claim's round trip if that is
longer), so that a thread finishing a short job finds the next one waiting instead of waiting
for a claim. It judges from moving averages of how long jobs take (for the pool and for each
task) and of how fast the pool finishes them: only free threads, and threads running a task that
usually ends within the window, count as about to start another; a task never timed counts as
long. Jobs that take a second are never claimed ahead: a job claimed ahead waits in this process
while another process may have an idle thread (Celery's prefetch problem). A job that still
waits after :data:`RETURN_AFTER` (its threads took longer than the averages said) is given back,
as if never claimed, for any worker to take; one that waited more than :data:`VERIFY_AFTER` has
its claim checked before it starts.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
import time
from typing import Any

from goodjob.errors import Error, JobInterrupted
from goodjob.middleware import MiddlewareChain
from goodjob.performer import Performer
from goodjob.queues import PoolSpec
from goodjob.records.claims import ClaimedJob, Outcome
from goodjob.runtime.completer import Completer

logger = logging.getLogger("goodjob.scheduler")

CLAIM_ERROR_BACKOFF = 1.0  # seconds a thread waits after a failed claim (database down)
# At most this many jobs per thread claimed ahead, however short they are. The window bounds
# what is claimed ahead; this only bounds what a misjudged average can hold back (for
# RETURN_AFTER at most). At 4 a thread, 5 threads of jobs shorter than a claim's round trip
# waited for every claim: 25 jobs per 3-5 ms round trip.
CLAIM_AHEAD = 16
AHEAD_WINDOW = 0.005  # seconds: claim ahead what the threads will start within this time
DURATION_WEIGHT = 0.2  # weight of the newest job in the moving average of job durations
MAX_INTERVAL = 1.0  # seconds: longer gaps between two jobs' ends count as this long
# A job claimed ahead that waited this long (or ten claims' round trips, if longer) was misjudged:
# its pool's threads took longer than the averages said. Give it back for another worker.
RETURN_AFTER = 0.05  # seconds
# A job that waited longer than this before a thread took it has its claim checked first (one
# query). Claims of a live process are lost only when it was judged dead (its lock gone and a
# sweep, a second at least; or its heartbeat expired) or to an operator's forced discard.
VERIFY_AFTER = 1.0  # seconds


class Scheduler:
    """One pool of ``spec.threads`` threads claiming from ``spec.queues``."""

    def __init__(
        self,
        spec: PoolSpec,
        performer: Performer,
        completer: Completer,
        *,
        index: int,
        shutdown: threading.Event,
        errors: MiddlewareChain | None = None,
    ) -> None:
        self.spec = spec
        self.index = index
        self.completer = completer
        self.performer = performer
        self._errors = errors or MiddlewareChain()
        self._shutdown = shutdown  # set: stop claiming (jobs see current_job().shutting_down)
        lock = threading.Lock()
        self._lock = lock
        self._work = threading.Condition(lock)  # worker threads wait here for a job
        self._claim_wanted = threading.Condition(lock)  # the claimer waits here
        self._pending: collections.deque[ClaimedJob] = collections.deque()
        self._running: dict[int, ClaimedJob] = {}  # thread ident -> the job it runs
        self._short: dict[int, bool] = {}  # thread ident -> its job's task usually ends soon
        self._running_short = 0  # how many of those are True
        self._wakeups = 0  # wake-ups not yet answered by a claim
        self._draining = False  # the last claim came back full: claim again as threads free up
        self._duration: float | None = None  # moving average of a job's time in a thread
        self._task_durations: dict[str, float] = {}  # the same, per task name
        self._interval: float | None = None  # moving average of the time between two jobs' ends
        self._last_done: float | None = None
        self._claim_time: float | None = None  # moving average of a claim's round trip
        self._threads: list[threading.Thread] = []
        self.last_active = time.monotonic()
        self.claims = 0  # claim statements that brought jobs back
        self.claimed = 0  # jobs they brought
        self.returned = 0  # jobs claimed ahead and given back unstarted

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        claimer = threading.Thread(
            target=self._claimer, name=f"goodjob-claimer-{self.index}", daemon=True
        )
        claimer.start()
        self._threads.append(claimer)
        for n in range(self.spec.threads):
            thread = threading.Thread(
                target=self._worker, name=f"goodjob-worker-{self.index}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop claiming; threads finish their current job and exit (the shutdown Event is set)."""
        with self._lock:
            self._work.notify_all()
            self._claim_wanted.notify_all()

    def join(self, deadline: float | None) -> bool:
        """Wait for the threads until ``deadline`` (monotonic; None waits forever)."""
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads)

    def take_unstarted(self) -> list[ClaimedJob]:
        """Claimed jobs no thread started (handed over as shutdown began): to be released."""
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
        return jobs

    def take_running(self) -> list[ClaimedJob]:
        """Take over the claims of jobs still running (shutdown, once the grace is over).

        From here the caller releases them; a thread that finishes one later drops its outcome.
        """
        with self._lock:
            jobs = list(self._running.values())
            self._running.clear()
            self._short.clear()
            self._running_short = 0
        return jobs

    def interrupt(self) -> None:
        """Raise JobInterrupted inside every thread still running a job (shutdown timeout)."""
        with self._lock:
            idents = list(self._running)
        for ident in idents:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(_ShutdownInterrupt)
            )

    # -- waking ---------------------------------------------------------------------------

    def wake(self, count: int = 1) -> None:
        """Ask the pool to look for work (``count`` is kept for callers; one claim answers all)."""
        with self._lock:
            self._wakeups = min(self._wakeups + count, self.spec.threads)
            self._claim_wanted.notify()

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
            "claims": self.claims,
            "claimed": self.claimed,
            "returned": self.returned,
        }

    # -- the claimer ----------------------------------------------------------------------

    def _ahead(self) -> int:
        """How many jobs to claim beyond the free threads (with the lock held).

        The threads about to be free within the window (the free ones, and those running a task
        that usually ends within it), less one for each job already waiting, each start a job
        every average job time; the pool as a whole no faster than it lately finished them.
        Kept as counters, not recomputed per job: the claimer asks after every job that ends.
        None until a job was timed.
        """
        if not self._draining or self._duration is None:
            return 0
        soon = self.spec.threads - len(self._running) + self._running_short - len(self._pending)
        if soon <= 0:
            return 0
        # The window is at least a claim's round trip: what starts while the next claim is on
        # its way (with 50 threads on two cores, that is tens of milliseconds).
        window = max(AHEAD_WINDOW, self._claim_time or 0.0)
        starts = soon * window / max(self._duration, 1e-6)
        if self._interval is not None:
            # Threads share one interpreter: however short each job, the pool finishes them no
            # faster than it has lately (50 threads of no-op jobs: 6,500 a second, not 50 per
            # 22 µs), and claiming more than that only makes them wait.
            starts = min(starts, window / max(self._interval, 1e-6))
        return min(int(starts), CLAIM_AHEAD * self.spec.threads)

    def _free(self) -> int:
        """How many jobs the next claim may take."""
        capacity = self.spec.threads + self._ahead()
        return capacity - len(self._running) - len(self._pending)

    def _claim_due(self) -> bool:
        if self._draining:
            # Claim once fewer jobs wait than there are threads: the claim then fills the
            # room ahead in one batch instead of one job per finished thread.
            return len(self._pending) < self.spec.threads and self._free() > 0
        return self._wakeups > 0 and self._free() > 0

    def _return_after(self) -> float:
        return max(RETURN_AFTER, 10 * (self._claim_time or 0.0))

    def _overdue(self, now: float) -> float | None:
        """Seconds until the oldest waiting job is to be given back (<= 0: now); None if none."""
        if not self._pending:
            return None
        return self._pending[0].claimed_at + self._return_after() - now

    def _claimer(self) -> None:
        while True:
            with self._lock:
                while not self._shutdown.is_set() and not self._claim_due():
                    wait = self._overdue(time.monotonic())
                    if wait is not None and wait <= 0:
                        break
                    self._claim_wanted.wait(wait)
                if self._shutdown.is_set():
                    return
                stale = self._take_stale()
                limit = 0 if stale else self._free()
                if limit:
                    self._wakeups = 0  # this claim answers every wake-up so far
            if stale:
                self._give_back(stale)
                continue
            self._claim(limit)

    def _take_stale(self) -> list[ClaimedJob]:
        """Jobs that waited RETURN_AFTER for a thread; the pool stops claiming ahead (with the
        lock held)."""
        deadline = time.monotonic() - self._return_after()
        stale = []
        while self._pending and self._pending[0].claimed_at <= deadline:
            stale.append(self._pending.popleft())
        if stale:
            self._draining = False  # the average misjudged: claim for free threads only
        return stale

    def _give_back(self, jobs: list[ClaimedJob]) -> None:
        try:
            self.performer.unclaim(jobs)
        except Exception as exc:
            # They stay claimed by this process, which releases them when it stops (or the
            # sweep, should it die).
            self._internal_error("giving back jobs claimed ahead", exc)
            return
        with self._lock:
            self.returned += len(jobs)
        logger.debug("gave back %d jobs claimed ahead", len(jobs), extra={"action": "give_back"})

    def _claim(self, limit: int) -> None:
        sent = time.monotonic()
        try:
            jobs = self.performer.claim(limit)
        except Exception as exc:
            # Whatever went wrong, the claimer must live on (issue 11: an error it did not
            # expect ended the thread, and the pool never claimed again).
            self._internal_error("claim", exc)
            with self._lock:
                self._wakeups = max(self._wakeups, 1)  # try again after the back-off
            self._shutdown.wait(CLAIM_ERROR_BACKOFF)
            return
        with self._lock:
            self._claim_time = _average(self._claim_time, time.monotonic() - sent)
            self.claims += bool(jobs)
            self.claimed += len(jobs)
            self._pending.extend(jobs)
            self._work.notify(len(jobs))
            # A full claim starts (or continues) a drain; once draining, only an empty claim
            # ends it: a short one can also mean that rows were skipped (SKIP LOCKED under
            # another process's claim, advisory locks), and stopping there would leave the
            # backlog to the next wake-up. A short claim on an idle pool costs no extra one.
            self._draining = len(jobs) == limit or (self._draining and bool(jobs))

    def _internal_error(self, what: str, error: Exception) -> None:
        if isinstance(error, Error):
            logger.warning("%s failed: %s", what, error, extra={"action": what})
        else:
            logger.exception("%s failed", what, extra={"action": what})
        self._errors.on_error(error)

    # -- the worker threads ---------------------------------------------------------------

    def _worker(self) -> None:
        try:
            self._work_loop()
        except _ShutdownInterrupt:
            return  # landed between jobs: the thread was stopping anyway

    def _work_loop(self) -> None:
        ident = threading.get_ident()
        while True:
            with self._lock:
                while not self._pending and not self._shutdown.is_set():
                    self._work.wait()
                if self._shutdown.is_set():
                    return  # jobs still pending are given back by the capsule
                job = self._pending.popleft()
                if self._draining and len(self._pending) < self.spec.threads:
                    self._claim_wanted.notify()
            started = time.monotonic()
            if started - job.claimed_at > VERIFY_AFTER and not self._still_claimed(job):
                continue
            with self._lock:
                self._running[ident] = job
                expected = self._task_durations.get(job.task_name)
                short = expected is not None and expected < AHEAD_WINDOW
                self._short[ident] = short
                self._running_short += short
            outcome: Outcome | None = None
            owned = False
            try:
                outcome = self.performer.perform(job)
            except _ShutdownInterrupt:
                pass  # landed outside the task, so no outcome: the job is left to the capsule
            finally:
                with self._lock:
                    # Whoever takes the job out of _running owns its claim: this thread, with an
                    # outcome, or the capsule (take_running) once it stops waiting at shutdown.
                    # Deciding it under one lock releases an interrupted claim exactly once; a
                    # thread that unwound just after the capsule gave up used to release it too.
                    if outcome is not None:
                        owned = self._running.pop(ident, None) is not None
                    self._running_short -= self._short.pop(ident, False)
                    self._timed(job.task_name, time.monotonic() - started)
                    if self._draining or self._wakeups:
                        self._claim_wanted.notify()
                self.last_active = time.monotonic()
            if owned and outcome is not None:
                self.completer.submit(outcome)

    def _timed(self, task_name: str, seconds: float) -> None:
        """Fold one job's time in a thread, and the time since the pool's last job ended, into
        the moving averages (with the lock held)."""
        self._duration = _average(self._duration, seconds)
        self._task_durations[task_name] = _average(self._task_durations.get(task_name), seconds)
        now = time.monotonic()
        if self._last_done is not None:
            # Capped: the first job after an idle hour says nothing about the pool's pace.
            self._interval = _average(self._interval, min(now - self._last_done, MAX_INTERVAL))
        self._last_done = None if self.idle else now

    def _still_claimed(self, job: ClaimedJob) -> bool:
        """Whether a job that waited in the buffer may still run here.

        A worker whose claims were swept away (its heartbeat judged dead) or whose job an
        operator discarded must not start it: another process may be running it already, and
        the fence would only reject the record, not the side effects (issue 11).
        """
        try:
            held = self.performer.still_claimed(job)
        except Exception as exc:
            # Cannot tell: do not run it. The claim stays this process's, and is released with
            # the process row at shutdown (or by the sweep, should this process die).
            self._internal_error("claim check", exc)
            return False
        if not held:
            logger.warning(
                "claim lost while the job waited to start; not running it",
                extra={"job_id": str(job.id), "action": "claim_lost"},
            )
        return held


def _average(average: float | None, seconds: float) -> float:
    """An exponentially weighted moving average, started by its first value."""
    return seconds if average is None else average + DURATION_WEIGHT * (seconds - average)


class _ShutdownInterrupt(JobInterrupted):
    """Delivered into a worker thread whose job outlived the shutdown timeout."""

    def __init__(self, reason: str = "the worker shut down before the job finished") -> None:
        super().__init__(reason)
