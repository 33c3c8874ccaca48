"""Claiming ahead, bounded by time (issue 12): short jobs are claimed ahead, long ones never.

A job claimed ahead waits in one process's buffer while another process may have an idle thread
(Celery's prefetch problem). These tests run real capsules in this process; the acceptance tests
(``tests/acceptance/test_claim_ahead.py``) run real worker processes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from goodjob import GoodJob
from tests.helpers import wait_until


def _warm_up(gj: GoodJob, count: int = 20) -> None:
    """Run short jobs first, so the pool has timed its jobs and would claim short ones ahead."""
    quick = gj.tasks["quick"]
    jobs = gj.enqueue_all([quick.using(queue="warm").prepare("warm") for _ in range(count)])
    wait_until(lambda: all(gj.job(job.id).finished for job in jobs), message="the warm-up")


def _register(gj: GoodJob, ran: dict[str, str], gate: threading.Event | None = None) -> None:
    lock = threading.Lock()

    @gj.task(name="quick")
    def quick(name: str) -> None:
        with lock:
            ran[name] = str(gj.tracker.process_id)

    @gj.task(name="long")
    def long(name: str) -> None:
        assert gate is not None
        gate.wait(20)


def test_one_second_jobs_are_never_claimed_ahead_and_start_when_recorded(make_app: Any) -> None:
    gj: GoodJob = make_app(max_threads=2, poll_interval=30)
    _register(gj, {})
    starts: dict[str, float] = {}

    @gj.task(name="second")
    def second(name: str) -> None:
        starts[name] = time.time()
        time.sleep(1.0)

    gj.start()
    try:
        _warm_up(gj)
        [pool] = gj._capsule.schedulers
        jobs = gj.enqueue_all([second.prepare(f"s{n}") for n in range(4)])
        waited: list[float] = []
        while not all(gj.job(job.id).finished for job in jobs):
            now = time.monotonic()
            waited += [now - job.claimed_at for job in list(pool._pending)]
            time.sleep(0.005)  # sampling interval, not a wait for a condition
        returned = pool.returned
    finally:
        gj.shutdown()
    # No job waited in the buffer (beyond the moment a thread takes it), none was given back.
    assert max(waited, default=0.0) < 0.02, f"a job waited {max(waited):.3f}s in the buffer"
    assert returned == 0
    for job in jobs:
        done = gj.job(job.id)
        assert done.performed_at is not None
        name = done.args[0]
        drift = abs(done.performed_at - dt.datetime.fromtimestamp(starts[name], dt.UTC))
        assert drift < dt.timedelta(milliseconds=100), f"{name} recorded {drift} from its start"


def test_a_worker_busy_with_long_jobs_holds_no_short_job_an_idle_worker_could_run(
    make_app: Any,
) -> None:
    gate = threading.Event()
    ran: dict[str, str] = {}
    busy: GoodJob = make_app(max_threads=2, poll_interval=30)
    idle: GoodJob = make_app(max_threads=2, poll_interval=30)
    _register(busy, ran, gate)
    _register(idle, ran, gate)
    busy.start()
    try:
        _warm_up(busy)
        busy.enqueue_all([busy.tasks["long"].using(priority=-1).prepare(f"l{n}") for n in range(2)])
        shorts = busy.enqueue_all([busy.tasks["quick"].prepare(f"q{n}") for n in range(8)])
        wait_until(
            lambda: len(busy.jobs(status="running", task="long")) == 2,
            message="both threads busy with long jobs",
        )
        idle.start()  # an idle worker joins while the busy one's threads are taken
        wait_until(
            lambda: all(busy.job(job.id).status == "succeeded" for job in shorts),
            timeout=10,
            message="the short jobs to run on the idle worker",
        )
    finally:
        gate.set()
        idle.shutdown()
        busy.shutdown()
    assert {ran[f"q{n}"] for n in range(8)} == {str(idle.tracker.process_id)}
    for job in shorts:
        assert [e.process_id for e in busy.job(job.id).executions] == [idle.tracker.process_id]


def test_short_jobs_are_claimed_ahead(make_app: Any) -> None:
    """The other side: a drain of short jobs claims more than its free threads at a time."""
    gj: GoodJob = make_app(max_threads=2, poll_interval=30)
    _register(gj, {})
    gj.start()
    try:
        _warm_up(gj, 50)
        [pool] = gj._capsule.schedulers
        before = pool.claims
        jobs = gj.enqueue_all([gj.tasks["quick"].prepare(f"b{n}") for n in range(400)])
        wait_until(lambda: len(gj.jobs(status="succeeded", limit=500)) == 450, timeout=30)
        claims = pool.claims - before
    finally:
        gj.shutdown()
    # Claiming only for free threads, 400 jobs on 2 threads take at least 200 claims.
    assert claims < len(jobs) / 2, f"{claims} claims for {len(jobs)} jobs"
