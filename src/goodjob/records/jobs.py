"""The job record: ``goodjob_jobs`` rows as :class:`Job`, attempts as :class:`Execution`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from goodjob.db import CHANNEL, Database, json
from goodjob.serialization import decode, decode_arguments

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

    @classmethod
    def from_row(cls, row: dict[str, Any], executions: Sequence[dict[str, Any]] = ()) -> Job:
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
        )


@dataclass(frozen=True)
class NewJob:
    """A job about to be inserted."""

    id: uuid.UUID
    task_name: str
    queue_name: str
    priority: int
    arguments: dict[str, Any]
    run_at: dt.datetime | None
    wait: float
    labels: tuple[str, ...]
    concurrency_key: str | None = None
    batch_id: uuid.UUID | None = None


def insert_params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    """Parameters of ``jobs_insert`` for a batch of new jobs."""
    return {
        "ids": [j.id for j in jobs],
        "queue_names": [j.queue_name for j in jobs],
        "priorities": [j.priority for j in jobs],
        "task_names": [j.task_name for j in jobs],
        "arguments": [json(j.arguments) for j in jobs],
        "run_ats": [j.run_at for j in jobs],
        "waits": [j.wait for j in jobs],
        "labels": [json(list(j.labels)) for j in jobs],
        "concurrency_keys": [j.concurrency_key for j in jobs],
        "batch_ids": [j.batch_id for j in jobs],
        "channel": CHANNEL,
    }


def get(db: Database, job_id: uuid.UUID, *, with_executions: bool = True) -> Job | None:
    row = db.fetchone("job_get", {"id": job_id})
    if row is None:
        return None
    executions = db.execute("job_executions", {"id": job_id}) if with_executions else []
    return Job.from_row(row, executions)
