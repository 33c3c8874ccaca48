"""Batches: groups of jobs whose callbacks run when they finish (``gj.batch``), as
``goodjob_batches`` rows and :class:`Batch` handles.

A batch's jobs go in with its row, in one transaction. Every later change to its jobs (a
completion, a retry, a discard, jobs added) locks its row first and settles it last, in the same
transaction (records/settling.py): that is what runs each callback exactly once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from goodjob.db import CHANNEL, Database
from goodjob.errors import BatchNotFound, ConfigurationError
from goodjob.options import JobRequest, TaskOptions
from goodjob.records import concurrency, enqueue
from goodjob.records.jobs import Job, JobReader
from goodjob.records.settling import settle, settling
from goodjob.serialization import decode, encode, too_large

LIST_LIMIT = 100  # batches listed when no limit is given
JOBS_LIMIT = 1_000  # jobs of a batch listed when no limit is given


class BatchOwner(Protocol):
    """What a :class:`Batch` handle acts through: the app."""

    reader: JobReader

    def create_batch(
        self,
        spec: BatchSpec,
        jobs: enqueue.NewJobs,
        *,
        connection: Any = None,
    ) -> Sequence[Job]: ...

    def batch_by_id(self, batch_id: uuid.UUID | str) -> Batch: ...

    def add_to_batch(
        self, batch_id: uuid.UUID, requests: Sequence[JobRequest], *, connection: Any = None
    ) -> Sequence[Job]: ...

    def retry_batch(self, batch_id: uuid.UUID) -> int: ...

    def batch_jobs(self, batch_id: uuid.UUID, *, limit: int = JOBS_LIMIT) -> list[Job]: ...


@dataclass(frozen=True)
class Batch:
    """A batch as the database last said it was. Fresh: ``gj.batch_by_id(id)``."""

    id: uuid.UUID
    description: str | None
    properties: dict[str, Any]
    on_finish: str | None  # the callbacks' task names
    on_success: str | None
    on_discard: str | None
    callback_queue_name: str | None
    callback_priority: int | None
    enqueued_at: dt.datetime | None
    discarded_at: dt.datetime | None  # its first discarded job (on_discard ran)
    jobs_finished_at: dt.datetime | None  # all its jobs finished (on_finish, on_success ran)
    finished_at: dt.datetime | None  # and the callbacks that started have finished too
    created_at: dt.datetime
    updated_at: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)  # its jobs by status
    owner: BatchOwner | None = field(default=None, compare=False, repr=False)

    @property
    def status(self) -> str:
        """``running`` (jobs to finish), ``finishing`` (callbacks running) or ``finished``."""
        if self.finished_at is not None:
            return "finished"
        return "running" if self.jobs_finished_at is None else "finishing"

    @property
    def succeeded(self) -> bool:
        """Whether all its jobs finished and none was discarded."""
        return self.jobs_finished_at is not None and self.discarded_at is None

    @property
    def total(self) -> int:
        """How many jobs it has."""
        return sum(self.counts.values())

    def add(self, requests: Sequence[JobRequest], *, connection: Any = None) -> Sequence[Job]:
        """Insert more jobs (``task.prepare(...)``) into this batch, from anywhere; a finished
        batch reopens, and its callbacks run again when the new jobs finish."""
        return self._owner().add_to_batch(self.id, requests, connection=connection)

    def retry(self) -> int:
        """Retry its discarded jobs now; the batch reopens (``on_discard`` can run again).
        Returns how many jobs were retried."""
        return self._owner().retry_batch(self.id)

    def refresh(self) -> Batch:
        """This batch as the database says it is now."""
        return self._owner().batch_by_id(self.id)

    def jobs(self, *, limit: int = JOBS_LIMIT) -> list[Job]:
        """Its jobs, oldest first (without their executions)."""
        return self._owner().batch_jobs(self.id, limit=limit)

    def _owner(self) -> BatchOwner:
        if self.owner is None:
            raise BatchNotFound(f"batch {self.id}: this handle has no app; use gj.batch_by_id()")
        return self.owner

    @classmethod
    def from_row(cls, row: dict[str, Any], owner: BatchOwner | None = None) -> Batch:
        return cls(
            id=row["id"],
            description=row["description"],
            properties=decode(row["properties"]) or {},
            on_finish=row["on_finish"],
            on_success=row["on_success"],
            on_discard=row["on_discard"],
            callback_queue_name=row["callback_queue_name"],
            callback_priority=row["callback_priority"],
            enqueued_at=row["enqueued_at"],
            discarded_at=row["discarded_at"],
            jobs_finished_at=row["jobs_finished_at"],
            finished_at=row["finished_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            counts=dict(row["counts"] or {}),
            owner=owner,
        )


@dataclass(frozen=True)
class BatchSpec:
    """What a new batch is created with, checked (see ``GoodJob.batch``)."""

    id: uuid.UUID
    description: str | None
    properties: str  # JSON text
    on_finish: str | None
    on_success: str | None
    on_discard: str | None
    callback_queue: str | None
    callback_priority: int | None

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "properties": self.properties,
            "on_finish": self.on_finish,
            "on_success": self.on_success,
            "on_discard": self.on_discard,
            "callback_queue_name": self.callback_queue,
            "callback_priority": self.callback_priority,
        }


def dump_properties(properties: Mapping[str, Any] | None, limit: int) -> str:
    """A batch's properties as stored: JSON, with the rules (and errors) of job arguments."""
    if properties is None:
        return "{}"
    if not isinstance(properties, Mapping):
        raise ConfigurationError(f"properties={properties!r}: pass a dict")
    text = json.dumps(encode(dict(properties), "properties"))
    if len(text) > limit:
        raise too_large("the batch's properties", len(text), limit)
    return text


def joined(requests: Sequence[JobRequest], batch_id: uuid.UUID) -> list[JobRequest]:
    """``requests`` as jobs of the batch. Requests that shared their options still share them
    (the insert sends a column all its rows share as one value)."""
    options: dict[int, TaskOptions] = {}
    out = []
    for r in requests:
        tagged = options.get(id(r.options))
        if tagged is None:
            tagged = options[id(r.options)] = dataclasses.replace(r.options, batch_id=batch_id)
        out.append(r._replace(options=tagged))
    return out


class NewBatch:
    """A batch being made: ``with gj.batch(...) as batch:``. The jobs enqueued inside the block
    (on this thread or task) are collected, and inserted with the batch row in one transaction
    when the block exits; an exception in the block inserts nothing. The handles ``enqueue``
    returns inside the block carry the ids the jobs will have (``batch.jobs`` has them all once
    inserted). After the block, :meth:`add` inserts more jobs at once."""

    def __init__(self, owner: BatchOwner, spec: BatchSpec, connection: Any = None) -> None:
        self.id = spec.id
        self.spec = spec
        self._owner = owner
        self._connection = connection
        self._collected: list[enqueue.NewJobs] = []  # encoded as they were enqueued
        self._token: contextvars.Token[NewBatch | None] | None = None
        self._inserted = False
        self.jobs: Sequence[Job] = ()  # the handles of its jobs, once inserted

    def __repr__(self) -> str:
        state = "inserted" if self._inserted else f"{sum(map(len, self._collected))} jobs collected"
        return f"<NewBatch {self.id} {state}>"

    def __enter__(self) -> NewBatch:
        if self._token is not None or self._inserted:
            raise ConfigurationError(f"batch {self.id}: its block can be entered once")
        self._token = collecting.set(self)
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        assert self._token is not None
        collecting.reset(self._token)
        self._token = None
        if error is None:
            self._insert()

    async def __aenter__(self) -> NewBatch:
        return self.__enter__()

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        assert self._token is not None
        collecting.reset(self._token)
        self._token = None
        if error is None:
            await asyncio.to_thread(self._insert)

    def _insert(self) -> None:
        self.jobs = self._owner.create_batch(
            self.spec, enqueue.NewJobs.joined(self._collected), connection=self._connection
        )
        self._inserted = True

    def collect(self, requests: Sequence[JobRequest]) -> Sequence[Job]:
        """Keep ``requests`` for the insert at the block's exit; their handles. The arguments
        are checked now, so a bad one fails where it was enqueued."""
        tagged = joined(requests, self.id)
        jobs = enqueue.NewJobs.of(tagged)
        self._collected.append(jobs)
        return enqueue.EnqueuedJobs(self._owner.reader, [jobs])

    def add(self, requests: Sequence[JobRequest], *, connection: Any = None) -> Sequence[Job]:
        """Jobs into this batch: collected inside its block, inserted at once after it."""
        if not self._inserted:
            if self._token is None:
                raise ConfigurationError(
                    f"batch {self.id} is not in the database: add jobs inside its block"
                )
            return self.collect(list(requests))
        return self._owner.add_to_batch(self.id, requests, connection=connection)

    def refresh(self) -> Batch:
        """The batch as the database says it is now."""
        return self._owner.batch_by_id(self.id)


# The batch whose block (``with gj.batch(...)``) the code runs in: its enqueues are collected.
collecting: contextvars.ContextVar[NewBatch | None] = contextvars.ContextVar(
    "goodjob_batch_collecting", default=None
)


def _insert_jobs(db: Database, jobs: enqueue.NewJobs, reader: JobReader, tx: Any) -> Sequence[Job]:
    requests = jobs.requests
    if not requests:
        return []
    if concurrency.keyed(requests):
        return concurrency.insert(db, requests, reader, tx, jobs)
    return enqueue.insert(db, requests, reader, tx, jobs)


def create(
    db: Database,
    spec: BatchSpec,
    jobs: enqueue.NewJobs,
    reader: JobReader,
    conn: Any = None,
) -> Sequence[Job]:
    """Insert a batch and its ``jobs`` (encoded as its block collected them) in one transaction
    (the caller's, on ``conn``); a batch without jobs finishes at once."""
    with settling(db, (), conn) as tx:
        db.run("batch_insert", spec.params(), conn=tx)
        handles = _insert_jobs(db, jobs, reader, tx)
        settle(db, [spec.id], tx)  # a new row: nobody else can see it, so no lock is needed
    return handles


def add(
    db: Database,
    batch_id: uuid.UUID,
    requests: Sequence[JobRequest],
    reader: JobReader,
    conn: Any = None,
) -> Sequence[Job]:
    """Insert jobs into an existing batch, reopening it if it had finished."""
    jobs = enqueue.NewJobs.of(requests)  # a bad argument fails before the batch is locked
    with settling(db, [batch_id], conn, must_exist=True) as tx:
        return _insert_jobs(db, jobs, reader, tx)


def retry(db: Database, batch_id: uuid.UUID) -> int:
    """Retry the discarded jobs of a batch; how many."""
    with settling(db, [batch_id], must_exist=True) as tx:
        row = db.execute("batch_retry", {"id": batch_id, "channel": CHANNEL}, conn=tx)[0]
    return int(row["retried"])


def get(db: Database, batch_id: uuid.UUID, owner: BatchOwner | None = None) -> Batch:
    """The batch with this id; BatchNotFound when there is none."""
    row = db.fetchone("batch_get", {"id": batch_id})
    if row is None:
        raise BatchNotFound(f"no batch has id {batch_id}")
    return Batch.from_row(row, owner)


def find(db: Database, *, limit: int = LIST_LIMIT, owner: BatchOwner | None = None) -> list[Batch]:
    """Batches, newest first."""
    return [Batch.from_row(row, owner) for row in db.execute("batches_list", {"limit": limit})]


def jobs(db: Database, batch_id: uuid.UUID, reader: JobReader, limit: int) -> list[Job]:
    """The jobs of a batch, oldest first."""
    rows = db.execute("batch_jobs", {"id": batch_id, "limit": limit})
    return [Job.from_row(row, (), reader) for row in rows]
