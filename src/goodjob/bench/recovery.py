"""The recovery scenario: SIGKILL the worker running a long job and time the re-run.

Two default ``goodjob start`` workers; the task records each attempt's start and finish in a side
table on its own connection, so the client sees the start of an attempt that is killed before
goodjob records anything about it. Recovery time is the kill (client clock) to the next
attempt's start (the task's clock, same host); exactly once is one recorded finish, two execution
rows (one closed as interrupted) and a succeeded job.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import time
import uuid
from typing import Any

from goodjob.bench.environment import (
    WorkerConfig,
    WorkerProcess,
    goodjob_workers,
    scalar,
    sql,
    wait_for,
)
from goodjob.bench.scenarios import Sizes, client, wait_registered
from goodjob.bench.workload import RECOVERY_TABLE, register
from goodjob.records import processes


def goodjob_recovery(url: str, sizes: Sizes) -> dict[str, Any]:
    """SIGKILL the worker running a long job; seconds until another worker starts it again."""
    app = client(url)
    tasks = register(app)
    sql(url, RECOVERY_TABLE)
    # For RESTART_GRACE_SECONDS after a server start every advisory-locked process counts as
    # alive (they may be reconnecting), so a kill right after `goodjob bench` started the
    # embedded server would measure the grace period, not recovery.
    grace = processes.RESTART_GRACE_SECONDS + 1
    wait_for(
        lambda: scalar(
            url, "SELECT now() - pg_postmaster_start_time() > %s", (dt.timedelta(seconds=grace),)
        ),
        timeout=grace + 5,
        what="the server's restart grace period to pass",
        interval=0.5,
    )
    config = WorkerConfig()  # default settings
    workers: list[WorkerProcess] = []
    times: list[float] = []
    exactly_once = True
    try:
        for i in range(2):
            workers += goodjob_workers(url, config, f"recovery-{i}")
        wait_registered(url, 2, workers)
        for run in range(sizes.recovery_runs):
            job_id = tasks.long.enqueue(sizes.recovery_job_seconds).id

            def start_of(attempt: int, job_id: uuid.UUID = job_id) -> Any:
                rows = sql(
                    url,
                    "SELECT pid, at FROM bench_recovery WHERE job_id = %s AND attempt = %s"
                    " AND event = 'start'",
                    (job_id, attempt),
                )
                return rows[0] if rows else None

            pid, _ = wait_for(lambda: start_of(1), timeout=30, what="the long job to start")
            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
            _, restarted_at = wait_for(
                lambda: start_of(2), timeout=60, what="the killed job to start again"
            )
            times.append(restarted_at - killed_at)
            wait_for(
                lambda job_id=job_id: scalar(  # type: ignore[misc]
                    url,
                    "SELECT finished_at IS NOT NULL FROM goodjob_jobs WHERE id = %s",
                    (job_id,),
                ),
                timeout=30,
                what="the re-run to finish",
            )
            finishes, executions, interrupted, succeeded = sql(
                url,
                """
                SELECT (SELECT count(*) FROM bench_recovery WHERE job_id = %(id)s
                            AND event = 'finish'),
                       (SELECT count(*) FROM goodjob_executions WHERE job_id = %(id)s),
                       (SELECT count(*) FROM goodjob_executions WHERE job_id = %(id)s
                            AND error_event = 'interrupted'),
                       (SELECT count(*) FROM goodjob_jobs WHERE id = %(id)s
                            AND finished_at IS NOT NULL AND error IS NULL)
                """,
                {"id": job_id},
            )[0]
            exactly_once &= (finishes, executions, interrupted, succeeded) == (1, 2, 1, 1)
            # Replace the killed worker so every run starts with two live processes.
            for worker in list(workers):
                if worker.process.poll() is not None or worker.pid == pid:
                    worker.stop()
                    workers.remove(worker)
                    workers += goodjob_workers(url, config, f"recovery-r{run}")
            wait_for(
                lambda: scalar(url, "SELECT count(*) FROM goodjob_processes") == 2,
                timeout=30,
                what="two live worker processes again",
                workers=workers,
            )
    finally:
        for worker in workers:
            worker.stop()
        app.close()
    return {
        "runs": len(times),
        "median_s": round(statistics.median(times), 3),
        "worst_s": round(max(times), 3),
        "times_s": [round(t, 3) for t in times],
        "exactly_once": exactly_once,
        "config": "2 workers, " + config.describe(),
    }
