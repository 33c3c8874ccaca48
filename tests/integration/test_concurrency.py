"""Concurrency controls (issue 15): limits and throttles by key, exact in the database."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from goodjob import Concurrency, ConfigurationError, GoodJob, JobStateError, current_job
from tests.helpers import sql, wait_until


def test_enqueue_limit_one_deduplicates_and_hands_back_the_queued_job(gj: GoodJob) -> None:
    @gj.task(
        name="sync",
        concurrency=Concurrency(key=lambda account, **_: f"a{account}", enqueue_limit=1),
    )
    def sync(account: int) -> None: ...

    first = sync.enqueue(1)
    second = sync.enqueue(1)
    other = sync.enqueue(2)
    assert first.refused is None
    assert other.refused is None
    assert second.id == first.id
    assert second.refused
    assert "enqueue_limit" in second.refused
    assert first.concurrency_key == "a1"
    assert other.concurrency_key == "a2"
    assert gj.job(first.id).concurrency_key == "a1"
    assert len(gj.jobs(status="queued")) == 2


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end at the same instant as a start closes
    first)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_perform_limit_holds_and_a_freed_slot_starts_the_next_job_without_a_poll(
    make_app: Any,
) -> None:
    gj: GoodJob = make_app(poll_interval=30, max_threads=6)
    spans: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    lock = threading.Lock()

    @gj.task(name="slow", concurrency=Concurrency(key=lambda key, n: key, perform_limit=2))
    def slow(key: str, n: int) -> None:
        start = time.monotonic()
        time.sleep(0.05)
        with lock:
            spans[key].append((start, time.monotonic()))

    @gj.task(name="free")
    def free(n: int) -> None: ...

    gj.enqueue_all([slow.prepare(key, n) for n in range(12) for key in ("a", "b")])
    unlimited = gj.enqueue_all([free.prepare(n) for n in range(10)])
    started = time.monotonic()
    gj.start()
    try:
        wait_until(lambda: len(spans["a"]) + len(spans["b"]) == 24, timeout=20)
        wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in unlimited))
    finally:
        gj.shutdown()
    assert _max_overlap(spans["a"]) == 2
    assert _max_overlap(spans["b"]) == 2
    # 12 jobs of 50 ms, two at a time: about 0.3 s per key. Polls are 30 s apart, so each next
    # job was started by the completion that freed its slot.
    assert time.monotonic() - started < 10


def test_perform_throttle_starts_at_most_count_per_period(make_app: Any, database_url: str) -> None:
    gj: GoodJob = make_app(poll_interval=30, max_threads=4)
    starts: list[float] = []

    @gj.task(name="tick", concurrency=Concurrency(perform_throttle=(3, 0.5)))
    def tick(n: int) -> None:
        starts.append(time.time())

    gj.enqueue_all([tick.prepare(n) for n in range(9)])
    gj.start()
    try:
        wait_until(lambda: len(starts) == 9, timeout=10)
    finally:
        gj.shutdown()
    performed = [
        row[0].timestamp()
        for row in sql(database_url, "SELECT performed_at FROM goodjob_executions ORDER BY 1")
    ]
    # Any 4 consecutive starts span at least the period (3 per 0.5 s at most): exactly, as the
    # database stamps them (at the claim); by the tasks' clocks, which read a moment after the
    # claim (thread hand-over), within a tolerance.
    for times, tolerance in ((performed, 0.0), (sorted(starts), 0.05)):
        gaps = [b - a for a, b in zip(times, times[3:], strict=False)]
        assert min(gaps) >= 0.5 - tolerance, times
    # Woken by a timer when the period let more start, not by the 30 s poll.
    assert sorted(starts)[-1] - sorted(starts)[0] < 5


def test_total_limit_counts_running_and_queued(make_app: Any) -> None:
    gj: GoodJob = make_app(max_threads=1)  # the second job stays queued behind the first
    release = threading.Event()

    @gj.task(name="held", concurrency=Concurrency(key="k", total_limit=2))
    def held(n: int) -> None:
        release.wait(10)

    first = held.enqueue(1)
    gj.start()
    try:
        wait_until(lambda: gj.job(first.id).status == "running")
        second = held.enqueue(2)
        third = held.enqueue(3)
        assert second.refused is None
        assert third.refused is not None
        assert "total_limit" in third.refused
        assert third.id == second.id  # the key's queued job comes first
        release.set()
        wait_until(lambda: gj.job(second.id).status == "succeeded")
        assert held.enqueue(4).refused is None
    finally:
        release.set()
        gj.shutdown()


def test_enqueue_throttle_refuses_within_the_period(gj: GoodJob) -> None:
    @gj.task(name="mail", concurrency=Concurrency(key="m", enqueue_throttle=(2, 60)))
    def mail(n: int) -> None: ...

    handles = gj.enqueue_all([mail.prepare(n) for n in range(4)])
    assert [h.refused is None for h in handles] == [True, True, False, False]
    assert "enqueue_throttle" in (handles[2].refused or "")
    assert handles[2].id == handles[0].id
    assert len(gj.jobs(status="queued")) == 2


def test_concurrent_enqueues_of_one_key_leave_one_job_and_each_caller_its_handle(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task(name="dedup", concurrency=Concurrency(key="same", enqueue_limit=1))
    def dedup(n: int) -> None: ...

    barrier = threading.Barrier(8)
    handles: list[Any] = []

    def enqueue(n: int) -> None:
        barrier.wait(10)
        handles.append(dedup.enqueue(n))

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    rows = sql(database_url, "SELECT id FROM goodjob_jobs WHERE concurrency_key = 'same'")
    assert len(rows) == 1
    assert len(handles) == 8
    assert {h.id for h in handles} == {rows[0][0]}
    assert sum(h.refused is None for h in handles) == 1


def test_using_overrides_the_key_and_a_key_without_limits_is_refused(gj: GoodJob) -> None:
    @gj.task(name="keyed", concurrency=Concurrency(key="default-key", enqueue_limit=1))
    def keyed() -> None: ...

    @gj.task(name="plain")
    def plain() -> None: ...

    assert keyed.enqueue().concurrency_key == "default-key"
    assert keyed.using(concurrency_key="other").enqueue().refused is None
    assert keyed.using(concurrency_key="other").enqueue().refused is not None
    with pytest.raises(ConfigurationError, match="task plain: concurrency_key needs limits"):
        plain.using(concurrency_key="x")


def test_the_default_key_is_the_task_name(gj: GoodJob) -> None:
    @gj.task(name="whole", concurrency=Concurrency(perform_limit=1))
    def whole(n: int) -> None: ...

    assert whole.enqueue(1).concurrency_key == "whole"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"perform_limit": 0}, "perform_limit=0 is not valid"),
        ({"total_limit": 1.5}, "total_limit=1.5 is not valid"),
        ({"enqueue_limit": True}, "enqueue_limit=True is not valid"),
        ({"perform_throttle": (5,)}, r"perform_throttle=\(5,\) is not valid"),
        ({"perform_throttle": (5, 0)}, r"perform_throttle=\(5, 0\) is not valid"),
        ({"enqueue_throttle": (0, 1)}, r"enqueue_throttle=\(0, 1\) is not valid"),
        ({"perform_throttle": (1, float("nan"))}, "perform_throttle=.* is not valid"),
        ({"key": ""}, "concurrency key '' is not valid"),
        ({"key": "a\x00b"}, "concurrency key .* is not valid"),
    ],
)
def test_bad_limits_are_refused_with_the_option_named(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Concurrency(**options)


def test_a_key_function_that_fails_or_returns_no_text_names_the_task(gj: GoodJob) -> None:
    @gj.task(name="broken", concurrency=Concurrency(key=lambda n: {"n": n}, perform_limit=1))
    def broken(n: int) -> None: ...

    @gj.task(name="raising", concurrency=Concurrency(key=lambda n: 1 / n, perform_limit=1))
    def raising(n: int) -> None: ...

    with pytest.raises(ConfigurationError, match="task broken: concurrency key"):
        broken.enqueue(1)
    with pytest.raises(ConfigurationError, match="task raising: its concurrency key function"):
        raising.enqueue(0)
    assert gj.jobs() == []


def test_a_limited_enqueue_joins_the_callers_transaction(gj: GoodJob, database_url: str) -> None:
    import psycopg

    @gj.task(name="tx", concurrency=Concurrency(key="t", enqueue_limit=1))
    def tx() -> None: ...

    with psycopg.connect(database_url) as conn:
        job = tx.using(connection=conn).enqueue()
        again = tx.using(connection=conn).enqueue()  # sees the first, uncommitted, in its way
        assert again.refused is not None
        assert again.id == job.id
        conn.rollback()
    assert gj.jobs() == []
    assert tx.enqueue().refused is None


def test_a_limited_enqueue_on_an_async_connection(gj: GoodJob, database_url: str) -> None:
    import psycopg

    @gj.task(name="atx", concurrency=Concurrency(key="t", enqueue_limit=1))
    def atx() -> None: ...

    async def scenario() -> tuple[Any, Any]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            first = await atx.using(connection=conn).aenqueue()
            second = await atx.using(connection=conn).aenqueue()
            await conn.commit()
        return first, second

    first, second = asyncio.run(scenario())
    assert first.refused is None
    assert second.refused is not None
    assert second.id == first.id
    assert [j.id for j in gj.jobs()] == [first.id]


# -- cancelling --------------------------------------------------------------------------------


def test_cancelling_a_queued_job_discards_it_before_it_runs(gj: GoodJob) -> None:
    ran: list[int] = []

    @gj.task(name="later")
    def later(n: int) -> None:
        ran.append(n)

    job = later.using(wait=60).enqueue(1)
    cancelled = job.cancel()
    assert cancelled.status == "discarded"
    assert cancelled.error is not None
    assert "JobCancelled" in cancelled.error
    with pytest.raises(JobStateError, match="only unfinished jobs can be cancelled"):
        gj.cancel_job(job.id)
    assert gj.perform_inline() == 0
    assert ran == []


def test_a_running_sync_task_sees_its_cancellation_and_the_thread_goes_on(
    make_app: Any,
) -> None:
    gj: GoodJob = make_app(max_threads=1)
    seen: dict[str, float] = {}

    @gj.task(name="patient")
    def patient() -> None:
        job = current_job()
        assert job is not None
        seen["started"] = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if job.cancelled:
                seen["cancelled"] = time.monotonic()
                job.check_cancelled()
            time.sleep(0.005)

    @gj.task(name="after")
    def after() -> None:
        seen["after"] = time.monotonic()

    gj.start()
    try:
        job = patient.enqueue()
        wait_until(lambda: "started" in seen)
        asked = time.monotonic()
        asking = job.cancel()
        # Still running (it holds its claim) until its worker records the attempt.
        assert asking.status == "running"
        assert asking.cancelled_at is not None
        wait_until(lambda: "cancelled" in seen, timeout=5)
        assert seen["cancelled"] - asked < 1.0
        wait_until(lambda: gj.job(job.id).status == "discarded", timeout=5)
        after.enqueue()  # the one thread is free again
        wait_until(lambda: "after" in seen, timeout=5)
    finally:
        gj.shutdown()
    final = gj.job(job.id)
    assert final.status == "discarded"
    assert final.error is not None
    assert "JobCancelled" in final.error
    assert [e.error_event for e in final.executions] == ["discarded"]


def test_a_running_async_task_is_cancelled(make_app: Any) -> None:
    gj: GoodJob = make_app(max_threads=1)
    seen: dict[str, float] = {}

    @gj.task(name="asleep")
    async def asleep() -> None:
        seen["started"] = time.monotonic()
        try:
            await asyncio.sleep(20)
        except asyncio.CancelledError:
            seen["cancelled"] = time.monotonic()
            raise

    gj.start()
    try:
        job = asleep.enqueue()
        wait_until(lambda: "started" in seen)
        asked = time.monotonic()
        gj.cancel_job(job.id)
        wait_until(lambda: "cancelled" in seen, timeout=5)
        assert seen["cancelled"] - asked < 1.0
    finally:
        gj.shutdown()
    assert gj.job(job.id).status == "discarded"


def test_a_finished_job_cannot_be_cancelled(gj: GoodJob) -> None:
    @gj.task(name="quick")
    def quick() -> int:
        return 7

    job = quick.enqueue()
    gj.perform_inline()
    with pytest.raises(JobStateError, match=r"cannot cancel job .*: it is succeeded"):
        job.cancel()
    assert gj.job(job.id).result == 7


def test_a_cancelled_job_holds_its_slot_until_its_task_stops(make_app: Any) -> None:
    """perform_limit=1: a cancelled job whose task has not stopped yet still counts, so the
    key's next job starts only once the worker recorded the cancelled one (then at once, woken
    by that record, not by the 30 s poll)."""
    gj: GoodJob = make_app(max_threads=3, poll_interval=30)
    started: list[int] = []
    stop = threading.Event()

    @gj.task(name="one", concurrency=Concurrency(key="only", perform_limit=1))
    def one(n: int) -> None:
        started.append(n)
        job = current_job()
        assert job is not None
        while not (job.cancelled and stop.is_set()):
            time.sleep(0.005)

    jobs = gj.enqueue_all([one.prepare(n) for n in range(2)])
    gj.start()
    try:
        wait_until(lambda: started == [0])
        jobs[0].cancel()
        gj.tracker.renew()  # time passes: a heartbeat and a sweep
        time.sleep(0.3)  # the condition is that nothing happens: give it the chance to
        assert started == [0]
        assert gj.job(jobs[1].id).status == "queued"
        stop.set()
        wait_until(lambda: started == [0, 1], timeout=5)
        assert gj.job(jobs[0].id).status == "discarded"
        jobs[1].cancel()
    finally:
        stop.set()
        gj.shutdown()


def test_cleanup_deletes_the_rows_of_keys_no_longer_in_use(gj: GoodJob, database_url: str) -> None:
    @gj.task(name="keyed", concurrency=Concurrency(key=lambda n: f"k{n}", perform_limit=1))
    def keyed(n: int) -> None: ...

    keyed.enqueue(1)
    keyed.enqueue(2)
    gj.perform_inline()
    keyed.enqueue(3)  # still queued: its key stays
    sql(database_url, "UPDATE goodjob_concurrency SET updated_at = now() - interval '2 hours'")
    sql(database_url, "UPDATE goodjob_concurrency SET updated_at = now() WHERE key = 'k2'")
    gj.cleanup_preserved_jobs()
    keys = sql(database_url, "SELECT key FROM goodjob_concurrency ORDER BY key")
    assert keys == [("k2",), ("k3",)]  # k1: idle for two hours, nothing unfinished


def test_a_full_keys_backlog_is_not_walked_by_the_claim(gj: GoodJob, database_url: str) -> None:
    """5,000 queued jobs of a key at its limit, ahead of everything else in claim order: the
    gated claim reads a handful of index entries, not the backlog (keyed jobs are not in the
    dequeue indexes; each key's are read within its free slots)."""
    import psycopg

    from goodjob.records.claims import ClaimSpec, walk_window

    @gj.task(name="full", concurrency=Concurrency(key="full", perform_limit=1))
    def full(n: int) -> None: ...

    @gj.task(name="other", concurrency=Concurrency(key="other", perform_limit=1))
    def other(n: int) -> None: ...

    @gj.task(name="plain")
    def plain(n: int) -> None: ...

    gj.enqueue_all([full.using(priority=-1).prepare(n) for n in range(5_000)])
    gj.enqueue_all([other.prepare(n) for n in range(3)] + [plain.prepare(n) for n in range(3)])
    sql(
        database_url,
        "UPDATE goodjob_jobs SET locked_by_id = gen_random_uuid(), locked_at = now()"
        " WHERE id = (SELECT id FROM goodjob_jobs WHERE concurrency_key = 'full'"
        " ORDER BY id LIMIT 1)",
    )
    sql(database_url, "ANALYZE goodjob_jobs")
    spec = ClaimSpec(gated=True)
    with gj.tracker.register(), psycopg.connect(database_url) as conn:
        process_id = gj.tracker.id_for_lock()
        assert process_id is not None
        params = spec.params(process_id)
        # The claim's short walk meets only 'full', at its limit: it claims the jobs without a
        # key, and says it read its whole window. Claimed again reading every key's row, the
        # one free slot of 'other' is taken.
        walk = _explained(conn, spec.statement(gj.database, 10), params)
        every_key = _explained(conn, spec.statement(gj.database, 7, every_key=True), params)
        conn.rollback()
    assert walk["report"]["walked"] == walk_window(10)
    for plan in (walk["plan"], every_key["plan"]):
        scans = [
            n
            for n in _plan_nodes(plan)
            if "goodjob_jobs" in n.get("Index Name", "") or n.get("Relation Name") == "goodjob_jobs"
        ]
        read = {
            n.get("Index Name") or n["Node Type"]: n["Actual Rows"]
            + n.get("Rows Removed by Filter", 0)
            for n in scans
        }
        assert read, plan
        assert max(read.values()) <= walk_window(10), read
    # What each claimed: the three jobs without a key, then one of 'other' (its limit).
    assert walk["claimed"] == 3
    assert every_key["claimed"] == 1


def _explained(conn: Any, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    """A gated claim's plan (EXPLAIN ANALYZE, undone), then what running it claims and reports."""
    from psycopg.rows import dict_row

    conn.execute("SAVEPOINT explained")
    plan = conn.execute(("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).encode(), params).fetchone()
    conn.execute("ROLLBACK TO SAVEPOINT explained")
    rows = conn.cursor(row_factory=dict_row).execute(statement.encode(), params).fetchall()
    return {
        "plan": plan[0][0]["Plan"],
        "report": json.loads(rows[0]["report"]),
        "claimed": sum(row["id"] is not None for row in rows),
    }


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [n for child in plan.get("Plans", []) for n in _plan_nodes(child)]


def test_a_process_that_is_not_registered_claims_no_keyed_job(gj: GoodJob) -> None:
    """The gated claim's keyed half asks, as the unkeyed half does, that the claiming process
    has its row: one that was swept away claims nothing."""
    import uuid

    from goodjob.records import claims
    from goodjob.records.claims import ClaimSpec

    @gj.task(name="keyed", concurrency=Concurrency(key="k", perform_limit=5))
    def keyed(n: int) -> None: ...

    gj.enqueue_all([keyed.prepare(n) for n in range(3)])
    swept = uuid.uuid4()
    assert claims.claim(gj.database, ClaimSpec(gated=True), swept, 10, claimed_at=0.0) == []
    assert len(gj.jobs(status="queued")) == 3


def test_a_key_at_its_throttle_or_paused_does_not_hold_up_other_keys(make_app: Any) -> None:
    """One thread, claims of one job: keys that cannot start now are not locked by the claim, so
    they never crowd out a key that can."""
    gj: GoodJob = make_app(max_threads=1, poll_interval=30)
    ran: list[str] = []

    @gj.task(name="hourly", concurrency=Concurrency(key="h", perform_throttle=(1, 3600)))
    def hourly(n: int) -> None:
        ran.append(f"h{n}")

    @gj.task(name="held", concurrency=Concurrency(key=lambda n: f"p{n}", perform_limit=1))
    def held(n: int) -> None:
        ran.append(f"p{n}")

    @gj.task(name="free", concurrency=Concurrency(key="f", perform_limit=1))
    def free(n: int) -> None:
        ran.append(f"f{n}")

    gj.pause(queue="held")
    gj.enqueue_all([hourly.using(priority=-2).prepare(n) for n in range(3)])
    gj.enqueue_all([held.using(priority=-1, queue="held").prepare(n) for n in range(3)])
    gj.enqueue_all([free.prepare(n) for n in range(3)])
    gj.start()
    try:
        wait_until(lambda: sorted(ran) == ["f0", "f1", "f2", "h0"], timeout=10)
    finally:
        gj.shutdown()
    assert len(gj.jobs(status="queued")) == 5  # two hourly (throttled), three paused


def test_a_retried_keyed_job_runs_after_its_keys_row_was_cleaned_up(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task(name="flaky", concurrency=Concurrency(key="x", perform_limit=1))
    def flaky() -> None:
        raise ValueError("no")

    job = flaky.enqueue()
    gj.perform_inline()
    assert gj.job(job.id).status == "discarded"
    sql(database_url, "DELETE FROM goodjob_concurrency")  # as cleanup does after an hour
    gj.retry_job(job.id)
    assert gj.perform_inline() == 1
    assert gj.job(job.id).executions_count == 2


def test_a_job_cancelled_while_running_runs_again_when_retried(make_app: Any) -> None:
    gj: GoodJob = make_app(max_threads=1)
    attempts: list[int] = []

    @gj.task(name="again")
    def again() -> None:
        job = current_job()
        assert job is not None
        attempts.append(job.attempt)
        while job.attempt == 1:
            job.check_cancelled()
            time.sleep(0.005)

    gj.start()
    try:
        job = again.enqueue()
        wait_until(lambda: attempts == [1])
        job.cancel()
        wait_until(lambda: gj.job(job.id).status == "discarded", timeout=5)
        gj.retry_job(job.id)
        wait_until(lambda: gj.job(job.id).status == "succeeded", timeout=5)
    finally:
        gj.shutdown()
    assert attempts == [1, 2]
    assert gj.job(job.id).cancelled_at is None


def test_a_job_cancelled_while_its_worker_died_is_discarded_not_run(
    gj: GoodJob, database_url: str
) -> None:
    """The running job's process dies before it records the cancelled attempt: the claim that
    takes the job next (after the sweep released it) discards it without running it."""
    ran: list[int] = []

    @gj.task(name="orphan")
    def orphan() -> None:
        ran.append(1)

    job = orphan.enqueue()
    sql(
        database_url,
        "UPDATE goodjob_jobs SET locked_by_id = gen_random_uuid(), locked_at = now(),"
        " executions_count = 1 WHERE id = %s",
        (job.id,),
    )
    assert gj.cancel_job(job.id).status == "running"
    sql(
        database_url,
        "UPDATE goodjob_jobs SET locked_by_id = NULL, locked_at = NULL WHERE id = %s",
        (job.id,),
    )
    assert gj.perform_inline() == 1
    assert ran == []
    final = gj.job(job.id)
    assert final.status == "discarded"
    assert "JobCancelled" in (final.error or "")


@pytest.mark.parametrize("ahead", [5, 200], ids=["within-the-walk", "past-the-walk"])
def test_a_key_behind_full_keys_is_claimed(gj: GoodJob, ahead: int) -> None:
    """The claim's key walk reads a few due keyed jobs in claim order; when they all belong to
    keys at their limits, a key with a free slot behind them is found all the same (the claim
    then reads every key's row)."""

    @gj.task(name="busy", concurrency=Concurrency(key="busy", perform_limit=1))
    def busy(n: int) -> None: ...

    @gj.task(name="idle", concurrency=Concurrency(key="idle", perform_limit=1))
    def idle(n: int) -> None: ...

    busy.enqueue(-1)
    gj.enqueue_all([busy.prepare(n) for n in range(ahead)])
    later = idle.enqueue(0)  # after every busy job in claim order
    performer = gj.performer()
    with gj.tracker.register():
        [first] = performer.claim(limit=1)  # busy's first job: busy is now at its limit
        assert first.task_name == "busy"
        claimed = performer.claim(limit=2)
    assert [job.id for job in claimed] == [later.id]
