"""Enqueueing jobs with concurrency keys: each key's row written with its limits, and enqueues
over a limit refused.

A batch with keyed jobs runs in one transaction (the caller's, when given): first
``concurrency_keys_prepare`` writes and locks the rows of its keys, then each job whose task
limits enqueues goes in by ``concurrency_enqueue``, which counts and inserts (or refuses) in one
statement while the key is locked, and the rest of the batch goes in as any batch does. Claims
read the same rows (records/claims.py), so every limit is decided by the database, never by a
count in Python that another process could overtake.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from goodjob.db import Database
from goodjob.db.database import acaller_transaction, caller_transaction, translate_errors
from goodjob.options import Concurrency, JobRequest
from goodjob.records import enqueue
from goodjob.records.enqueue import NewJobs
from goodjob.records.jobs import Job, JobReader

_NO_LIMITS = Concurrency()

REASONS = {
    "enqueue_limit": "its key has enqueue_limit jobs queued",
    "total_limit": "its key has total_limit jobs queued or running",
    "enqueue_throttle": "its key had enqueue_throttle jobs enqueued within the period",
}


def keyed(requests: Sequence[JobRequest]) -> bool:
    """Whether any request has a concurrency key (the batch then takes this module's path)."""
    return any(r.options.concurrency_key is not None for r in requests)


def keys_params(requests: Sequence[JobRequest]) -> dict[str, Any]:
    """Parameters of ``concurrency_keys_prepare``: each key once, sorted, with the limits of
    its last request (tasks that share a key should declare the same limits)."""
    limits: dict[str, Concurrency] = {}
    for r in requests:
        if r.options.concurrency_key is not None:
            limits[r.options.concurrency_key] = r.concurrency or _NO_LIMITS
    keys = sorted(limits)
    throttles = [(limits[k].perform_throttle, limits[k].enqueue_throttle) for k in keys]
    return {
        "keys": keys,
        "perform_limits": [limits[k].perform_limit for k in keys],
        "perform_throttles": [p[0] if p else None for p, _ in throttles],
        "perform_throttle_seconds": [p[1] if p else None for p, _ in throttles],
        "enqueue_throttles": [e[0] if e else None for _, e in throttles],
        "enqueue_throttle_seconds": [e[1] if e else None for _, e in throttles],
    }


def _limited(request: JobRequest) -> bool:
    return (
        request.options.concurrency_key is not None
        and request.concurrency is not None
        and request.concurrency.limits_enqueue
    )


def _enqueue_params(jobs: NewJobs, limit: int) -> dict[str, Any]:
    concurrency = jobs.requests[0].concurrency
    assert concurrency is not None  # only limited requests come here
    params = enqueue.insert_one_params(jobs, limit)
    params["enqueue_limit"] = concurrency.enqueue_limit
    params["total_limit"] = concurrency.total_limit
    return params


def _handle(
    reader: JobReader, jobs: NewJobs, row: dict[str, Any], blocker: dict[str, Any] | None
) -> Job:
    """The handle of one limited request: the new job's, or for a refusal the handle of the job
    in its way (``blocker``, read in the enqueue's transaction: it may be this batch's) with
    ``refused`` saying why."""
    if row["refused"] is None:
        return enqueue.EnqueuedJobs(reader, [jobs])[0]
    reason = REASONS[row["refused"]]
    if blocker is not None:
        return dataclasses.replace(Job.from_row(blocker, (), reader), refused=reason)
    # No job stands in its way (a throttle whose jobs are gone): the request's own handle.
    mine = enqueue.EnqueuedJobs(reader, [jobs])[0]
    return dataclasses.replace(mine, status="refused", refused=reason)


def _split(requests: Sequence[JobRequest]) -> tuple[list[int], list[int]]:
    """The indexes of the requests whose task limits enqueues (counted one by one), and of the
    rest (inserted as one batch)."""
    limited = [i for i, request in enumerate(requests) if _limited(request)]
    rest = [i for i, request in enumerate(requests) if not _limited(request)]
    return limited, rest


def _in_order(count: int, *placed: Iterable[tuple[int, Job]]) -> list[Job]:
    """The handles of a batch, by the index of their request."""
    handles: list[Job | None] = [None] * count
    for index, handle in itertools.chain(*placed):
        handles[index] = handle
    return [handle for handle in handles if handle is not None]


def insert(
    db: Database,
    requests: Sequence[JobRequest],
    reader: JobReader,
    conn: Any = None,
    encoded: NewJobs | None = None,
) -> list[Job]:
    """:func:`goodjob.records.enqueue.insert` for a batch with keyed jobs: the handles in the
    order of the requests, a refused request's telling why (``Job.refused``)."""
    limit = db.settings.max_payload_bytes
    limited, rest = _split(requests)
    # Every request encoded before the transaction: a bad argument inserts nothing.
    encoded = NewJobs.of(requests) if encoded is None else encoded
    counted = []
    with (
        translate_errors(),
        db.transaction() if conn is None else caller_transaction(conn) as tx,
    ):
        db.run("concurrency_keys_prepare", keys_params(requests), conn=tx)
        for index in limited:
            jobs = encoded.take([index])
            row = db.execute("concurrency_enqueue", _enqueue_params(jobs, limit), conn=tx)[0]
            blocker = None
            if row["blocker"] is not None:
                blocker = db.fetchone("job_get", {"id": row["blocker"]}, conn=tx)
            counted.append((index, _handle(reader, jobs, row, blocker)))
        inserted = (
            enqueue.insert(db, [requests[i] for i in rest], reader, tx, encoded.take(rest))
            if rest
            else []
        )
    return _in_order(len(requests), counted, zip(rest, inserted, strict=True))


async def ainsert(
    db: Database, requests: Sequence[JobRequest], reader: JobReader, conn: Any
) -> list[Job]:
    """:func:`insert` on the caller's async connection."""
    limit = db.settings.max_payload_bytes
    limited, rest = _split(requests)
    counted = []
    encoded = NewJobs.of(requests)
    async with acaller_transaction(conn):
        await db.aexecute("concurrency_keys_prepare", keys_params(requests), conn)
        for index in limited:
            jobs = encoded.take([index])
            params = _enqueue_params(jobs, limit)
            row = (await db.aexecute("concurrency_enqueue", params, conn))[0]
            found = []
            if row["blocker"] is not None:
                found = await db.aexecute("job_get", {"id": row["blocker"]}, conn)
            counted.append((index, _handle(reader, jobs, row, found[0] if found else None)))
        inserted: Sequence[Job] = (
            await enqueue.ainsert(db, [requests[i] for i in rest], reader, conn, encoded.take(rest))
            if rest
            else []
        )
    return _in_order(len(requests), counted, zip(rest, inserted, strict=True))
