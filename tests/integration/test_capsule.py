"""The Capsule in-process (async execution mode): waking, draining, caching, shutting down."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import statistics
import threading
import time
from typing import Any

import psycopg
import pytest

from goodjob import GoodJob, current_job
from goodjob.records import processes
from tests.helpers import sql, wait_until


def _status_counts(url: str) -> dict[str, int]:
    rows = sql(
        url,
        "SELECT CASE WHEN finished_at IS NOT NULL THEN 'finished' ELSE 'open' END, count(*)"
        " FROM goodjob_jobs GROUP BY 1",
    )
    return {k: v for k, v in rows}


def test_start_runs_jobs_and_shutdown_removes_the_process_row(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    ran: list[int] = []

    @gj.task
    def work(n: int) -> int:
        ran.append(n)
        return n

    gj.start()
    try:
        assert len(processes.all_processes(gj.database)) == 1
        jobs = [work.enqueue(i) for i in range(20)]
        wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in jobs), timeout=10)
        assert sorted(ran) == list(range(20))
        state = processes.all_processes(gj.database)[0]
        assert state.lock_type == "advisory"
        assert state.alive
    finally:
        gj.shutdown()
    assert processes.all_processes(gj.database) == []


def test_async_tasks_run_on_the_capsule_loop(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    loops: list[int] = []

    @gj.task
    async def nap(n: int) -> int:
        await asyncio.sleep(0.01)
        loops.append(id(asyncio.get_running_loop()))
        return n * 2

    gj.start()
    try:
        jobs = [nap.enqueue(i) for i in range(6)]
        wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in jobs))
        assert [gj.job(j.id).result for j in jobs] == [0, 2, 4, 6, 8, 10]
        assert len(set(loops)) == 1  # one loop, owned by the capsule
    finally:
        gj.shutdown()


def test_notify_latency_median_under_50ms_with_slow_polling(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30, max_threads=2)
    started: dict[int, float] = {}

    @gj.task
    def mark(n: int) -> None:
        started[n] = time.monotonic()

    gj.start()
    try:
        latencies = []
        for n in range(20):
            t0 = time.monotonic()
            mark.enqueue(n)
            wait_until(lambda n=n: n in started, timeout=5, interval=0.001)
            latencies.append(started[n] - t0)
        median = statistics.median(latencies)
        assert median < 0.05, f"median enqueue->start {median * 1000:.1f} ms"
    finally:
        gj.shutdown()


def test_scheduled_jobs_start_at_their_time_by_a_timer_not_a_poll(make_app: Any) -> None:
    """Each starts at its time (typically within a few milliseconds), woken by its timer: the
    poll is 30 s away. The bound allows for a loaded machine (2 cores, the suite in parallel)."""
    gj: GoodJob = make_app(poll_interval=30)
    started: dict[int, float] = {}

    @gj.task
    def mark(n: int) -> None:
        started[n] = time.time()

    gj.start()
    try:
        due = {}
        for n, wait in enumerate((1.0, 1.5, 2.0)):
            due[n] = time.time() + wait
            mark.using(wait=wait).enqueue(n)
        wait_until(lambda: len(started) == 3, timeout=10)
        for n, at in due.items():
            assert -0.05 < started[n] - at < 1.5, f"job {n} started {started[n] - at:+.3f}s off"
    finally:
        gj.shutdown()


def test_cache_is_warmed_at_start_for_jobs_scheduled_before(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    started: list[float] = []

    @gj.task
    def mark() -> None:
        started.append(time.time())

    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    mark.using(run_at=at).enqueue()  # before any worker listens: only the warm-up knows it
    gj.start()
    try:
        wait_until(lambda: started, timeout=5)
        assert abs(started[0] - at.timestamp()) < 0.5
    finally:
        gj.shutdown()


def test_shutdown_lets_running_job_finish_and_tells_it(make_app: Any, database_url: str) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    entered = threading.Event()
    saw: list[bool] = []

    @gj.task
    def slow() -> str:
        entered.set()
        job = current_job()
        assert job is not None
        wait_until(lambda: job.shutting_down, timeout=5)
        saw.append(job.shutting_down)
        return "done"

    gj.start()
    job = slow.enqueue()
    assert entered.wait(5)
    gj.shutdown()
    assert saw == [True]
    assert gj.job(job.id).status == "succeeded"
    assert processes.all_processes(gj.database) == []


def test_shutdown_timeout_interrupts_and_releases_the_job(make_app: Any, database_url: str) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    entered = threading.Event()

    @gj.task
    def stubborn() -> None:
        entered.set()
        while True:
            time.sleep(0.01)  # ignores shutting_down on purpose

    gj.start()
    job = stubborn.enqueue()
    assert entered.wait(5)
    t0 = time.monotonic()
    gj.shutdown(timeout=0.5)
    assert time.monotonic() - t0 < 5
    row = sql(
        database_url,
        "SELECT locked_by_id, finished_at FROM goodjob_jobs WHERE id = %s",
        (job.id,),
    )[0]
    assert row == (None, None)  # released, not finished: another worker will re-run it
    execution = sql(
        database_url,
        "SELECT error_event, finished_at IS NOT NULL FROM goodjob_executions WHERE job_id = %s",
        (job.id,),
    )
    assert execution == [("interrupted", True)]


def test_a_job_unwinding_after_the_grace_is_released_exactly_once(
    make_app: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Race: an interrupted job whose thread unwinds only after the capsule stopped waiting for
    it, while the completer is still writing, was released twice (by its own outcome and by the
    capsule); the second release was fenced out and logged as a warning."""
    caplog.set_level(logging.WARNING, logger="goodjob")
    gj: GoodJob = make_app(poll_interval=30, max_threads=2)
    entered, other_entered, other_may_finish = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    attempts: list[int] = []
    threads: list[threading.Thread] = []

    @gj.task
    def slow_to_stop() -> str:
        job = current_job()
        assert job is not None
        attempts.append(job.attempt)
        if job.attempt > 1:
            return "rerun"
        threads.append(threading.current_thread())
        entered.set()
        try:
            while True:
                time.sleep(0.01)  # ignores shutting_down on purpose
        finally:
            # Cleanup that outlasts INTERRUPT_GRACE: the capsule has given up on this job
            # (it stops the completer right after) before the thread hands in its outcome.
            wait_until(lambda: capsule.completer._stopping, timeout=10, message="the give-up")

    @gj.task
    def other() -> None:
        other_entered.set()
        assert other_may_finish.wait(10)

    gj.start()
    capsule = gj._capsule
    job = slow_to_stop.enqueue()
    assert entered.wait(5)
    blocker = other.enqueue()
    assert other_entered.wait(5)
    with psycopg.connect(database_url) as locker:
        # Hold the other job's row so the completer is still busy writing its outcome when the
        # interrupted thread finally hands in its own.
        locker.execute("SELECT 1 FROM goodjob_jobs WHERE id = %s FOR UPDATE", (blocker.id,))
        other_may_finish.set()
        wait_until(
            lambda: (
                sql(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )[0][0]
                > 0
            ),
            message="the completer to wait for the row",
        )
        stopper = threading.Thread(target=gj.shutdown, kwargs={"timeout": 0.2})
        stopper.start()
        wait_until(lambda: not threads[0].is_alive(), timeout=15, message="the job's thread")
        locker.rollback()
    stopper.join(15)
    assert not stopper.is_alive()

    problems = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("goodjob")
    ]
    assert problems == ["shutdown timeout reached: interrupting running jobs"]
    assert sql(
        database_url, "SELECT locked_by_id, finished_at FROM goodjob_jobs WHERE id = %s", (job.id,)
    ) == [(None, None)]

    gj.start()  # another capsule re-runs it, once
    try:
        wait_until(lambda: gj.job(job.id).status == "succeeded", timeout=10)
    finally:
        gj.shutdown()
    assert attempts == [1, 2]
    assert sql(
        database_url,
        "SELECT attempt, error_event, finished_at IS NOT NULL FROM goodjob_executions"
        " WHERE job_id = %s ORDER BY attempt",
        (job.id,),
    ) == [(1, "interrupted", True), (2, None, True)]


def test_many_threads_drain_every_job_exactly_once(make_app: Any, database_url: str) -> None:
    gj: GoodJob = make_app(poll_interval=30, queues="a,b:3;*:4")
    seen: list[int] = []
    lock = threading.Lock()

    @gj.task
    def tick(n: int) -> None:
        with lock:
            seen.append(n)

    gj.enqueue_all(tick.using(queue=("a", "b", "c")[n % 3]).prepare(n) for n in range(600))
    gj.start()
    try:
        wait_until(lambda: len(seen) >= 600, timeout=30)
        wait_until(lambda: _status_counts(database_url) == {"finished": 600}, timeout=10)
    finally:
        gj.shutdown()
    assert sorted(seen) == list(range(600))
    assert sql(database_url, "SELECT count(*) FROM goodjob_executions")[0][0] == 600


def test_process_state_carries_pool_figures(make_app: Any) -> None:
    gj: GoodJob = make_app(poll_interval=30, queues="mail:2;*", process_stale_seconds=0.2)

    @gj.task
    def noop() -> None:
        pass

    gj.start()
    try:
        noop.enqueue()
        wait_until(
            lambda: processes.all_processes(gj.database)[0].state.get("succeeded") == 1,
            timeout=5,
        )
        state = processes.all_processes(gj.database)[0].state
        assert [s["queues"] for s in state["schedulers"]] == ["mail", "*"]
        assert [s["max_threads"] for s in state["schedulers"]] == [2, 5]
        assert state["schedulers"][1]["available_threads"] == 5
        assert state["cache"]["max"] == gj.settings.max_cache
        assert state["listening"] is True
    finally:
        gj.shutdown()


def test_a_poll_woken_pool_ramps_up_to_all_its_threads(make_app: Any) -> None:
    # No LISTEN: only the poll wakes the pool, one thread at a time; the batch claim and fan-out
    # must still put every thread to work on a backlog. Each job waits at a barrier for three
    # others: unless four run at once, it fails.
    gj: GoodJob = make_app(enable_listen_notify=False, poll_interval=0.3, max_threads=4)
    together = threading.Barrier(4)

    @gj.task
    def busy() -> None:
        together.wait(timeout=10)

    gj.start()
    try:
        jobs = gj.enqueue_all(busy.prepare() for _ in range(12))  # heard by nobody: the poll
        wait_until(lambda: gj._capsule.succeeded + gj._capsule.failed == 12, timeout=30)
    finally:
        gj.shutdown()
    assert [gj.job(job.id).status for job in jobs] == ["succeeded"] * 12


@pytest.mark.parametrize("skew", [-30.0, 30.0])
def test_a_worker_whose_clock_is_off_starts_jobs_on_the_database_clock(
    make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """Issue 11 (DESIGN 1.3): the wake-up timers follow the database's clock. With this
    process's clock 30 s behind or ahead, a job due now and one due in a second start within
    half a second of their time, not at the next poll (30 s away)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)
    gj: GoodJob = make_app(poll_interval=30)

    @gj.task
    def tick() -> None: ...

    gj.start()
    try:
        now = tick.enqueue()
        later = tick.using(wait=1.0).enqueue()
        try:
            wait_until(
                lambda: gj.job(now.id).finished and gj.job(later.id).finished,
                timeout=10,
                message="both jobs to run",
            )
        except AssertionError:
            capsule = gj._capsule
            assert capsule is not None
            offset = capsule.cache.clock._offset - (real() - time.monotonic())
            raise AssertionError(
                f"jobs {gj.job(now.id).status} and {gj.job(later.id).status}; the worker's idea"
                f" of the database clock is {offset:+.3f}s off; timers {capsule.cache._heap};"
                f" listening {capsule.connected}"
            ) from None
    finally:
        gj.shutdown()
    for job in (gj.job(now.id), gj.job(later.id)):
        assert job.scheduled_at is not None
        assert job.performed_at is not None
        assert job.performed_at - job.scheduled_at < dt.timedelta(seconds=0.5)
