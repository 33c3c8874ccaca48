"""The performer: claims jobs of one pool, runs them, classifies and records each outcome.

Claiming is one statement (``records.claims``); the job then runs with no database connection
held, inside the middleware's ``around_perform``; its outcome is recorded by one fenced
statement that matches the job id, this process's id and the attempt number, so a worker whose
claim was handed to another process (a zombie) changes nothing.

The performer receives its parts when it is made (the database, the process's tracker, the task
resolver, the outcome policy, the middleware, the job locks) and reaches for nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import ctypes
import dataclasses
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from goodjob.capsule_tracker import CapsuleTracker
from goodjob.context import JobContext, reset_current, set_current
from goodjob.db import Database
from goodjob.errors import (
    Error,
    JobCancelled,
    JobInterrupted,
    JobTimeout,
    SerializationError,
    UnknownTaskError,
)
from goodjob.job_locks import JobLocks
from goodjob.middleware import MiddlewareChain
from goodjob.policy import OutcomePolicy
from goodjob.records import claims
from goodjob.records.claims import ClaimedJob, ClaimSpec, Outcome
from goodjob.serialization import clean_text, dump_result, load_arguments
from goodjob.task import Task, TaskResolver

logger = logging.getLogger("goodjob.performer")

MAX_ERROR_CHARS = 10_000  # an error message is cut here when stored
MAX_BACKTRACE_CHARS = 100_000  # a backtrace likewise (a deep recursion's can be megabytes)


def describe_error(error: BaseException) -> str:
    """``module.Type: message`` for the error column, storable whatever the error holds.

    Never raises: an error whose ``str()`` raises, or whose message holds NUL characters or lone
    surrogates, is still described (issue 11: a NUL in a message jammed the completer).
    """
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    try:
        message = str(error)
    except Exception as exc:
        message = f"<its message could not be read: str() raised {type(exc).__name__}>"
    return clean_text(f"{name}: {message}", MAX_ERROR_CHARS)


def format_backtrace(error: BaseException) -> str:
    """The error's traceback as stored on the execution; never raises (see describe_error)."""
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # e.g. RecursionError on a chain of causes thousands long
        text = describe_error(error) + "\n(the traceback could not be formatted)"
    return clean_text(text, MAX_BACKTRACE_CHARS)


def failed(
    job: ClaimedJob,
    kind: claims.Kind,
    event: str,
    error: BaseException,
    *,
    duration: float,
    wait: float = 0.0,
) -> Outcome:
    """The outcome of an attempt that raised ``error``."""
    return Outcome(
        job,
        kind,
        duration,
        error=describe_error(error),
        error_event=event,
        backtrace=format_backtrace(error),
        wait=wait,
        exception=error,
    )


CANCELLED_REMEMBERED = 1_000  # cancelled job ids a performer remembers (claimed ahead, not started)


class Performer:
    """Claims and runs jobs of one pool (its :class:`ClaimSpec`) for one process."""

    def __init__(
        self,
        *,
        database: Database,
        tracker: CapsuleTracker,
        tasks: TaskResolver,
        policy: OutcomePolicy,
        middleware: MiddlewareChain,
        job_locks: JobLocks | None,
        max_payload_bytes: int,
        spec: ClaimSpec | None = None,
        pool: int = 0,
        raise_errors: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        shutdown: threading.Event | None = None,
        batches: Callable[[uuid.UUID], Any] | None = None,
    ) -> None:
        self.database = database
        self.tracker = tracker
        self.tasks = tasks
        self.policy = policy
        self.middleware = middleware
        self.job_locks = job_locks  # the advisory and hybrid strategies: None for skiplocked
        self.max_payload_bytes = max_payload_bytes
        self.spec = spec or ClaimSpec(advisory=job_locks is not None)
        # The claim's form: (something paused, jobs with concurrency keys due). Plain (False,
        # False) costs nothing more than a claim without these features; see records/claims.py.
        self._form: tuple[bool, bool] = (False, False)
        self._specs: dict[tuple[bool, bool], ClaimSpec] = {self._form: self.spec}
        # Told (queue, database epoch) when a throttled key admits starts again: the capsule
        # sets a timer (its future-job cache), so the next start waits for no poll.
        self.on_throttled: Callable[[str, float], object] | None = None
        # Jobs running now, to tell of a cancellation; and the latest cancelled ids, so a job
        # claimed ahead and cancelled before it started never starts.
        self._running: dict[uuid.UUID, tuple[JobContext, Future[Any] | None]] = {}
        self._cancelled: collections.OrderedDict[tuple[uuid.UUID, int], None] = (
            collections.OrderedDict()
        )
        self._running_lock = threading.Lock()
        self.pool = pool
        self.raise_errors = raise_errors
        self.loop = loop
        self.shutdown = shutdown or threading.Event()
        self.batches = batches  # a batch's handle by id, for its callbacks' first argument

    # -- claiming -----------------------------------------------------------------------------

    def claim(self, limit: int = 1, ids: Sequence[uuid.UUID] = ()) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs for this process (none when it is not registered);
        with a spec of ``only_ids``, only among ``ids``.

        With the advisory or hybrid lock strategy each claimed job's session advisory lock is
        taken too, and held until :meth:`complete` (or :meth:`release_locks`); a job whose lock
        another session took in the meantime is given back at once.
        """
        jobs = self._claim_locked(limit, ids)
        if jobs:
            self.middleware.after_claim(jobs)
        return jobs

    def _claim_locked(self, limit: int, ids: Sequence[uuid.UUID]) -> list[ClaimedJob]:
        process_id = self.tracker.id_for_lock()
        if process_id is None:
            return []
        claimed = self._claim(process_id, limit, ids)
        special = self._form != (False, False)
        if not claimed or (special and len(claimed) < limit):
            # An empty claim: a gate of the plain form (a pause, a due job with a concurrency
            # key) may have stopped it; a short claim in another form: what called for it may
            # be over. Ask which form fits, and switch.
            form = claims.special(self.database)
            if form != self._form:
                self._form = form
                if not claimed:
                    claimed = self._claim(process_id, limit, ids)
        if self.job_locks is None or not claimed:
            return claimed
        try:
            locked = self.job_locks.acquire(job.id for job in claimed)
        except BaseException:
            # No lock connection (database trouble): give every claim of this batch back rather
            # than run some unlocked; if even that fails, this process's unregistration (or the
            # sweep once it is gone) releases them.
            with contextlib.suppress(Error):
                claims.unclaim(self.database, process_id, claimed)
            raise
        # Race: between the claim's look at pg_locks and now, another session took a job's lock
        # (a zombie still running it). Undo those claims; they run later.
        given_back = [job for job in claimed if job.id not in locked]
        claims.unclaim(self.database, process_id, given_back)
        self.tracker.let_go(job.id for job in given_back)
        return [job for job in claimed if job.id in locked]

    def _claim(
        self, process_id: uuid.UUID, limit: int, ids: Sequence[uuid.UUID]
    ) -> list[ClaimedJob]:
        paused, gated = self._form
        spec = self._specs.get(self._form)
        if spec is None:
            spec = self._specs[self._form] = dataclasses.replace(
                self.spec, paused=paused, gated=gated
            )
        claimed = claims.claim(
            self.database,
            spec,
            process_id,
            limit,
            claimed_at=time.monotonic(),
            pool=self.pool,
            ids=ids,
            throttled=self.on_throttled,
        )
        self.tracker.hold(job.id for job in claimed)
        return claimed

    def unclaim(self, jobs: Sequence[ClaimedJob]) -> None:
        """Give back claims of jobs that never started (claimed ahead, then shutdown), as if
        they had not been claimed: no attempt and no execution row is left; queues are woken."""
        if not jobs:
            return
        self.release_locks([job.id for job in jobs])
        claims.unclaim(self.database, self.tracker.process_id, jobs)
        self.tracker.let_go(job.id for job in jobs)
        claims.renotify(self.database, dict.fromkeys(sorted({job.queue_name for job in jobs}), 0.0))

    def still_claimed(self, job: ClaimedJob) -> bool:
        """Whether this process still holds its claim of ``job`` (for a job claimed ahead that
        waited before a thread started it: its claim may have been swept away meanwhile)."""
        return claims.held(self.database, self.tracker.process_id, job)

    def release_locks(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Drop the advisory locks of jobs whose claims end (recorded, given back, released at
        shutdown). A no-op under the skiplocked strategy."""
        if self.job_locks is not None:
            self.job_locks.release(job_ids)

    # -- running ------------------------------------------------------------------------------

    def cancel(self, job_id: uuid.UUID, attempt: int) -> bool:
        """Tell attempt ``attempt`` of job ``job_id`` that it was cancelled, if this performer
        runs it (a sync task's ``current_job().cancelled`` becomes true; an async task is
        cancelled); if this performer claimed it ahead and has not started it, it never will.
        Whether it was running here."""
        with self._running_lock:
            self._cancelled[(job_id, attempt)] = None
            while len(self._cancelled) > CANCELLED_REMEMBERED:
                self._cancelled.popitem(last=False)
            running = self._running.get(job_id)
        if running is None or running[0].attempt != attempt:
            return False
        ctx, future = running
        ctx._cancelled.is_set = True
        if future is not None:
            future.cancel()  # cancels the coroutine's task on the event loop
        return True

    def perform(self, job: ClaimedJob) -> Outcome:
        """Run one claimed job inside the middleware and classify how it ended. Holds no
        database connection.

        Always returns an outcome (issue 11): whatever the task, its arguments, its result or
        its error do, the worker thread goes on to its next job. Only the interruption that
        stops the thread (shutdown) and KeyboardInterrupt pass through.
        """
        started = time.monotonic()
        try:
            outcome = self.middleware.around_perform(job, lambda: self._perform(job, started))
        except (JobInterrupted, KeyboardInterrupt):
            raise
        except BaseException as error:
            # Not the task's own error (that is classified in _perform) but what goodjob ran
            # around it: a retry policy's wait function, an error handler that raised a
            # BaseException. The job ends visibly instead of taking the thread down.
            logger.exception("could not classify the outcome", extra={"job_id": str(job.id)})
            outcome = failed(
                job, "discarded", "unhandled", error, duration=time.monotonic() - started
            )
        if outcome.exception is not None:
            self.middleware.on_error(outcome.exception, job)
        return outcome

    def _perform(self, job: ClaimedJob, started: float) -> Outcome:
        task = self.tasks.resolve(job.task_name)
        try:
            args, kwargs = load_arguments(job.arguments)
        except SerializationError as error:
            # Written by something other than goodjob's enqueue, or by an older version: the
            # job can never run, so it ends here, whatever its retry policy says.
            return failed(job, "discarded", "discarded", error, duration=time.monotonic() - started)
        try:
            if job.batch_callback_id is not None and args and self.batches is not None:
                # A batch's callback is called with the batch (stored as its id) and the event.
                args[0] = self.batches(job.batch_callback_id)
            if task is None:
                raise UnknownTaskError(
                    f"no task named {job.task_name!r} is registered on this worker's app; "
                    "deploy it and retry the job"
                )
            value = self._run(task, job, args, kwargs)
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            if task is not None and task.handle is not None and isinstance(error, Exception):
                try:
                    task.handle(error)
                except Exception as handler_error:
                    # The handler declined (re-raised) or failed: classify what it raised.
                    error = handler_error
                else:
                    duration = time.monotonic() - started
                    return failed(job, "succeeded", "handled", error, duration=duration)
            kind, event, wait = self.policy.classify(task, job.attempt, error)
            return failed(job, kind, event, error, duration=time.monotonic() - started, wait=wait)
        duration = time.monotonic() - started
        try:
            result = dump_result(value, self.max_payload_bytes)
        except SerializationError as error:
            # The task's work is done and must not run again: the job succeeds without its
            # result, and the execution says why (issue 11).
            logger.warning("result not stored: %s", error, extra={"job_id": str(job.id)})
            return Outcome(
                job,
                "succeeded",
                duration,
                error=describe_error(error),
                error_event="result_refused",
                exception=error,
            )
        return Outcome(job, "succeeded", duration, result=result)

    def _run(
        self, task: Task[Any, Any], job: ClaimedJob, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        ctx = JobContext(
            job.id,
            job.task_name,
            job.queue_name,
            job.attempt,
            job.interrupted,
            job.labels,
            job.batch_id,
            self.shutdown,
        )
        with self._running_lock:
            if job.cancelled or (job.id, job.attempt) in self._cancelled:
                # Cancelled while an earlier attempt ran (whose process died), or while claimed
                # ahead here: recorded discarded as cancelled, without running.
                raise JobCancelled(f"job {job.id} was cancelled before it started")
            self._running[job.id] = (ctx, None)
        try:
            if task.is_async:
                return self._run_async(task, ctx, args, kwargs)
            token = set_current(ctx)
            try:
                if task.timeout is None:
                    return task.fn(*args, **kwargs)
                with _Deadline(task.timeout):
                    return task.fn(*args, **kwargs)
            finally:
                reset_current(token)
        finally:
            with self._running_lock:
                self._running.pop(job.id, None)

    def _run_async(
        self, task: Task[Any, Any], ctx: JobContext, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        async def run() -> Any:
            set_current(ctx)  # this coroutine runs in a task with its own context copy
            coro = task.fn(*args, **kwargs)
            if task.timeout is None:
                return await coro
            try:
                return await asyncio.wait_for(coro, task.timeout)
            except TimeoutError:
                raise JobTimeout(
                    f"{task.name} ran longer than its timeout of {task.timeout}s"
                ) from None

        if self.loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(run())
            # Called from a thread that runs an event loop (inline mode inside async code):
            # asyncio.run() would refuse, so the job gets a loop of its own in another thread.
            # Its context is this thread's, as on the worker's loop (below).
            context = contextvars.copy_context()
            with ThreadPoolExecutor(1, thread_name_prefix="goodjob-inline-async") as pool:
                return pool.submit(context.run, asyncio.run, run()).result()
        # The coroutine runs in a copy of this thread's context (call_soon_threadsafe copies
        # it), so what the middleware set around the attempt (a tracing span) reaches the task.
        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        with self._running_lock:
            self._running[ctx.id] = (ctx, future)
            if (ctx.id, ctx.attempt) in self._cancelled:  # cancelled while it was being scheduled
                future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise JobCancelled(f"job {ctx.id} was cancelled") from None

    # -- recording ----------------------------------------------------------------------------

    def complete(self, outcomes: Sequence[Outcome], *, retry: bool = False) -> set[uuid.UUID]:
        """Record outcomes, fenced; returns the ids recorded (a zombie's are missing). The
        middleware's ``after_record`` sees those recorded. A ``retry`` of a try whose connection
        broke first asks which of the outcomes that try recorded, so none counts as rejected."""
        if not outcomes:
            return set()
        # A batch's jobs are kept while it runs, whatever the settings: settling it reads them.
        preserve = [
            o.job.batch_id is not None or self.policy.preserve(o.kind, o.error_event)
            for o in outcomes
        ]
        try:
            recorded = claims.complete(self.database, self.tracker.process_id, outcomes, preserve)
        finally:
            self.release_locks([o.job.id for o in outcomes])
        # Recorded or fenced out, these claims are over (one whose write failed outright stays
        # held: its job stays claimed until this process ends).
        self.tracker.let_go(o.job.id for o in outcomes)
        if retry and len(recorded) < len(outcomes):
            missing = [o for o in outcomes if o.job.id not in recorded]
            recorded |= claims.recorded_before(self.database, self.tracker.process_id, missing)
        for outcome in outcomes:
            if outcome.job.id not in recorded:
                logger.warning(
                    "outcome rejected: this process no longer holds the job's claim",
                    extra={
                        "job_id": str(outcome.job.id),
                        "attempt": outcome.job.attempt,
                        "action": "fenced",
                    },
                )
        self.middleware.after_record([o for o in outcomes if o.job.id in recorded])
        return recorded

    # -- convenience ----------------------------------------------------------------------------

    def perform_one(self, ids: Sequence[uuid.UUID] = ()) -> Outcome | None:
        """Claim, run and record one job; None when nothing is due."""
        claimed = self.claim(1, ids)
        if not claimed:
            return None
        outcome = self.perform(claimed[0])
        self.complete([outcome])
        return outcome

    def drain(self, ids: Sequence[uuid.UUID] = ()) -> int:
        """Run due jobs one by one until none is left (with an ``only_ids`` spec, among
        ``ids``); returns how many ran."""
        count = 0
        with self.tracker.register():
            while (outcome := self.perform_one(ids)) is not None:
                count += 1
                if self.raise_errors and outcome.error_event == "unhandled" and outcome.exception:
                    raise outcome.exception
        return count


class _Deadline:
    """Raises a timeout inside the current thread when a sync task runs too long.

    The exception is delivered between Python bytecodes, so a task blocked in one long C call
    (a socket read without a timeout) is interrupted when that call returns.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.thread_id = threading.get_ident()
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.fired = False
        self.lock = threading.Lock()
        self.done = False

    def _fire(self) -> None:
        with self.lock:
            if self.done:
                return
            self.fired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread_id), ctypes.py_object(_TimeoutSignal)
            )

    def __enter__(self) -> _Deadline:
        self.timer.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        with self.lock:
            self.done = True
        self.timer.cancel()
        if self.fired and exc_type is not _TimeoutSignal:
            # Fired as the block was ending: withdraw the exception before it lands elsewhere.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), None)
        if self.fired and exc_type is _TimeoutSignal:
            raise JobTimeout(f"ran longer than its timeout of {self.seconds}s") from None


class _TimeoutSignal(BaseException):
    """Delivered into a sync task's thread at its deadline; turned into JobTimeout."""
