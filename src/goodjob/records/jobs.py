"""The job record: ``goodjob_jobs`` rows as :class:`Job`, attempts as :class:`Execution`.

Also the operations on one job (retry, discard, reschedule, destroy) and the cleanup of preserved
records. Each operation is one fenced statement whose ``WHERE`` states the state it needs, so a
worker claiming the same job at the same moment either wins (the operation then matches no row
and says why) or waits for it (its ``SKIP LOCKED`` claim passes the row over).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json as jsonlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from goodjob.db import CHANNEL, Database
from goodjob.db.database import translate_errors
from goodjob.errors import JobFailed, JobNotFound, JobStateError, WaitTimeout
from goodjob.ids import new_ids
from goodjob.options import JobRequest
from goodjob.serialization import (
    decode,
    decode_arguments,
    dumps_checked,
    encode_arguments,
    too_large,
)

# job.wait() polls: quickly at first (short jobs), then every half second at most.
WAIT_FIRST_POLL = 0.02  # seconds
WAIT_MAX_POLL = 0.5  # seconds
LIST_LIMIT = 100  # jobs listed when no limit is given (gj.jobs() and `goodjob jobs` alike)
CLEANUP_CHUNK = 1_000  # rows deleted per statement, so no single transaction grows large
# Batches this large are streamed with COPY, so that neither a statement's parameters on the
# caller's connection nor the client's memory for a pipeline grow without bound. Below it,
# jobs_insert statements are faster than COPY at every size measured (issue 5: 48,000 vs
# 39,000-45,000 jobs/s at 10,000 rows; 8.4 vs 9.9 µs a job at 1,000 rows, binary COPY).
COPY_THRESHOLD = 100_000
# On goodjob's own connection a batch goes out in parts of this many jobs (_insert_pipelined),
# each one jobs_insert statement. Measured at 1,000 jobs a batch: 1 part 9.3 µs a job, 2 parts
# 9.3, 4 parts 8.7, 8 parts 8.8.
PIPELINE_PART = 250

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
    def enqueued(cls, reader: JobReader, jobs: NewJobs) -> list[Job]:
        """The handles of jobs just inserted: what the client knows without asking the database.

        Each handle's ``__dict__`` is a copy of one made per task and options, with the id and
        arguments set: the frozen dataclass ``__init__`` pays one ``object.__setattr__`` per
        field, and handles built that way were a third of ``enqueue_all``'s client time for 1,000
        jobs (issue 5). Fields left out read their default from the class, where the dataclass
        put it.
        """
        new, set_ = object.__new__, object.__setattr__
        handles = []
        shared: dict[str, Any] = {}
        last: JobRequest | None = None
        for request, job_id, arguments in zip(jobs.requests, jobs.ids, jobs.arguments, strict=True):
            if (
                last is None
                or request.task_name != last.task_name
                or request.options is not last.options
            ):
                shared, last = cls._shared_fields(reader, request), request
            fields = shared.copy()
            fields["id"] = job_id
            if arguments is NO_ARGUMENTS:  # shared by the batch: each handle gets its own
                arguments = encode_arguments((), {})
            fields["arguments"] = arguments
            job = new(cls)
            set_(job, "__dict__", fields)
            handles.append(job)
        return handles

    @staticmethod
    def _shared_fields(reader: JobReader, request: JobRequest) -> dict[str, Any]:
        """The fields of a new job's handle that come from its task and options."""
        options = request.options
        # A guess by the local clock, for the handle only; gj.job(id) asks the database.
        scheduled = options.wait > 0 or (
            options.run_at is not None and options.run_at > dt.datetime.now(dt.UTC)
        )
        return {
            "task_name": request.task_name,
            "queue_name": options.queue,
            "priority": options.priority,
            "status": "scheduled" if scheduled else "queued",
            "scheduled_at": options.run_at,
            "created_at": None,
            "labels": options.labels,
            "concurrency_key": options.concurrency_key,
            "reader": reader,
        }

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
            reader=reader,
        )


class EnqueuedJobs(Sequence[Job]):
    """The handles of a batch just inserted, in the order of its requests, built when first read.

    A caller enqueueing thousands of jobs often keeps none of their handles. Built at once, they
    were two objects per job for Python's garbage collector to trace, with the batch's others
    (issue 5: without them, and with calls without arguments sharing one encoded value, a
    1,000-job batch went from 10.3 to 8.0 ms). Compares equal to a list of the same jobs.
    """

    __hash__ = None  # type: ignore[assignment]  # like a list: equal to one, so unhashable

    def __init__(self, reader: JobReader, parts: Sequence[NewJobs]) -> None:
        self._reader = reader
        self._parts = parts
        self._handles: list[Job] | None = None

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    @overload
    def __getitem__(self, index: int) -> Job: ...
    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...
    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        return self._built()[index]

    def __iter__(self) -> Iterator[Job]:
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EnqueuedJobs):
            other = other._built()
        return self._built() == other if isinstance(other, list) else NotImplemented

    def __repr__(self) -> str:
        return repr(self._built())

    def _built(self) -> list[Job]:
        # Two threads reading at once may both build: the handles are equal, either list serves.
        if self._handles is None:
            self._handles = [
                job for part in self._parts for job in Job.enqueued(self._reader, part)
            ]
        return self._handles


# What a call without arguments stores. A batch's calls without arguments all refer to this one
# value, so they add no objects for the garbage collector to trace (issue 5); it is only ever
# dumped, never handed out (Job.enqueued gives each handle its own).
NO_ARGUMENTS: dict[str, Any] = encode_arguments((), {})
_NO_ARGUMENTS_JSON = jsonlib.dumps(NO_ARGUMENTS)  # a single enqueue's, dumped once


@dataclass(slots=True)
class NewJobs:
    """Jobs about to be inserted, column by column: the requests, their ids and their encoded
    arguments. No object per job: a batch of thousands is built, inserted and handed back as
    handles straight from these lists (issue 5: enqueue_all is mostly client time)."""

    requests: Sequence[JobRequest]
    ids: list[uuid.UUID]
    arguments: list[dict[str, Any]]

    @classmethod
    def of(cls, requests: Sequence[JobRequest]) -> NewJobs:
        """Mint the ids (together: one lock, one read of random bytes) and encode the arguments
        (refusing what JSON cannot carry, before anything is inserted)."""
        return cls(
            requests,
            new_ids(len(requests)),
            [
                encode_arguments(r.args, r.kwargs) if r.args or r.kwargs else NO_ARGUMENTS
                for r in requests
            ],
        )

    def __len__(self) -> int:
        return len(self.ids)


def _row(request: JobRequest) -> dict[str, Any]:
    """The columns of one job that come from its request (all but its id and arguments)."""
    options = request.options
    return {
        "queue_name": options.queue,
        "priority": options.priority,
        "task_name": request.task_name,
        "run_at": options.run_at,
        "wait": float(options.wait),
        "concurrency_key": options.concurrency_key,
        "batch_id": None,
    }


# jobs_insert's per-row arrays, by the name of the shared value each falls back to.
_ARRAYS = {
    "queue_name": "queue_names",
    "priority": "priorities",
    "task_name": "task_names",
    "run_at": "run_ats",
    "wait": "waits",
    "concurrency_key": "concurrency_keys",
    "batch_id": "batch_ids",
}


def _column(values: list[Any]) -> tuple[list[Any], Any]:
    """One column of ``jobs_insert``: its array, and the value every row shares (or None).

    A column whose rows all agree (one task, queue, priority, no run_at, ...: the usual batch)
    travels as its shared value and an empty array, which psycopg dumps for free; dumping 1,000
    elements costs more client time than the server spends inserting them (issue 5).
    """
    if values.count(values[0]) == len(values):
        return [], values[0]
    return values, None


def _oversized(jobs: NewJobs, index: int) -> str:
    """Names the job of a batch whose arguments are over the size limit, and its largest one."""
    request, encoded = jobs.requests[index], jobs.arguments[index]
    named = [(f"argument {i}", value) for i, value in enumerate(encoded["args"])]
    named += [(f"argument {key!r}", value) for key, value in encoded["kwargs"].items()]
    largest = max(named, key=lambda item: len(jsonlib.dumps(item[1])))[0] if named else "none"
    where = f"job {index + 1} of the batch, " if len(jobs) > 1 else ""
    return f"{where}task {request.task_name} (largest: {largest}): its arguments"


def dump_arguments(jobs: NewJobs, limit: int) -> str:
    """The arguments of a batch as one JSON array; SerializationError for a job over ``limit``."""
    return dumps_checked(jobs.arguments, limit, lambda index: _oversized(jobs, index))[0]


def insert_params(jobs: NewJobs, limit: int) -> dict[str, Any]:
    """Parameters of ``jobs_insert`` for a batch of new jobs (arguments at most ``limit`` bytes
    a job)."""
    requests = jobs.requests
    labels = [r.options.labels for r in requests]
    params: dict[str, Any] = {
        "ids": jobs.ids,
        # One JSON document each (see jobs_insert); no labels at all is an empty document.
        "arguments": dump_arguments(jobs, limit),
        "labels": jsonlib.dumps(labels if any(labels) else []),
        "channel": CHANNEL,
    }
    first = requests[0]
    if all(r.task_name == first.task_name and r.options is first.options for r in requests):
        # The usual batch: one task's calls with the same options share every other column.
        for name, value in _row(first).items():
            params[_ARRAYS[name]], params[name] = [], value
        return params
    rows = [_row(r) for r in requests]
    for name, array in _ARRAYS.items():
        params[array], params[name] = _column([row[name] for row in rows])
    return params


def insert_one_params(jobs: NewJobs, limit: int) -> dict[str, Any]:
    """Parameters of ``jobs_insert_one`` for a batch of one."""
    request = jobs.requests[0]
    params = _row(request)
    params["id"] = jobs.ids[0]
    arguments = jobs.arguments[0]
    if arguments is NO_ARGUMENTS:
        params["arguments"] = _NO_ARGUMENTS_JSON
    else:
        text = jsonlib.dumps(arguments)
        if len(text) > limit:
            dumps_checked([arguments], limit, lambda index: _oversized(jobs, index))
        params["arguments"] = text
    params["labels"] = list(request.options.labels) or None
    params["channel"] = CHANNEL
    return params


def copy_rows(jobs: NewJobs, now: dt.datetime, limit: int) -> list[tuple[Any, ...]]:
    """The rows of ``jobs_copy``; ``now`` is the transaction's database time, so scheduled_at
    is computed with the database clock exactly as ``jobs_insert`` would."""
    rows = []
    for index, (request, job_id, arguments) in enumerate(
        zip(jobs.requests, jobs.ids, jobs.arguments, strict=True)
    ):
        text = jsonlib.dumps(arguments)
        if len(text) > limit:
            raise too_large(_oversized(jobs, index), len(text), limit)
        row = _row(request)
        rows.append(
            (
                job_id,
                row["queue_name"],
                row["priority"],
                row["task_name"],
                text,
                row["run_at"] or now + dt.timedelta(seconds=row["wait"]),
                list(request.options.labels) or None,
                row["concurrency_key"],
                row["batch_id"],
            )
        )
    return rows


def notify_params(rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Parameters of ``jobs_notify``: each queue once, with its earliest scheduled_at."""
    earliest: dict[str, dt.datetime] = {}
    for row in rows:
        queue, scheduled_at = row[1], row[5]
        if queue not in earliest or scheduled_at < earliest[queue]:
            earliest[queue] = scheduled_at
    return {"channel": CHANNEL, "queues": list(earliest), "scheduled_ats": list(earliest.values())}


def insert(
    db: Database, requests: Sequence[JobRequest], reader: JobReader, conn: Any = None
) -> EnqueuedJobs:
    """Insert jobs for ``requests`` and wake each of their queues once; on ``conn`` (the
    caller's) if given. Returns the jobs' handles."""
    if conn is None and db.pipelines and 1 < len(requests) < COPY_THRESHOLD:
        return _insert_pipelined(db, requests, reader)
    limit = db.settings.max_payload_bytes
    jobs = NewJobs.of(requests)
    if len(jobs) == 1:
        db.run("jobs_insert_one", insert_one_params(jobs, limit), conn=conn)
    elif len(jobs) < COPY_THRESHOLD:
        db.run("jobs_insert", insert_params(jobs, limit), conn=conn)
    else:
        _copy(db, jobs, conn)
    return EnqueuedJobs(reader, [jobs])


def _insert_pipelined(
    db: Database, requests: Sequence[JobRequest], reader: JobReader
) -> EnqueuedJobs:
    """Insert a batch as statements of ``PIPELINE_PART`` jobs, sent in one transaction without
    waiting for each other: the server inserts one part while the client encodes the next
    (issue 5: 10.9 -> 8.7 µs a job). A part that fails to encode rolls back the parts already
    sent."""
    parts = []
    limit = db.settings.max_payload_bytes
    with db.pipeline() as send:
        for start in range(0, len(requests), PIPELINE_PART):
            jobs = NewJobs.of(requests[start : start + PIPELINE_PART])
            send("jobs_insert", insert_params(jobs, limit))
            parts.append(jobs)
    return EnqueuedJobs(reader, parts)


def _copy(db: Database, jobs: NewJobs, conn: Any) -> None:
    """Stream a batch too large for one statement's parameters (see ``COPY_THRESHOLD``)."""
    with translate_errors(), db.transaction() if conn is None else _CallerTransaction(conn) as tx:
        now = db.execute("jobs_now", conn=tx)[0]["now"]
        rows = copy_rows(jobs, now, db.settings.max_payload_bytes)
        with tx.cursor().copy(db.sql("jobs_copy")) as copy:
            for row in rows:
                copy.write_row(row)
        db.run("jobs_notify", notify_params(rows), conn=tx)


async def ainsert(
    db: Database, requests: Sequence[JobRequest], reader: JobReader, conn: Any
) -> EnqueuedJobs:
    """:func:`insert` on the caller's async connection."""
    limit = db.settings.max_payload_bytes
    jobs = NewJobs.of(requests)
    if len(jobs) == 1:
        await db.aexecute("jobs_insert_one", insert_one_params(jobs, limit), conn)
    elif len(jobs) < COPY_THRESHOLD:
        await db.aexecute("jobs_insert", insert_params(jobs, limit), conn)
    else:
        with translate_errors():
            async with conn.transaction():
                now = (await db.aexecute("jobs_now", None, conn))[0]["now"]
                rows = copy_rows(jobs, now, limit)
                async with conn.cursor().copy(db.sql("jobs_copy")) as copy:
                    for row in rows:
                        await copy.write_row(row)
                await db.aexecute("jobs_notify", notify_params(rows), conn)
    return EnqueuedJobs(reader, [jobs])


class _CallerTransaction:
    """The caller's connection inside a transaction (a savepoint when one is open)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tx: Any = None

    def __enter__(self) -> Any:
        self.tx = self.conn.transaction()
        self.tx.__enter__()
        return self.conn

    def __exit__(self, *exc: Any) -> Any:
        return self.tx.__exit__(*exc)


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


def get(
    db: Database,
    job_id: uuid.UUID,
    *,
    with_executions: bool = True,
    reader: JobReader | None = None,
) -> Job | None:
    row = db.fetchone("job_get", {"id": job_id})
    if row is None:
        return None
    executions = db.execute("job_executions", {"id": job_id}) if with_executions else []
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
    if not db.execute("job_retry", {"id": job_id, "channel": CHANNEL}):
        raise _refused(db, job_id, "retry", "only discarded jobs can be retried")


def discard(db: Database, job_id: uuid.UUID, *, force: bool = False) -> None:
    """Finish an unfinished job as discarded; a running one only with ``force``."""
    error = "goodjob.JobDiscarded: discarded by an operator" + (" while running" if force else "")
    if not db.execute("job_discard", {"id": job_id, "force": force, "error": error}):
        raise _refused(
            db, job_id, "discard", "only unfinished jobs can be discarded (running: force=True)"
        )


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
    """Delete finished jobs older than ``older_than`` seconds, chunk by chunk; how many."""
    total = 0
    while True:
        params = {"older_than": older_than, "include_discarded": include_discarded, "chunk": chunk}
        deleted = len(db.execute("jobs_cleanup", params))
        total += deleted
        if deleted < chunk:
            return total
