"""The measurements: enqueue, drain and latency, for goodjob and the baseline.

Each function runs on a fresh database (see :mod:`goodjob.bench.environment`; a history drain
round runs on the seeded one, see :mod:`goodjob.bench.history`) and returns a flat dict of
figures. Drain throughput comes from the database's own timestamps (first claim to last
completion), never from the client's clock; enqueue throughput is the client's time around its
calls; latency compares the client's commit time with the task's start time, both read from the
same host's wall clock. Exactly-once is checked by counting goodjob's execution rows (one per
claim) for the jobs of the drain.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from goodjob.bench import baseline, rounds
from goodjob.bench.environment import (
    BenchError,
    WorkerConfig,
    WorkerProcess,
    baseline_worker,
    goodjob_workers,
    migrated_app,
    running,
    scalar,
    sql,
    wait_for,
)
from goodjob.bench.workload import STAMP, register
from goodjob.options import JobRequest
from goodjob.records import enqueue as enqueue_records

WAIT_SLACK = 60.0  # seconds added to every drain's deadline
WARM_CHUNKS = 6  # untimed enqueue_all chunks per side before the enqueue blocks


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (``goodjob bench --jobs/--rounds/--quick`` change them)."""

    jobs: int = 20_000
    rounds: int = 5  # drains per side (median); enqueue blocks per side (summed)
    chunk: int = 1_000
    latency_jobs: int = 500
    latency_gap: float = 0.005  # seconds between two latency enqueues
    recovery_runs: int = 5
    recovery_job_seconds: float = 1.0
    history_finished: int = 1_000_000
    history_future: int = 100_000
    dashboard_rows: int = 10_000_000
    dashboard_requests: int = 25  # timed requests per page and format
    dashboard_warmup: int = 3  # untimed requests per page and format before them


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (milliseconds), interpolated between samples."""
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return {"p50_ms": only, "p95_ms": only, "p99_ms": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 3),
        "p95_ms": round(cuts[94], 3),
        "p99_ms": round(cuts[98], 3),
        "max_ms": round(max(values), 3),
    }


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid``, in MB (Linux /proc)."""
    total_kb = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return round(total_kb / 1024, 1)


def worker_connections(url: str) -> int:
    """Connections the goodjob workers hold on this scenario's database."""
    return int(
        scalar(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'goodjob:%%'",
        )
    )


def client(url: str) -> Any:
    app = migrated_app(url)
    app.database.application_name = "goodjob-bench-client"  # not counted as a worker's
    return app


def wait_registered(url: str, count: int, workers: list[WorkerProcess]) -> None:
    wait_for(
        lambda: scalar(url, "SELECT count(*) FROM goodjob_processes") >= count,
        timeout=30,
        what=f"{count} worker process(es) to register",
        workers=workers,
    )


# -- enqueue ----------------------------------------------------------------------------------


def enqueue(baseline_url: str, goodjob_url: str, sizes: Sizes) -> tuple[dict[str, Any], ...]:
    """Jobs/s of the baseline and of goodjob, enqueueing one per transaction and then in chunks.

    Each side's ``sizes.jobs`` enqueues are split into ``sizes.rounds`` blocks and the sides take
    turns, block by block (baseline, goodjob, baseline, ...), each on its own database of the
    same server: a change in the machine's load while this runs hits both alike. A side's
    figure is its jobs over the sum of its blocks' times.
    """
    baseline.create_schema(baseline_url)
    app = client(goodjob_url)
    tasks = register(app)
    chunks = [min(sizes.chunk, sizes.jobs - o) for o in range(0, sizes.jobs, sizes.chunk)]
    try:
        with psycopg.connect(baseline_url, autocommit=True) as conn:

            def baseline_single(count: int) -> None:
                for _ in range(count):
                    baseline.enqueue(conn, "noop")

            def goodjob_single(count: int) -> None:
                for _ in range(count):
                    tasks.noop.enqueue()

            def baseline_bulk(block: list[int]) -> None:
                for count in block:
                    baseline.enqueue_many(conn, "noop", ["{}"] * count)

            def goodjob_bulk(block: list[int]) -> None:
                for count in block:
                    app.enqueue_all([tasks.noop.prepare() for _ in range(count)])

            # Opens goodjob's pool, checks its schema and warms both sides untimed: the first
            # executions of a statement are planned afresh (psycopg prepares it from the sixth)
            # and the first batches grow the client's heap, which a running app has done long
            # before (the first timed block measured 30% slower than the next).
            baseline_single(1)
            goodjob_single(1)
            warm = [min(sizes.chunk, sizes.jobs)] * WARM_CHUNKS
            baseline_bulk(warm)
            goodjob_bulk(warm)
            singles = rounds.split_count(sizes.jobs, sizes.rounds)
            single = rounds.alternate(baseline_single, goodjob_single, singles)
            bulks = rounds.split(chunks, sizes.rounds)
            bulk = rounds.alternate(baseline_bulk, goodjob_bulk, bulks)
            statement = _statement_only(app, tasks, chunks)
    finally:
        app.close()
    warmed = 1 + WARM_CHUNKS * min(sizes.chunk, sizes.jobs)
    for url, table, expected in (
        (baseline_url, "baseline_jobs", 2 * sizes.jobs + warmed),
        (goodjob_url, "goodjob_jobs", 3 * sizes.jobs + warmed),
    ):
        stored = scalar(url, f"SELECT count(*) FROM {table}")
        if stored != expected:
            raise BenchError(f"enqueue stored {stored} rows in {table}, expected {expected}")
    bulk_sizes = [sum(block) for block in bulks]
    base, mine = (
        {
            "single_jobs_per_s": _rate(sizes.jobs, sum(single[side])),
            "single_rounds_jobs_per_s": _rates(singles, single[side]),
            "bulk_jobs_per_s": _rate(sizes.jobs, sum(bulk[side])),
            "bulk_rounds_jobs_per_s": _rates(bulk_sizes, bulk[side]),
        }
        for side in (0, 1)
    )
    mine["bulk_statement_jobs_per_s"] = _rate(sizes.jobs, statement)
    return base, mine


def _statement_only(app: Any, tasks: Any, chunks: list[int]) -> float:
    """Seconds to run enqueue_all's insert statements alone, their parameters built beforehand:
    the share of the server and the driver in an ``enqueue_all``, without goodjob's Python."""
    batches = [
        enqueue_records.insert_params(
            enqueue_records.NewJobs.of([tasks.noop.prepare() for _ in range(count)]),
            app.settings.max_payload_bytes,
        )
        for count in chunks
    ]
    started = time.perf_counter()
    for params in batches:
        app.database.run("jobs_insert", params)
    return time.perf_counter() - started


def _rates(counts: list[int], seconds: list[float]) -> list[float]:
    """Jobs/s of each block that had jobs."""
    return [
        rounds.whole(_rate(count, time))
        for count, time in zip(counts, seconds, strict=True)
        if count
    ]


# -- drain ------------------------------------------------------------------------------------


def goodjob_drain(
    url: str, sizes: Sizes, config: WorkerConfig, label: str, keys: int = 0, batches: int = 0
) -> dict[str, Any]:
    """Jobs/s of workers draining ``sizes.jobs`` queued no-op jobs, and the exactly-once count.

    With ``keys``, the jobs are the keyed no-op's, under a concurrency limit, their keys taken
    in turn from ``keys`` of them: the workers claim them in the gated form. With ``batches``,
    the jobs are split evenly among that many batches (each with an ``on_finish`` callback, a
    no-op job that is not counted): each completion then settles its batch.
    Only the jobs enqueued here are counted, by id: the history rounds run one after another on
    the same database, each on top of the previous rounds' finished jobs.
    """
    app = client(url)
    tasks = register(app)

    def request(i: int) -> JobRequest:
        return tasks.noop_keyed.prepare(f"key-{i % keys}") if keys else tasks.noop.prepare()

    ids: list[uuid.UUID] = []
    try:
        if batches:
            per_batch = -(-sizes.jobs // batches)
            for offset in range(0, sizes.jobs, per_batch):
                chunk = range(offset, min(offset + per_batch, sizes.jobs))
                with app.batch(on_finish=tasks.noop) as batch:
                    app.enqueue_all([request(i) for i in chunk])
                ids += [job.id for job in batch.jobs]
        else:
            for offset in range(0, sizes.jobs, sizes.chunk):
                chunk = range(offset, min(offset + sizes.chunk, sizes.jobs))
                ids += [job.id for job in app.enqueue_all([request(i) for i in chunk])]
    finally:
        app.close()
    sql(url, "ANALYZE goodjob_jobs")
    connections = 0
    with running(goodjob_workers(url, config, label)) as workers:

        def drained() -> bool:
            nonlocal connections
            connections = max(connections, worker_connections(url))
            # The probes read only small partial indexes (claimed rows; due rows, and the only
            # due rows here are this round's), so polling costs the same with a million
            # finished or future rows in the table: a probe that reads the history would slow
            # the very drain it measures. The due-row probes are ordered like a claim, so they
            # are planned like one, through the dequeue index (jobs without a key) and the
            # keyed one, each probe naming its index's conditions: as an EXISTS the planner
            # costed the 100,000 future rows as due and read the whole table (25,000 buffers,
            # 100 ms a probe); filtering by task walked the per-task index through the
            # history; without `concurrency_key IS NULL`, once keyed jobs left the dequeue
            # indexes, it read 12,000 blocks from disk a probe (127 ms; the history drain ran
            # at 0.25-0.9x of the empty one, erratically).
            return not scalar(
                url,
                "SELECT EXISTS (SELECT 1 FROM goodjob_jobs WHERE locked_by_id IS NOT NULL)"
                " OR (SELECT 1 FROM goodjob_jobs WHERE finished_at IS NULL"
                " AND locked_by_id IS NULL AND concurrency_key IS NULL AND scheduled_at <= now()"
                " ORDER BY priority, scheduled_at, id LIMIT 1) IS NOT NULL"
                " OR (SELECT 1 FROM goodjob_jobs WHERE concurrency_key IS NOT NULL"
                " AND finished_at IS NULL AND locked_at IS NULL AND scheduled_at <= now()"
                " ORDER BY priority, scheduled_at, id LIMIT 1) IS NOT NULL",
            )

        wait_for(
            drained,
            timeout=WAIT_SLACK + sizes.jobs / 50,
            what=f"{sizes.jobs} jobs to drain",
            interval=0.25,
            workers=list(workers),
        )
    row = sql(
        url,
        """
        SELECT count(*), count(DISTINCT e.job_id), count(*) FILTER (WHERE e.finished_at IS NULL),
               count(*) FILTER (WHERE e.error IS NOT NULL), count(DISTINCT e.process_id),
               extract(epoch FROM max(e.finished_at) - min(e.performed_at))::float8
        FROM goodjob_executions e WHERE e.job_id = ANY(%s)
        """,
        (ids,),
    )[0]
    executions, jobs, still_open, errors, processes, seconds = row
    succeeded = scalar(
        url,
        "SELECT count(*) FROM goodjob_jobs WHERE id = ANY(%s) AND finished_at IS NOT NULL"
        " AND error IS NULL AND executions_count = 1",
        (ids,),
    )
    exactly_once = executions == jobs == succeeded == sizes.jobs and still_open == 0 and errors == 0
    return {
        "jobs": sizes.jobs,
        "jobs_per_s": _rate(sizes.jobs, seconds),
        "seconds": round(seconds, 3),
        "executions": executions,
        "exactly_once": exactly_once,
        "worker_processes": processes,
        "worker_connections": connections,
        "config": config.describe(),
    }


def baseline_drain(url: str, sizes: Sizes, pooler_url: str | None = None) -> dict[str, Any]:
    baseline.create_schema(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for offset in range(0, sizes.jobs, sizes.chunk):
            count = min(sizes.chunk, sizes.jobs - offset)
            baseline.enqueue_many(conn, "noop", ["{}"] * count)
    sql(url, "ANALYZE baseline_jobs")
    with running([baseline_worker(url, "baseline-drain", pooler_url)]) as workers:
        wait_for(
            lambda: (
                not scalar(
                    url, "SELECT EXISTS (SELECT 1 FROM baseline_jobs WHERE status <> 'done')"
                )
            ),
            timeout=WAIT_SLACK + sizes.jobs / 50,
            what=f"{sizes.jobs} baseline jobs to drain",
            interval=0.25,
            workers=list(workers),
        )
    done, seconds = sql(
        url,
        "SELECT count(*), extract(epoch FROM max(done_at) - min(started_at))::float8"
        " FROM baseline_jobs WHERE status = 'done'",
    )[0]
    return {
        "jobs": sizes.jobs,
        "jobs_per_s": _rate(sizes.jobs, seconds),
        "seconds": round(seconds, 3),
        "exactly_once": done == sizes.jobs,
        "config": f"1x{baseline.THREADS} threads",
    }


# -- latency ----------------------------------------------------------------------------------


def _paced(count: int, gap: float) -> Any:
    """Yields ``count`` times, ``gap`` seconds apart on a fixed schedule."""
    next_at = time.perf_counter()
    for i in range(count):
        yield i
        next_at += gap
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def goodjob_latency(url: str, sizes: Sizes) -> dict[str, Any]:
    """Enqueue-commit to task-start, idle worker with 10 threads, polling every 30 s."""
    app = client(url)
    tasks = register(app)
    config = WorkerConfig(threads=baseline.THREADS, poll_interval=30.0)
    try:
        with running(goodjob_workers(url, config, "latency")) as workers:
            wait_registered(url, 1, list(workers))
            warm = [tasks.stamp.enqueue().id for _ in range(3)]  # proves NOTIFY wakes it
            wait_for(
                lambda: (
                    scalar(
                        url,
                        "SELECT count(*) FROM goodjob_jobs WHERE id = ANY(%s)"
                        " AND finished_at IS NOT NULL",
                        (warm,),
                    )
                    == len(warm)
                ),
                timeout=40,
                what="the warm-up jobs",
                workers=list(workers),
            )
            time.sleep(0.5)  # idle again
            rss = sum(group_rss_mb(w.pid) for w in workers)
            connections = worker_connections(url)
            committed: dict[uuid.UUID, float] = {}
            for _ in _paced(sizes.latency_jobs, sizes.latency_gap):
                job = tasks.stamp.enqueue()
                committed[job.id] = time.time()
            wait_for(
                lambda: (
                    scalar(
                        url,
                        "SELECT count(*) FROM goodjob_jobs WHERE task_name = %s"
                        " AND finished_at IS NOT NULL",
                        (STAMP,),
                    )
                    >= len(committed) + len(warm)
                ),
                timeout=60,
                what="the latency jobs",
                workers=list(workers),
            )
    finally:
        app.close()
    rows = sql(url, "SELECT id, result FROM goodjob_jobs WHERE id = ANY(%s)", (list(committed),))
    latencies = [(float(result) - committed[job_id]) * 1000 for job_id, result in rows]
    return {
        "jobs": len(latencies),
        **percentiles(latencies),
        "idle_rss_mb": rss,
        "worker_connections": connections,
        "config": config.describe(),
    }


def baseline_latency(url: str, sizes: Sizes) -> dict[str, Any]:
    baseline.create_schema(url)
    with (
        running([baseline_worker(url, "baseline-latency")]) as workers,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        for _ in range(3):
            baseline.enqueue(conn, "stamp")
        wait_for(
            lambda: scalar(url, "SELECT count(*) FROM baseline_jobs WHERE status = 'done'") == 3,
            timeout=40,
            what="the baseline warm-up jobs",
            workers=list(workers),
        )
        time.sleep(0.5)
        rss = sum(group_rss_mb(w.pid) for w in workers)
        committed: dict[int, float] = {}
        for _ in _paced(sizes.latency_jobs, sizes.latency_gap):
            row = conn.execute(baseline.ENQUEUE_RETURNING, ("stamp", "{}")).fetchone()
            assert row is not None
            committed[row[0]] = time.time()
        wait_for(
            lambda: (
                scalar(url, "SELECT count(*) FROM baseline_jobs WHERE status = 'done'")
                >= len(committed) + 3
            ),
            timeout=60,
            what="the baseline latency jobs",
            workers=list(workers),
        )
    rows = sql(url, "SELECT id, result FROM baseline_jobs WHERE id = ANY(%s)", (list(committed),))
    latencies = [(result - committed[job_id]) * 1000 for job_id, result in rows]
    return {"jobs": len(latencies), **percentiles(latencies), "idle_rss_mb": rss}
