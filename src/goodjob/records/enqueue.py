"""Enqueueing: new jobs encoded, inserted and handed back as handles.

A batch is encoded column by column (:class:`NewJobs`), inserted in one statement, in pipelined
parts of :data:`PIPELINE_PART` jobs, or streamed with COPY from :data:`COPY_THRESHOLD` jobs, and
handed back as :class:`EnqueuedJobs`, whose handles are built when first read (issue 5: most of
``enqueue_all`` is client time).
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from goodjob.db import CHANNEL, Database
from goodjob.db.database import (
    acaller_transaction,
    caller_cursor,
    caller_transaction,
    translate_errors,
)
from goodjob.ids import new_ids
from goodjob.options import JobRequest
from goodjob.records.jobs import Job, JobReader
from goodjob.serialization import dumps_checked, encode_arguments, too_large

# Batches this large are streamed with COPY, so that neither a statement's parameters on the
# caller's connection nor the client's memory for a pipeline grow without bound. Below it,
# jobs_insert statements are faster than COPY at every size measured (issue 5: 48,000 vs
# 39,000-45,000 jobs/s at 10,000 rows; 8.4 vs 9.9 µs a job at 1,000 rows, binary COPY).
COPY_THRESHOLD = 100_000
# On goodjob's own connection a batch goes out in parts of this many jobs (_insert_pipelined),
# each one jobs_insert statement. Measured at 1,000 jobs a batch: 1 part 9.3 µs a job, 2 parts
# 9.3, 4 parts 8.7, 8 parts 8.8.
PIPELINE_PART = 250


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
            self._handles = [job for part in self._parts for job in _handles(self._reader, part)]
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
            _ids(requests),
            [
                encode_arguments(r.args, r.kwargs, r.headers)
                if r.args or r.kwargs or r.headers
                else NO_ARGUMENTS
                for r in requests
            ],
        )

    @classmethod
    def joined(cls, parts: Sequence[NewJobs]) -> NewJobs:
        """One batch of the jobs of ``parts``, in their order (a batch's block collects its
        jobs enqueue by enqueue, and inserts them at its exit as encoded then)."""
        return cls(
            [r for part in parts for r in part.requests],
            [i for part in parts for i in part.ids],
            [a for part in parts for a in part.arguments],
        )

    def take(self, indexes: Sequence[int]) -> NewJobs:
        """The jobs at ``indexes``, in that order."""
        return NewJobs(
            [self.requests[i] for i in indexes],
            [self.ids[i] for i in indexes],
            [self.arguments[i] for i in indexes],
        )

    def __len__(self) -> int:
        return len(self.ids)


def _ids(requests: Sequence[JobRequest]) -> list[uuid.UUID]:
    """New ids, except where a middleware minted a request's id already."""
    ids = new_ids(len(requests))
    if any(request.id is not None for request in requests):
        ids = [request.id or new for request, new in zip(requests, ids, strict=True)]
    return ids


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
        "batch_id": options.batch_id,
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
    db: Database,
    requests: Sequence[JobRequest],
    reader: JobReader,
    conn: Any = None,
    encoded: NewJobs | None = None,
) -> EnqueuedJobs:
    """Insert jobs for ``requests`` and wake each of their queues once; on ``conn`` (the
    caller's) if given. Returns the jobs' handles. ``encoded``: the requests already given ids
    and encoded (a batch's, collected in its block)."""
    if conn is None and encoded is None and db.pipelines and 1 < len(requests) < COPY_THRESHOLD:
        return _insert_pipelined(db, requests, reader)
    limit = db.settings.max_payload_bytes
    jobs = NewJobs.of(requests) if encoded is None else encoded
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
    with translate_errors(), db.transaction() if conn is None else caller_transaction(conn) as tx:
        now = db.execute("jobs_now", conn=tx)[0]["now"]
        rows = copy_rows(jobs, now, db.settings.max_payload_bytes)
        with caller_cursor(tx).copy(db.sql("jobs_copy")) as copy:
            for row in rows:
                copy.write_row(row)
        db.run("jobs_notify", notify_params(rows), conn=tx)


async def ainsert(
    db: Database,
    requests: Sequence[JobRequest],
    reader: JobReader,
    conn: Any,
    encoded: NewJobs | None = None,
) -> EnqueuedJobs:
    """:func:`insert` on the caller's async connection."""
    limit = db.settings.max_payload_bytes
    jobs = NewJobs.of(requests) if encoded is None else encoded
    if len(jobs) == 1:
        await db.aexecute("jobs_insert_one", insert_one_params(jobs, limit), conn)
    elif len(jobs) < COPY_THRESHOLD:
        await db.aexecute("jobs_insert", insert_params(jobs, limit), conn)
    else:
        async with acaller_transaction(conn):
            now = (await db.aexecute("jobs_now", None, conn))[0]["now"]
            rows = copy_rows(jobs, now, limit)
            async with caller_cursor(conn).copy(db.sql("jobs_copy")) as copy:
                for row in rows:
                    await copy.write_row(row)
            await db.aexecute("jobs_notify", notify_params(rows), conn)
    return EnqueuedJobs(reader, [jobs])


def _handles(reader: JobReader, jobs: NewJobs) -> list[Job]:
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
            shared, last = _shared_fields(reader, request), request
        fields = shared.copy()
        fields["id"] = job_id
        if arguments is NO_ARGUMENTS:  # shared by the batch: each handle gets its own
            arguments = encode_arguments((), {})
        fields["arguments"] = arguments
        job = new(Job)
        set_(job, "__dict__", fields)
        handles.append(job)
    return handles


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
        "batch_id": options.batch_id,
        "reader": reader,
    }
