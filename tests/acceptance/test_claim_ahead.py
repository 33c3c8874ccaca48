"""Claim-ahead that never starves another process (issue 12), with real worker processes."""

from __future__ import annotations

import signal
import time
from collections import Counter

from goodjob import GoodJob
from tests.acceptance.conftest import Workers
from tests.helpers import sql, wait_until


def registered(url: str) -> set[int]:
    return {row[0] for row in sql(url, "SELECT (state->>'pid')::int FROM goodjob_processes")}


def test_two_workers_share_long_jobs_fairly(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    """Two processes of 2 threads and 12 jobs of 1 s: 3 s of work for 4 threads. With claims
    ahead of the threads, one process took 10 and the other 2, and it took 5 s."""
    first = workers.start("--max-threads", "2", "--poll-interval", "30")
    second = workers.start("--max-threads", "2", "--poll-interval", "30")
    wait_until(
        lambda: {first.pid, second.pid} <= registered(database_url),
        timeout=15,
        message="both workers",
    )
    sleepy = client.tasks["sleepy"]
    started = time.time()
    jobs = client.enqueue_all([sleepy.prepare(f"fair{n}", 1.0) for n in range(12)])
    wait_until(
        lambda: all(client.job(job.id).status == "succeeded" for job in jobs),
        timeout=20,
        interval=0.05,
        message="the 12 jobs",
    )
    finished = max(workers.marker_data(f"fair{n}.1.done")[1] for n in range(12))
    per_process = Counter(workers.marker_data(f"fair{n}.1.started")[0] for n in range(12))
    assert finished - started <= 4.5, f"12 jobs of 1 s took {finished - started:.2f}s"
    assert set(per_process) == {first.pid, second.pid}
    assert min(per_process.values()) >= 4, per_process


def test_after_kill_9_the_interrupted_attempts_are_the_jobs_that_had_started(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    """A job claimed but never started must record no attempt: after a kill -9, each
    interrupted execution is a job whose task had begun (its marker says so)."""
    victim = workers.start("--max-threads", "2", "--poll-interval", "30")
    wait_until(lambda: victim.pid in registered(database_url), timeout=15, message="the worker")
    sleepy = client.tasks["sleepy"]
    jobs = client.enqueue_all([sleepy.prepare(f"k{n}", 2.0) for n in range(10)])
    wait_until(
        lambda: len(list(workers.out.glob("k*.1.started"))) == 2,
        message="two jobs started",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    rescuer = workers.start("--max-threads", "10", "--poll-interval", "30")
    wait_until(
        lambda: all(client.job(job.id).status == "succeeded" for job in jobs),
        timeout=30,
        interval=0.1,
        message="every job run again",
    )
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(20) == 0
    started_by_victim = {
        path.name.split(".")[0]
        for path in workers.out.glob("k*.1.started")
        if workers.marker_data(path.name)[0] == victim.pid
    }
    interrupted = sql(
        database_url,
        "SELECT j.arguments->'args'->>0 FROM goodjob_executions e"
        " JOIN goodjob_jobs j ON j.id = e.job_id WHERE e.error_event = 'interrupted'",
    )
    assert len(started_by_victim) == 2
    assert {row[0] for row in interrupted} == started_by_victim
    assert len(interrupted) == 2
    # The others ran once, on their first attempt: the claim of the dead worker cost nothing.
    attempts = Counter(client.job(job.id).attempts for job in jobs)
    assert attempts == Counter({1: 8, 2: 2})
