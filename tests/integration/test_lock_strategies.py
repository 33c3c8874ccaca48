"""Lock strategies and concurrency: whatever the strategy, one worker runs a job, once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections import Counter

import psycopg
import pytest

from goodjob import GoodJob
from tests.helpers import sql, wait_until

STRATEGIES = ["skiplocked", "advisory", "hybrid"]


def executions_per_job(url: str) -> Counter[int]:
    """How many jobs have 0, 1, 2... execution rows."""
    rows = sql(
        url,
        "SELECT count(e.id) FROM goodjob_jobs j"
        " LEFT JOIN goodjob_executions e ON e.job_id = j.id GROUP BY j.id",
    )
    return Counter(int(r[0]) for r in rows)


def advisory_locks(url: str) -> int:
    # pg_locks spans the whole server: count only this test's database.
    rows = sql(
        url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return int(rows[0][0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_many_threads_never_run_a_job_twice(
    make_app: type[GoodJob], database_url: str, strategy: str
) -> None:
    gj = make_app(lock_strategy=strategy, database_pool_size=10)
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @gj.task
    def work(n: int) -> None:
        with lock:
            runs[n] += 1

    gj.enqueue_all([work.prepare(i) for i in range(300)])
    start = threading.Barrier(8)

    def worker() -> None:
        performer = gj.performer()
        start.wait()
        while claimed := performer.claim(2):
            performer.complete([performer.perform(job) for job in claimed])

    with gj.tracker.register():
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert sorted(runs) == list(range(300))
    assert set(runs.values()) == {1}
    assert executions_per_job(database_url) == Counter({1: 300})
    assert len(gj.jobs(status="succeeded", limit=1000)) == 300
    assert gj.job_locks is None or len(gj.job_locks) == 0


WORKER = textwrap.dedent(
    """
    import sys, threading, time
    import goodjob

    gj = goodjob.GoodJob(sys.argv[1], lock_strategy=sys.argv[2])

    @gj.task(name="work")
    def work(n):
        time.sleep(0.005)

    def loop():
        performer = gj.performer()
        while claimed := performer.claim(1):
            performer.complete([performer.perform(job) for job in claimed])

    with gj.tracker.register():
        gj.tracker.id_for_lock()  # connect before the start signal
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start claiming together
        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
    gj.close()
    """
)


@pytest.mark.parametrize("strategy", ["skiplocked", "hybrid"])
def test_two_processes_never_run_a_job_twice(
    make_app: type[GoodJob], database_url: str, strategy: str
) -> None:
    gj = make_app()

    @gj.task(name="work")
    def work(n: int) -> None: ...

    gj.enqueue_all([work.prepare(i) for i in range(400)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, database_url, strategy],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # blocks until that process is set up
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(60) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    assert executions_per_job(database_url) == Counter({1: 400})
    rows = sql(database_url, "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NOT NULL")
    assert rows[0][0] == 400
    # both processes took part, so the claims really competed
    rows = sql(database_url, "SELECT count(DISTINCT process_id) FROM goodjob_executions")
    assert rows[0][0] == 2


@pytest.mark.parametrize("strategy", ["advisory", "hybrid"])
def test_advisory_strategies_hold_the_job_lock_while_it_runs(
    make_app: type[GoodJob], database_url: str, strategy: str
) -> None:
    gj = make_app(lock_strategy=strategy)
    seen: list[int] = []

    @gj.task
    def work() -> None:
        seen.append(
            sql(
                database_url,
                "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = goodjob_lock_key(%s)",
                [job.id],
            )[0][0]
        )

    job = work.enqueue()
    assert gj.performer().drain() == 1
    assert seen == [1]  # the job's own lock was held during the run
    assert advisory_locks(database_url) == 0  # and released when it was recorded


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_job_locked_by_another_session_is_passed_over(
    make_app: type[GoodJob], database_url: str, strategy: str
) -> None:
    """A session still holding a job's advisory lock (a zombie running it under an advisory
    strategy) keeps advisory and hybrid workers off it; skiplocked only looks at locked_by_id."""
    gj = make_app(lock_strategy=strategy)

    @gj.task
    def work() -> None: ...

    job = work.enqueue()
    performer = gj.performer()
    with psycopg.connect(database_url, autocommit=True) as zombie, gj.tracker.register():
        zombie.execute("SELECT pg_advisory_lock(goodjob_lock_key(%s))", [job.id])
        claimed = performer.claim()
        if strategy == "skiplocked":
            assert [c.id for c in claimed] == [job.id]
            performer.complete([performer.perform(claimed[0])])
        else:
            assert claimed == []
            zombie.execute("SELECT pg_advisory_unlock(goodjob_lock_key(%s))", [job.id])
            [again] = wait_until(performer.claim, message="the claim once the lock is free")
            performer.complete([performer.perform(again)])
    assert gj.job(job.id).status == "succeeded"


def test_a_lost_lock_race_gives_the_claim_back(
    make_app: type[GoodJob], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gj = make_app(lock_strategy="advisory")

    @gj.task
    def work() -> None: ...

    job = work.enqueue()
    # Another session takes the job's lock between the claim statement and our lock attempt.
    monkeypatch.setattr(gj.job_locks, "acquire", lambda job_ids: set())
    with gj.tracker.register():
        assert gj.performer().claim() == []
    back = gj.job(job.id)
    assert (back.status, back.attempts, back.executions) == ("queued", 0, ())


@pytest.mark.parametrize("strategy", ["advisory", "hybrid"])
def test_one_connection_holds_every_advisory_lock_of_a_process(
    make_app: type[GoodJob], database_url: str, strategy: str
) -> None:
    """Issue 11: the advisory strategies used to open a connection per claimed job (25 for a
    5-thread pool draining a backlog); one per process holds them all now."""
    gj = make_app(lock_strategy=strategy, max_threads=5, poll_interval=30)
    gate = threading.Event()
    running: list[int] = []

    @gj.task
    def hold(n: int) -> None:
        running.append(n)
        gate.wait(10)

    gj.enqueue_all([hold.prepare(n) for n in range(60)])
    gj.start()
    try:
        wait_until(lambda: len(running) >= 5, message="five jobs running")
        lock_sessions = sql(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'goodjob:job-lock%%'",
        )[0][0]
        assert advisory_locks(database_url) >= 5 + 1  # the jobs' and the process row's
        gate.set()
        wait_until(lambda: len(gj.jobs(status="succeeded", limit=100)) == 60, timeout=30)
    finally:
        gate.set()
        gj.shutdown()
    assert lock_sessions == 1
