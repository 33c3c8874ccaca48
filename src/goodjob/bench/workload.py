"""The benchmark's tasks, and the app its worker processes load.

``goodjob start --app goodjob.bench.workload:gj`` runs them; the app reads its database from
``GOODJOB_DATABASE_URL``, which the benchmark sets for each scenario's own database. The client
registers the same tasks on its own app with :func:`register`, so both sides agree on the names.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from goodjob.app import GoodJob
from goodjob.context import current_job
from goodjob.options import Concurrency
from goodjob.task import Task

NOOP = "bench.noop"
NOOP_KEYED = "bench.noop_keyed"
STAMP = "bench.stamp"
LONG = "bench.long"
KEYS = 100  # the keyed drain's concurrency keys, taken by its jobs in turn
PERFORM_LIMIT = 2  # running jobs per key: 200 slots for 5 threads, so the limits rarely bind
BATCHES = 200  # the batched drain's batches, its jobs split evenly among them

RECOVERY_TABLE = """
CREATE TABLE IF NOT EXISTS bench_recovery (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    event text NOT NULL,
    at double precision NOT NULL
)
"""


def noop() -> None:
    """Does nothing: the drain scenarios measure the queue, not the task."""


def noop_keyed(key: str) -> None:
    """Does nothing, under a concurrency limit on ``key``: its drain measures the gated claim."""


def stamp() -> float:
    """Returns the wall-clock time it started (same host as the client that enqueued it)."""
    return time.time()


def long(seconds: float) -> None:
    """Records its start, sleeps, records its finish (the recovery scenario kills it between)."""
    ctx = current_job()
    assert ctx is not None
    _record(ctx.id, ctx.attempt, "start")
    time.sleep(seconds)
    _record(ctx.id, ctx.attempt, "finish")


def _record(job_id: Any, attempt: int, event: str) -> None:
    # A side table written on its own connection and committed at once: the client sees the
    # start of an attempt that is killed before goodjob records anything about it.
    at = time.time()
    with psycopg.connect(os.environ["GOODJOB_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bench_recovery (job_id, attempt, pid, event, at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (job_id, attempt, os.getpid(), event, at),
        )


@dataclass(frozen=True)
class Tasks:
    noop: Task[[], None]
    noop_keyed: Task[[str], None]
    stamp: Task[[], float]
    long: Task[[float], None]


def register(app: GoodJob) -> Tasks:
    """Register the benchmark's tasks on ``app``."""
    return Tasks(
        noop=app.task(name=NOOP)(noop),
        noop_keyed=app.task(
            name=NOOP_KEYED,
            concurrency=Concurrency(key=lambda key: key, perform_limit=PERFORM_LIMIT),
        )(noop_keyed),
        stamp=app.task(name=STAMP)(stamp),
        long=app.task(name=LONG)(long),
    )


gj = GoodJob()
tasks = register(gj)
