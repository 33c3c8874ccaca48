"""The job performer: claim jobs, run them, classify and record each outcome.

Claiming is one statement (see ``jobs_claim``); the job then runs with no database connection
held; its outcome is recorded by one fenced statement (``jobs_complete``) that matches the job
id, this process's id and the attempt number, so a worker whose claim was handed to another
process (a zombie) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from goodjob.context import JobContext, reset_current, set_current
from goodjob.db import CHANNEL, json_text
from goodjob.errors import (
    Error,
    JobInterrupted,
    JobTimeout,
    SerializationError,
    UnknownTaskError,
)
from goodjob.queues import QueueSelection
from goodjob.serialization import clean_text, dump_result, load_arguments

if TYPE_CHECKING:
    from goodjob.app import GoodJob
    from goodjob.task import Task

logger = logging.getLogger("goodjob.performer")


Kind = Literal["succeeded", "discarded", "retry", "release"]


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    queue_name: str
    priority: int
    task_name: str
    arguments: str  # JSON text, decoded by the thread that runs the job
    scheduled_at: dt.datetime
    attempt: int
    labels: tuple[str, ...]
    interrupted: bool
    claimed_at: float = 0.0  # time.monotonic() when the claim returned

    @classmethod
    def from_row(cls, row: dict[str, Any], claimed_at: float = 0.0) -> ClaimedJob:
        return cls(
            id=row["id"],
            queue_name=row["queue_name"],
            priority=row["priority"],
            task_name=row["task_name"],
            arguments=row["arguments"],
            scheduled_at=row["scheduled_at"],
            attempt=row["executions_count"],
            labels=tuple(row["labels"] or ()),
            interrupted=row["interrupted"],
            claimed_at=claimed_at,
        )


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, ready to be recorded. Its texts are already in a form Postgres
    accepts (see :func:`describe_error`), its result already JSON text."""

    job: ClaimedJob
    kind: Kind
    duration: float
    result: str | None = None
    error: str | None = None
    error_event: str | None = None
    backtrace: str | None = None
    wait: float = 0.0
    exception: BaseException | None = None

    @property
    def failed(self) -> bool:
        """Whether the attempt raised (also true of a handled error)."""
        return self.error is not None


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


def classify(
    gj: GoodJob, task: Task[Any, Any] | None, job: ClaimedJob, error: BaseException
) -> tuple[Kind, str, float]:
    """(kind, error_event, wait) for an attempt that raised ``error``. No I/O."""
    if isinstance(error, JobInterrupted):
        return "release", "interrupted", 0.0
    if task is not None and task.discard_on and isinstance(error, task.discard_on):
        return "discarded", "discarded", 0.0
    policy = (task.retry if task is not None else None) or gj.default_retry
    if task is not None and policy is not None and policy.matches(error):
        if job.attempt < policy.attempts:
            return "retry", "retried", policy.delay(job.attempt)
        return "discarded", "retry_stopped", 0.0
    if task is not None and gj.settings.retry_on_unhandled_error:
        return "retry", "unhandled", 0.0
    return "discarded", "unhandled", 0.0


def preserve(gj: GoodJob, kind: Kind, error_event: str | None) -> bool:
    """Whether the job's row is kept once this outcome is recorded (preserve_job_records)."""
    policy = gj.settings.preserve_job_records
    if policy == "always" or kind in ("retry", "release"):
        return True
    if policy == "never":
        return False
    return error_event == "unhandled"


class Performer:
    """Claims and runs jobs of one queue selection for one app."""

    def __init__(
        self,
        gj: GoodJob,
        queues: QueueSelection | None = None,
        *,
        raise_errors: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        shutdown: threading.Event | None = None,
    ) -> None:
        self.gj = gj
        self.queues = queues or QueueSelection()
        self.raise_errors = raise_errors
        self.loop = loop
        self.shutdown = shutdown or threading.Event()
        self._fragments = self.queues.sql_fragments()
        self._advisory = gj.settings.lock_strategy in ("advisory", "hybrid")

    # -- claiming -----------------------------------------------------------------------------

    def claim_params(self, process_id: uuid.UUID) -> dict[str, Any]:
        """The parameters of ``jobs_claim`` for this performer."""
        return {"process_id": process_id, "queues": list(self.queues.names)}

    def claim_fragments(self, limit: int) -> dict[str, str]:
        """The text of ``jobs_claim`` for this performer and ``limit``: written in, not sent as
        parameters, so that Postgres plans each variant once (see the statement)."""
        return {
            **self._fragments,
            "limit": str(int(limit)),
            "skip_advisory_locked": "true" if self._advisory else "false",
        }

    def claim(self, limit: int = 1) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs for this process (none when it is not registered).

        With the advisory or hybrid lock strategy each claimed job's session advisory lock is
        taken too, and held until :meth:`complete` (or :meth:`release_locks`); a job whose lock
        another session took in the meantime is given back at once.
        """
        process_id = self.gj.tracker.id_for_lock()
        if process_id is None:
            return []
        rows = self.gj.database.execute(
            "jobs_claim", self.claim_params(process_id), fragments=self.claim_fragments(limit)
        )
        now = time.monotonic()
        claimed = [ClaimedJob.from_row(row, now) for row in rows]
        if not self._advisory or not claimed:
            return claimed
        try:
            locked = self.gj.job_locks.acquire(job.id for job in claimed)
        except BaseException:
            # No lock connection (database trouble): give every claim of this batch back rather
            # than run some unlocked; if even that fails, this process's unregistration (or the
            # sweep once it is gone) releases them.
            with contextlib.suppress(Error):
                self._unclaim(process_id, claimed)
            raise
        # Race: between the claim's look at pg_locks and now, another session took a job's lock
        # (a zombie still running it). Undo those claims; they run later.
        self._unclaim(process_id, [job for job in claimed if job.id not in locked])
        return [job for job in claimed if job.id in locked]

    def unclaim(self, jobs: Sequence[ClaimedJob]) -> None:
        """Give back claims of jobs that never started (claimed ahead, then shutdown), as if
        they had not been claimed: no attempt and no execution row is left; queues are woken."""
        if not jobs:
            return
        self._unclaim(self.gj.tracker.process_id, jobs)
        for queue in sorted({job.queue_name for job in jobs}):
            self.gj.database.execute(
                "jobs_renotify", {"channel": CHANNEL, "queue": queue, "wait": 0.0}
            )

    def _unclaim(self, process_id: uuid.UUID, jobs: Sequence[ClaimedJob]) -> None:
        if self._advisory:
            self.gj.job_locks.release(job.id for job in jobs)
        for job in jobs:
            self.gj.database.execute(
                "jobs_unclaim", {"id": job.id, "process_id": process_id, "attempt": job.attempt}
            )

    def still_claimed(self, job: ClaimedJob) -> bool:
        """Whether this process still holds its claim of ``job`` (for a job claimed ahead that
        waited before a thread started it: its claim may have been swept away meanwhile)."""
        row = self.gj.database.fetchone(
            "job_claim_held",
            {"id": job.id, "process_id": self.gj.tracker.process_id, "attempt": job.attempt},
        )
        return bool(row and row["held"])

    def release_locks(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Drop the advisory locks of jobs whose claims are released without :meth:`complete`
        (e.g. interrupted at shutdown). A no-op under the skiplocked strategy."""
        self.gj.job_locks.release(job_ids)

    # -- running ------------------------------------------------------------------------------

    def perform(self, job: ClaimedJob) -> Outcome:
        """Run one claimed job and classify how it ended. Holds no database connection.

        Always returns an outcome (issue 11): whatever the task, its arguments, its result or
        its error do, the worker thread goes on to its next job. Only the interruption that
        stops the thread (shutdown) and KeyboardInterrupt pass through.
        """
        started = time.monotonic()
        try:
            return self._perform(job, started)
        except (JobInterrupted, KeyboardInterrupt):
            raise
        except BaseException as error:
            # Not the task's own error (that is classified in _perform) but what goodjob ran
            # around it: a retry policy's wait function, an error handler that raised a
            # BaseException. The job ends visibly instead of taking the thread down.
            logger.exception("could not classify the outcome", extra={"job_id": str(job.id)})
            return Outcome(
                job,
                "discarded",
                time.monotonic() - started,
                error=describe_error(error),
                error_event="unhandled",
                backtrace=format_backtrace(error),
                exception=error,
            )

    def _perform(self, job: ClaimedJob, started: float) -> Outcome:
        task = self.gj.tasks.get(job.task_name)
        try:
            args, kwargs = load_arguments(job.arguments)
        except SerializationError as error:
            # Written by something other than goodjob's enqueue, or by an older version: the
            # job can never run, so it ends here, whatever its retry policy says.
            return Outcome(
                job,
                "discarded",
                time.monotonic() - started,
                error=describe_error(error),
                error_event="discarded",
                backtrace=format_backtrace(error),
                exception=error,
            )
        try:
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
                    return Outcome(
                        job,
                        "succeeded",
                        time.monotonic() - started,
                        error=describe_error(error),
                        error_event="handled",
                        backtrace=format_backtrace(error),
                        exception=error,
                    )
            kind, event, wait = classify(self.gj, task, job, error)
            return Outcome(
                job,
                kind,
                time.monotonic() - started,
                error=describe_error(error),
                error_event=event,
                wait=wait,
                exception=error,
                backtrace=format_backtrace(error),
            )
        duration = time.monotonic() - started
        try:
            result = dump_result(value, self.gj.settings.max_payload_bytes)
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
            job.id, job.task_name, job.queue_name, job.attempt, job.interrupted, self.shutdown
        )
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
            with ThreadPoolExecutor(1, thread_name_prefix="goodjob-inline-async") as pool:
                return pool.submit(asyncio.run, run()).result()
        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result()

    # -- recording ----------------------------------------------------------------------------

    def complete(self, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
        """Record outcomes, fenced; returns the ids recorded (a zombie's are missing)."""
        if not outcomes:
            return set()
        process_id = self.gj.tracker.process_id
        params = {
            "process_id": process_id,
            "ids": [o.job.id for o in outcomes],
            "attempts": [o.job.attempt for o in outcomes],
            "kinds": [o.kind for o in outcomes],
            "results": [
                json_text(o.result or "null") if o.kind == "succeeded" else None for o in outcomes
            ],
            "errors": [o.error for o in outcomes],
            "error_events": [o.error_event for o in outcomes],
            "backtraces": [o.backtrace for o in outcomes],
            "waits": [o.wait for o in outcomes],
            "durations": [o.duration for o in outcomes],
            "preserve": [preserve(self.gj, o.kind, o.error_event) for o in outcomes],
        }
        try:
            rows = self.gj.database.execute("jobs_complete", params)
            recorded = {row["id"] for row in rows}
        finally:
            if self._advisory:
                self.release_locks([o.job.id for o in outcomes])
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
        # Recorded retries and releases are due again (now or after their wait): wake each
        # queue once, with its earliest start.
        due: dict[str, float] = {}
        for o in outcomes:
            if o.kind in ("retry", "release") and o.job.id in recorded:
                due[o.job.queue_name] = min(o.wait, due.get(o.job.queue_name, o.wait))
        for queue, wait in due.items():
            self.gj.database.execute(
                "jobs_renotify", {"channel": CHANNEL, "queue": queue, "wait": wait}
            )
        return recorded

    # -- convenience ----------------------------------------------------------------------------

    def perform_one(self) -> Outcome | None:
        """Claim, run and record one job; None when nothing is due."""
        claimed = self.claim(1)
        if not claimed:
            return None
        outcome = self.perform(claimed[0])
        self.complete([outcome])
        return outcome

    def drain(self) -> int:
        """Run due jobs one by one until none is left; returns how many ran."""
        count = 0
        with self.gj.tracker.register():
            while (outcome := self.perform_one()) is not None:
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
