"""The Capsule: everything one worker process runs, started and stopped in order.

Start: check the schema, register with the CapsuleTracker (for the capsule's whole life), start
the completer and one Scheduler per queue group, the Notifier (which holds the advisory lock on
its own connection), the future-job cache (warmed), the Poller, the sweeper (every
``sweep_interval``: refresh if stale, release dead processes' jobs), cleanup, and the idle watch.

Shutdown: stop claiming (jobs see ``current_job().shutting_down``), let running jobs finish
within ``shutdown_timeout`` (negative: wait), interrupt the rest and release their claims so
another worker re-runs them, write every outcome, then unregister: the process row disappears.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from typing import Any, Protocol

from goodjob import queues as queue_strings
from goodjob.capsule_tracker import CapsuleTracker
from goodjob.config import Settings
from goodjob.cron import CronEntry
from goodjob.db import Database
from goodjob.errors import Error
from goodjob.middleware import MiddlewareChain
from goodjob.options import JobRequest
from goodjob.performer import Performer
from goodjob.records.claims import ClaimedJob, ClaimSpec, Outcome
from goodjob.runtime.cleanup import Cleaner
from goodjob.runtime.completer import Completer
from goodjob.runtime.counters import Counters
from goodjob.runtime.cron import CronManager
from goodjob.runtime.notifier import Notifier
from goodjob.runtime.poller import FutureCache, Poller
from goodjob.runtime.scheduler import Scheduler

logger = logging.getLogger("goodjob.capsule")

INTERRUPT_GRACE = 2.0  # seconds for interrupted jobs to unwind before their claims are released
INITIAL_LISTEN_WAIT = 5.0  # seconds start() waits for LISTEN before reporting started anyway
IDLE_CHECK = 0.25  # seconds between idle-timeout checks
INTERRUPTED = "goodjob.JobInterrupted: the worker shut down before the job finished"


class _Every:
    """A thread calling ``fn`` every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float, fn: Any, errors: MiddlewareChain) -> None:
        self.interval = interval
        self.fn = fn
        self.errors = errors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fn()
            except Exception as exc:
                if isinstance(exc, Error):
                    logger.warning("%s failed: %s", self._thread.name, exc)
                else:
                    logger.exception("%s failed", self._thread.name)
                self.errors.on_error(exc)


class CapsuleApp(Protocol):
    """What a capsule is made from: the app that assembled the parts it runs."""

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database: ...

    @property
    def tracker(self) -> CapsuleTracker: ...

    @property
    def middleware(self) -> MiddlewareChain: ...

    def performer(
        self,
        spec: ClaimSpec | None = None,
        *,
        pool: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
        shutdown: threading.Event | None = None,
        middleware: MiddlewareChain | None = None,
    ) -> Performer: ...

    @property
    def cron(self) -> tuple[CronEntry, ...]: ...

    def cron_request(self, entry: CronEntry) -> JobRequest: ...

    def check_schema(self) -> None: ...

    def cleanup_preserved_jobs(self) -> int: ...


class Capsule:
    """One worker process's runtime for one app."""

    def __init__(self, gj: CapsuleApp) -> None:
        self.settings = settings = gj.settings
        self.database = gj.database
        self.tracker = gj.tracker
        self._app = gj  # for its performers, made at start, when the event loop exists
        self.shutting_down = threading.Event()  # jobs read it; schedulers stop claiming
        self.stop_requested = threading.Event()  # set by a signal or the idle timeout
        self.started = False
        self.stopped = False
        self.schedulers: list[Scheduler] = []
        self.notifier: Notifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._own_advisory = False
        self._lock = threading.Lock()
        self._healthy_db = True
        self.specs = queue_strings.parse(settings.queues, settings.max_threads)
        self.counters = Counters()
        self.middleware = gj.middleware.plus(self.counters)
        self.performer = gj.performer(shutdown=self.shutting_down, middleware=self.middleware)
        self.completer = Completer(
            self.performer, on_recorded=self._recorded, errors=self.middleware
        )
        self.cache = FutureCache(gj.database, settings.max_cache, self.wake)
        self.poller = Poller(settings.poll_interval, self._poll, self._degraded)
        self.sweeper = _Every(
            "goodjob-sweeper", settings.sweep_interval, self._sweep, self.middleware
        )
        self.cleaner = Cleaner(
            gj.cleanup_preserved_jobs,
            every_jobs=settings.cleanup_interval_jobs,
            every_seconds=settings.cleanup_interval_seconds,
        )
        self.idle_watch: _Every | None = None
        self.cron: CronManager | None = None
        if settings.enable_cron and gj.cron:
            # Made now: an entry whose task is not registered stops the worker before it starts.
            self.cron = CronManager(
                gj.database,
                gj.cron,
                gj.cron_request,
                self.cache.clock,
                graceful_restart_period=settings.cron_graceful_restart_period,
                errors=self.middleware,
            )
        self.started_at = 0.0

    @property
    def succeeded(self) -> int:
        return self.counters.succeeded

    @property
    def failed(self) -> int:
        return self.counters.failed

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every part; returns once workers are running (and listening, when enabled)."""
        settings, tracker = self.settings, self.tracker
        self._app.check_schema()
        tracker.add_state(self.state)
        tracker.register()
        try:
            if settings.advisory_lock_heartbeat and not settings.enable_listen_notify:
                tracker.register(with_advisory_lock=True)  # the tracker opens a connection
                self._own_advisory = True
            tracker.id_for_lock()  # the row exists from the start
        except BaseException:
            # Nothing else runs yet: undo the registrations so no half-started row stays.
            while tracker.locks:
                tracker.unregister(with_advisory_lock=tracker.advisory_locks > 0)
            tracker.remove_state(self.state)
            raise
        self._start_loop()
        self.completer.start()
        for index, spec in enumerate(self.specs):
            performer = self._app.performer(
                ClaimSpec(spec.queues, advisory=self.performer.spec.advisory),
                pool=index,
                loop=self._loop,
                shutdown=self.shutting_down,
                middleware=self.middleware,
            )
            performer.on_throttled = self._throttled
            scheduler = Scheduler(
                spec,
                performer,
                self.completer,
                index=index,
                shutdown=self.shutting_down,
                errors=self.middleware,
            )
            scheduler.start()
            self.schedulers.append(scheduler)
        if settings.enable_listen_notify and self.database.listen_url is None:
            logger.info("database_pooler without notify_database_url: polling, no LISTEN")
        elif settings.enable_listen_notify:
            self.notifier = Notifier(
                self.database,
                tracker,
                self._notified,
                on_reconnect=self._reconnected,
                on_cancel=self._cancel,
                hold_advisory_lock=settings.advisory_lock_heartbeat,
                errors=self.middleware,
            )
            self.notifier.start()
            if not self.notifier.wait_connected(INITIAL_LISTEN_WAIT):
                logger.warning("not listening yet; polling meanwhile")
        self.cache.warm()  # also measures the database's clock, which cron runs follow
        self.cache.start()
        if self.cron is not None:
            self.cron.start()
        self.poller.start()
        self.sweeper.start()
        self.cleaner.start()
        if settings.idle_timeout > 0:
            self.idle_watch = _Every(
                "goodjob-idle-watch", IDLE_CHECK, self._check_idle, self.middleware
            )
            self.idle_watch.start()
        self.started_at = time.monotonic()
        self.started = True
        self.wake_all()  # jobs that were already waiting
        logger.info(
            "started: process %s (pid %d), queues %r, %s",
            tracker.process_id,
            os.getpid(),
            settings.queues,
            "listening" if self.connected else "polling",
            extra={
                "action": "start",
                "process_id": str(tracker.process_id),
                "queues": settings.queues,
            },
        )

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop gracefully; ``timeout`` overrides ``shutdown_timeout`` (negative: wait)."""
        with self._lock:
            if self.stopped or not self.started:
                return
            self.stopped = True
        if timeout is None:
            timeout = self.settings.shutdown_timeout
        logger.info(
            "shutting down (%s)",
            "waiting for running jobs" if timeout < 0 else f"running jobs get {timeout}s",
            extra={"action": "shutdown", "timeout": timeout},
        )
        self.shutting_down.set()
        self.stop_requested.set()
        for part in (self.cron, self.idle_watch, self.poller, self.cache):
            if part is not None:
                part.stop()
        for scheduler in self.schedulers:
            scheduler.stop()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        finished = all([s.join(deadline) for s in self.schedulers])
        unstarted = [job for s in self.schedulers for job in s.take_unstarted()]
        stuck: list[ClaimedJob] = []
        if not finished:
            logger.warning("shutdown timeout reached: interrupting running jobs")
            for scheduler in self.schedulers:
                scheduler.interrupt()
            grace = time.monotonic() + INTERRUPT_GRACE
            for scheduler in self.schedulers:
                scheduler.join(grace)
            # Threads that unwound in time have handed in their own "interrupted" outcomes;
            # the claims of the rest are the capsule's from here (their outcomes are dropped).
            stuck = [job for s in self.schedulers for job in s.take_running()]
        self.completer.stop()
        self._release(stuck)
        try:
            # Claimed ahead and never started: undone rather than recorded as interrupted.
            self.performer.unclaim(unstarted)
        except Error as exc:
            # The last unregistration (below) or the sweep releases them instead.
            logger.error("could not give back %d unstarted jobs: %s", len(unstarted), exc)
        self.cleaner.stop()
        self.sweeper.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self._stop_loop()
        tracker = self.tracker
        tracker.remove_state(self.state)
        try:
            if self._own_advisory:
                tracker.unregister(with_advisory_lock=True)
            tracker.unregister()  # the last one: deletes the row, releases leftover claims
        except Error as exc:
            logger.error("could not remove the process row: %s", exc)
        logger.info("stopped", extra={"action": "stopped"})

    def _release(self, jobs: list[ClaimedJob]) -> None:
        """Hand back claims of jobs that did not finish, closing their attempts as interrupted."""
        if not jobs:
            return
        outcomes = [
            Outcome(job, "release", 0.0, error=INTERRUPTED, error_event="interrupted")
            for job in jobs
        ]
        try:
            self.performer.complete(outcomes)
        except Error as exc:
            logger.error("could not release %d jobs: %s", len(jobs), exc)

    def _start_loop(self) -> None:
        """The event loop that ``async def`` tasks run on (a worker thread waits for each)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._loop_thread = threading.Thread(target=run, name="goodjob-asyncio", daemon=True)
        self._loop_thread.start()
        ready.wait(5)

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(5)

    # -- waking ---------------------------------------------------------------------------

    def wake(self, queue: str | None, count: int = 1) -> None:
        """Wake a thread in every pool that serves ``queue`` (None: every pool)."""
        for scheduler in self.schedulers:
            if scheduler.serves(queue):
                scheduler.wake(count)

    def wake_all(self) -> None:
        for scheduler in self.schedulers:
            scheduler.wake(scheduler.spec.threads)

    def _reconnected(self) -> None:
        """NOTIFYs sent while LISTEN was down are lost: look for work and re-warm the cache
        (on the first connect too: one that came after start() stopped waiting for it)."""
        self.wake_all()
        self.cache.warm()

    def _notified(self, queue: str | None, scheduled_at: float | None) -> None:
        if queue is not None and scheduled_at is not None and self.cache.add(queue, scheduled_at):
            return  # due later: a timer wakes the queue then
        self.wake(queue)

    def _cancel(self, job_id: uuid.UUID, attempt: int) -> None:
        """A running job was cancelled: tell it, in whichever pool runs it or holds it
        unstarted."""
        for scheduler in self.schedulers:
            scheduler.performer.cancel(job_id, attempt)

    def _throttled(self, queue: str, db_epoch: float) -> None:
        """A throttled key admits starts again at ``db_epoch``: wake its queue then."""
        if not self.cache.add(queue, db_epoch):
            self.wake(queue)

    def _poll(self) -> None:
        for scheduler in self.schedulers:
            scheduler.wake(1)  # the pool claims for every free thread: one wake-up is enough
        # Timers for jobs due before the next poll that no NOTIFY told this process about
        # (scheduled while LISTEN was down, or retries recorded by other processes).
        self.cache.warm(horizon=2 * max(self.poller.interval, 1.0))

    def _degraded(self) -> bool:
        return self.notifier is not None and not self.notifier.connected.is_set()

    # -- periodic work --------------------------------------------------------------------

    def _sweep(self) -> None:
        try:
            self.tracker.renew(silent=True)
            self._healthy_db = True
        except Error:
            self._healthy_db = False
            raise

    def _check_idle(self) -> None:
        if any(not s.idle for s in self.schedulers) or self.completer.pending:
            return
        last = max([self.started_at, *(s.last_active for s in self.schedulers)])
        if time.monotonic() - last >= self.settings.idle_timeout:
            logger.info("idle for %ss: stopping", self.settings.idle_timeout)
            self.stop_requested.set()

    def _recorded(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.kind == "retry" and outcome.wait > 0:
                self.cache.add_after(outcome.job.queue_name, outcome.wait)
        self.cleaner.jobs_recorded(len(outcomes))

    # -- health and figures ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """LISTEN is up (or, without LISTEN/NOTIFY, the database answered the last sweep)."""
        if self.notifier is not None:
            return self.notifier.connected.is_set()
        return self._healthy_db

    def state(self) -> dict[str, Any]:
        """This capsule's part of its process row (its tracker writes it with each heartbeat)."""
        return {
            "schedulers": [{**s.state(), **self.counters.pool(s.index)} for s in self.schedulers],
            "cache": {"size": len(self.cache), "max": self.settings.max_cache},
            "listening": bool(self.notifier and self.notifier.connected.is_set()),
            "cron": {"enabled": self.cron is not None, "entries": len(self._app.cron)},
            **self.middleware.process_state(),
        }
