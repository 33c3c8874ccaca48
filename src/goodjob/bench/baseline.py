"""The baseline: the simplest correct plain-psycopg queue, the yardstick of ``goodjob bench``.

One table. A job is claimed by ``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING`` in its own transaction and marked done in another; 10 threads, each on its own
connection, and one listening connection that wakes them on ``NOTIFY``. No execution history,
no process registry, no fencing: everything goodjob does on top of this is what the ratios in the
benchmark's table pay for.

It runs as a separate process (``python -m goodjob.bench.baseline URL``), as ``goodjob start``
does, so the benchmark client never shares a GIL with the worker it measures.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

THREADS = 10
CHANNEL = "baseline"
POLL_INTERVAL = 30.0  # seconds; LISTEN/NOTIFY does the waking

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_jobs (
    id bigserial PRIMARY KEY,
    task text NOT NULL,
    args jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued',
    result double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    done_at timestamptz
);
CREATE INDEX IF NOT EXISTS baseline_jobs_queued ON baseline_jobs (id) WHERE status = 'queued';
"""

ENQUEUE = (
    "WITH j AS (INSERT INTO baseline_jobs (task, args) VALUES (%s, %s) RETURNING 1) "
    "SELECT pg_notify('baseline', '') FROM j"
)
ENQUEUE_RETURNING = (
    "WITH j AS (INSERT INTO baseline_jobs (task, args) VALUES (%s, %s) RETURNING id) "
    "SELECT j.id, pg_notify('baseline', '') FROM j"
)
ENQUEUE_MANY = (
    "WITH j AS (INSERT INTO baseline_jobs (task, args) "
    "SELECT %s, a FROM unnest(%s::jsonb[]) a RETURNING 1) "
    "SELECT pg_notify('baseline', '') WHERE EXISTS (SELECT 1 FROM j)"
)
CLAIM = """
UPDATE baseline_jobs SET status = 'running', started_at = now()
WHERE id = (
    SELECT id FROM baseline_jobs WHERE status = 'queued' ORDER BY id
    FOR UPDATE SKIP LOCKED LIMIT 1
)
RETURNING id, task, args
"""
DONE = "UPDATE baseline_jobs SET status = 'done', done_at = now(), result = %s WHERE id = %s"


def create_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)


def enqueue(conn: psycopg.Connection[Any], task: str, args: str = "{}") -> None:
    """One job in one transaction (``conn`` is in autocommit mode)."""
    conn.execute(ENQUEUE, (task, args))


def enqueue_many(conn: psycopg.Connection[Any], task: str, args: Sequence[str]) -> None:
    """Many jobs in one statement and one NOTIFY."""
    conn.execute(ENQUEUE_MANY, (task, list(args)))


def perform(task: str, args: dict[str, Any]) -> float | None:
    """The baseline's tasks: ``noop`` does nothing, ``stamp`` records when it started."""
    started = time.time()
    if task == "stamp":
        return started
    return None


class Worker:
    """``threads`` claim-run-done loops and one listener that wakes them."""

    def __init__(
        self,
        url: str,
        threads: int = THREADS,
        poll_interval: float = POLL_INTERVAL,
        pooler_url: str | None = None,
    ):
        self.url = url  # the listener's, and the loops' unless there is a pooler
        self.pooler_url = pooler_url
        self.threads = threads
        self.poll_interval = poll_interval
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.generation = 0

    def _notify_all(self) -> None:
        with self.wake:
            self.generation += 1
            self.wake.notify_all()

    def listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            while not self.stop.is_set():
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    self._notify_all()

    def loop(self) -> None:
        if self.pooler_url is None:
            connecting = psycopg.connect(self.url, autocommit=True)
        else:  # nothing prepared: the next transaction may land on another server connection
            connecting = psycopg.connect(self.pooler_url, autocommit=True, prepare_threshold=None)
        with connecting as conn:
            while not self.stop.is_set():
                with self.wake:
                    seen = self.generation
                row = conn.execute(CLAIM).fetchone()
                if row is None:
                    with self.wake:
                        if self.generation == seen:
                            self.wake.wait(self.poll_interval)
                    continue
                job_id, task, args = row
                result = perform(task, args)
                conn.execute(DONE, (result, job_id))

    def run(self) -> None:
        workers = [threading.Thread(target=self.loop, daemon=True) for _ in range(self.threads)]
        listener = threading.Thread(target=self.listen, daemon=True)
        listener.start()
        for thread in workers:
            thread.start()
        self.stop.wait()
        self._notify_all()
        for thread in [*workers, listener]:
            thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="goodjob bench: the plain SKIP LOCKED worker")
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    parser.add_argument("--pooler-url", help="claim and complete through this pooler")
    options = parser.parse_args(argv)
    worker = Worker(options.url, options.threads, options.poll_interval, options.pooler_url)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    print(f"baseline worker {os.getpid()} ready", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
