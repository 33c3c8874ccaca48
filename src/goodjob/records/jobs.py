"""The job record: ``goodjob_jobs`` rows as :class:`Job`, attempts as :class:`Execution`.

Also the operations on one job (retry, discard, reschedule, destroy) and the cleanup of preserved
records. Each operation is one fenced statement whose ``WHERE`` states the state it needs, so a
worker claiming the same job at the same moment either wins (the operation then matches no row
and says why) or waits for it (its ``SKIP LOCKED`` claim passes the row over).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from goodjob.db import CHANNEL, Database
from goodjob.errors import JobFailed, JobNotFound, JobStateError, WaitTimeout
from goodjob.records.settling import settling_job
from goodjob.serialization import (
    decode,
    decode_arguments,
)

# job.wait() polls: quickly at first (short jobs), then every half second at most.
WAIT_FIRST_POLL = 0.02  # seconds
WAIT_MAX_POLL = 0.5  # seconds
LIST_LIMIT = 100  # jobs listed when no limit is given (gj.jobs() and `goodjob jobs` alike)
CLEANUP_CHUNK = 1_000  # rows deleted per statement, so no single transaction grows large
STATUSES = ("scheduled", "queued", "running", "succeeded", "retried", "discarded")


@dataclass(frozen=True)
class Execution:
    """One attempt of a job."""

    attempt: int
    process_id: uuid.UUID | None
    performed_at: dt.datetime
    finished_at: dt.datetime | None
    duration: dt.timedelta | None
    error: str | None
    error_event: str | None
    error_backtrace: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Execution:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Job:
    """A job as the database last said it was. Fetch a fresh one with ``gj.job(id)``."""

    id: uuid.UUID
    task_name: str
    queue_name: str
    priority: int
    status: str
    arguments: dict[str, Any]
    scheduled_at: dt.datetime | None
    created_at: dt.datetime | None
    performed_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    error_event: str | None = None
    executions_count: int = 0
    labels: tuple[str, ...] = ()
    locked_by_id: uuid.UUID | None = None
    concurrency_key: str | None = None
    batch_id: uuid.UUID | None = None
    raw_result: Any = None
    executions: tuple[Execution, ...] = field(default=(), compare=False)
    updated_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None  # when a cancel was asked (job.cancel())
    # Set on the handle an enqueue returns when a concurrency limit refused it: why. The handle
    # is then the job in its way (the key's queued or running one), or none was inserted.
    refused: str | None = None
    reader: JobReader | None = field(default=None, compare=False, repr=False)

    @property
    def args(self) -> list[Any]:
        return decode_arguments(self.arguments)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return decode_arguments(self.arguments)[1]

    @property
    def result(self) -> Any:
        """The task's return value (JSON-decoded), or None."""
        return decode(self.raw_result)

    @property
    def attempts(self) -> int:
        return self.executions_count

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def refresh(self) -> Job:
        """This job as the database says it is now."""
        if self.reader is None:
            raise JobStateError("this Job was built without a reader; fetch it with gj.job(id)")
        return self.reader.job(self.id)

    def cancel(self) -> Job:
        """Cancel this job: queued or scheduled, it ends discarded as cancelled at once. Running,
        its task is told (``current_job().cancelled``; an async task gets
        ``asyncio.CancelledError``) and it ends discarded as cancelled when its worker records
        the attempt, still running until then. JobStateError once it has finished. The job as
        it is now."""
        if self.reader is None:
            raise JobStateError("this Job was built without a reader; fetch it with gj.job(id)")
        return self.reader.cancel(self.id)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job finishes; its result, or JobFailed / WaitTimeout.

        Polls the row (no connection is held between polls), backing off to every half second.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = WAIT_FIRST_POLL
        while True:
            job = self.refresh()
            if job.finished:
                return job._outcome()
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} did not finish within {timeout}s ({job.status})")
            left = WAIT_MAX_POLL if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(min(pause, left))
            pause = min(pause * 2, WAIT_MAX_POLL)

    async def await_result(self, timeout: float | None = None) -> Any:
        """:meth:`wait` for async code: the result, or JobFailed / WaitTimeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = WAIT_FIRST_POLL
        while True:
            job = await asyncio.to_thread(self.refresh)
            if job.finished:
                return job._outcome()
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} did not finish within {timeout}s ({job.status})")
            left = WAIT_MAX_POLL if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, WAIT_MAX_POLL)

    def _outcome(self) -> Any:
        if self.status == "discarded":
            raise JobFailed(f"job {self.id} ({self.task_name}) was discarded: {self.error}", self)
        return self.result

    @classmethod
    def from_row(
        cls,
        row: dict[str, Any],
        executions: Sequence[dict[str, Any]] = (),
        reader: JobReader | None = None,
    ) -> Job:
        return cls(
            id=row["id"],
            task_name=row["task_name"],
            queue_name=row["queue_name"],
            priority=row["priority"],
            status=row["status"],
            arguments=row["arguments"],
            scheduled_at=row["scheduled_at"],
            created_at=row["created_at"],
            performed_at=row["performed_at"],
            finished_at=row["finished_at"],
            error=row["error"],
            error_event=row["error_event"],
            executions_count=row["executions_count"],
            labels=tuple(row["labels"] or ()),
            locked_by_id=row["locked_by_id"],
            concurrency_key=row["concurrency_key"],
            batch_id=row["batch_id"],
            raw_result=row["result"],
            executions=tuple(Execution.from_row(e) for e in executions),
            updated_at=row["updated_at"],
            cancelled_at=row.get("cancelled_at"),
            reader=reader,
        )


class JobReader:
    """What a :class:`Job` handle reads through: jobs by id, fresh from the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def job(self, job_id: uuid.UUID) -> Job:
        """The job with this id, with its executions; JobNotFound when there is none."""
        job = get(self.db, job_id, reader=self)
        if job is None:
            raise JobNotFound(f"no job has id {job_id}")
        return job

    def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel the job with this id (see :func:`cancel`); the job as it is then."""
        cancel(self.db, job_id)
        return self.job(job_id)


def get(
    db: Database,
    job_id: uuid.UUID,
    *,
    with_executions: bool = True,
    reader: JobReader | None = None,
    conn: Any = None,
) -> Job | None:
    """The job with this id, or None; read on ``conn`` (a caller's connection: the Django
    backend reads its results in Django's transaction) or a pooled one."""
    row = db.fetchone("job_get", {"id": job_id}, conn=conn)
    if row is None:
        return None
    executions = db.execute("job_executions", {"id": job_id}, conn=conn) if with_executions else []
    return Job.from_row(row, executions, reader)


def find(
    db: Database,
    *,
    status: str | None = None,
    queue: str | None = None,
    task: str | None = None,
    label: str | None = None,
    limit: int = LIST_LIMIT,
    reader: JobReader | None = None,
) -> list[Job]:
    """Jobs matching every given filter, newest first (executions not loaded)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    rows = db.execute(
        "jobs_list",
        {"status": status, "queue": queue, "task": task, "label": label, "limit": limit},
    )
    return [Job.from_row(row, (), reader) for row in rows]


def _refused(db: Database, job_id: uuid.UUID, action: str, needs: str) -> JobStateError:
    """The error for an operation whose fenced statement matched no row: say why."""
    job = get(db, job_id, with_executions=False)
    if job is None:
        raise JobNotFound(f"no job has id {job_id}")
    return JobStateError(f"cannot {action} job {job_id}: it is {job.status}; {needs}")


def retry(db: Database, job_id: uuid.UUID) -> None:
    """Re-queue a discarded job to run now."""
    with settling_job(db, job_id) as tx:
        retried = db.execute("job_retry", {"id": job_id, "channel": CHANNEL}, conn=tx)
    if not retried:
        raise _refused(db, job_id, "retry", "only discarded jobs can be retried")


def discard(db: Database, job_id: uuid.UUID, *, force: bool = False) -> None:
    """Finish an unfinished job as discarded; a running one only with ``force``."""
    error = "goodjob.JobDiscarded: discarded by an operator" + (" while running" if force else "")
    with settling_job(db, job_id) as tx:
        params = {"id": job_id, "force": force, "error": error}
        discarded = db.execute("job_discard", params, conn=tx)
    if not discarded:
        raise _refused(
            db, job_id, "discard", "only unfinished jobs can be discarded (running: force=True)"
        )


CANCELLED = "goodjob.JobCancelled: cancelled"  # jobs_complete writes the same for a running one


def cancel(db: Database, job_id: uuid.UUID) -> None:
    """Cancel an unfinished job: one waiting ends discarded now; a running one's process is
    told, and the job ends discarded when its worker records the attempt (``job_cancel``)."""
    params = {"id": job_id, "error": CANCELLED, "channel": CHANNEL}
    with settling_job(db, job_id) as tx:
        cancelled = db.execute("job_cancel", params, conn=tx)
    if not cancelled:
        raise _refused(db, job_id, "cancel", "only unfinished jobs can be cancelled")


def reschedule(db: Database, job_id: uuid.UUID) -> None:
    """Make a scheduled (or queued, or retried) job due now."""
    if not db.execute("job_reschedule", {"id": job_id, "channel": CHANNEL}):
        raise _refused(db, job_id, "reschedule", "only jobs waiting to run can be rescheduled")


def destroy(db: Database, job_id: uuid.UUID) -> None:
    """Delete a finished job and its executions."""
    if not db.execute("job_destroy", {"id": job_id}):
        raise _refused(db, job_id, "destroy", "only finished jobs can be destroyed")


def cleanup(
    db: Database, *, older_than: float, include_discarded: bool, chunk: int = CLEANUP_CHUNK
) -> int:
    """Delete finished jobs older than ``older_than`` seconds, chunk by chunk; how many. The
    rows of concurrency keys no longer in use go too (the gated claim reads every row), and
    the batches finished that long ago, once their jobs are gone (a batch's jobs stay until it
    finishes)."""
    db.execute("concurrency_cleanup")
    total = 0
    while True:
        params = {"older_than": older_than, "include_discarded": include_discarded, "chunk": chunk}
        deleted = len(db.execute("jobs_cleanup", params))
        total += deleted
        if deleted < chunk:
            break
    params = {"older_than": older_than, "chunk": chunk}
    while len(db.execute("batches_cleanup", params)) == chunk:
        pass
    return total
