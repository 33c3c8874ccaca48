"""Cron runs in the database: each run enqueued once, entries enabled or disabled for all.

An entry's row in ``goodjob_settings`` (``cron:<key>``) holds whether an operator enabled or
disabled it and the time of its last scheduled run; ``cron_enqueue`` moves that forward and
inserts the run's job in one statement, so a run exists once however many processes enqueue it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from goodjob.db import CHANNEL, Database
from goodjob.ids import new_ids
from goodjob.options import JobRequest
from goodjob.records import concurrency
from goodjob.serialization import encode_arguments


@dataclass(frozen=True)
class CronState:
    """What the database says of one entry: enabled (None: its default) and its last run."""

    enabled: bool | None
    last_at: dt.datetime | None


def _job_params(request: JobRequest, key: str) -> dict[str, object]:
    options = request.options
    return {
        "id": new_ids(1)[0],
        "queue_name": options.queue,
        "priority": options.priority,
        "task_name": request.task_name,
        "arguments": json.dumps(encode_arguments(request.args, request.kwargs)),
        "labels": list(options.labels) or None,
        "concurrency_key": options.concurrency_key,
        "cron_key": key,
        "channel": CHANNEL,
    }


def enqueue_run(
    db: Database, key: str, at: dt.datetime, request: JobRequest, *, enabled_by_default: bool
) -> uuid.UUID | None:
    """Enqueue the run of entry ``key`` at ``at``; its job's id, or None when it exists already
    (another process enqueued it) or the entry is disabled."""
    params = {
        **_job_params(request, key),
        "cron_at": at,
        "enabled_by_default": enabled_by_default,
    }
    rows = _enqueue(db, "cron_enqueue", params, request)
    if not rows:
        return None
    job_id: uuid.UUID = rows[0]["id"]
    return job_id


def enqueue_now(db: Database, key: str, request: JobRequest) -> uuid.UUID:
    """Enqueue a run of entry ``key`` by hand, due now; its job's id."""
    rows = _enqueue(db, "cron_enqueue_now", _job_params(request, key), request)
    job_id: uuid.UUID = rows[0]["id"]
    return job_id


def _enqueue(db: Database, statement: str, params: dict[str, Any], request: JobRequest) -> Any:
    """Run a cron enqueue; for a task with a concurrency key, after writing the key's row (a
    run counts against perform limits and throttles; enqueue limits do not refuse it: a
    schedule's run is enqueued once, by design)."""
    if request.options.concurrency_key is None:
        return db.execute(statement, params)
    with db.transaction() as tx:
        db.run("concurrency_keys_prepare", concurrency.keys_params([request]), conn=tx)
        return db.execute(statement, params, conn=tx)


def states(db: Database) -> dict[str, CronState]:
    """Every entry's state, by key (entries never run nor toggled have none)."""
    return {
        row["cron_key"]: CronState(row["enabled"], row["last_at"])
        for row in db.execute("cron_states")
    }


def set_enabled(db: Database, key: str, enabled: bool) -> None:
    """Enable or disable entry ``key`` for every process."""
    db.execute("cron_set_enabled", {"cron_key": key, "enabled": enabled})
