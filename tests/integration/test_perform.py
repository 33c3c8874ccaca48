"""Performing: each outcome with its error_event, the execution rows, durations and timestamps."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time

import pytest

from goodjob import GoodJob, Job, Retry, current_job
from goodjob.queues import parse_selection
from goodjob.records.claims import ClaimSpec
from tests.helpers import sql


def run_all(gj: GoodJob) -> int:
    """Perform every due job without raising (the way a worker does)."""
    return gj.performer().drain()


def test_succeeded_records_result_execution_and_timestamps(gj: GoodJob) -> None:
    seen: list[tuple[object, ...]] = []

    @gj.task
    def add(a: int, b: int) -> dict[str, int]:
        ctx = current_job()
        assert ctx is not None
        seen.append((ctx.id, ctx.attempt, ctx.interrupted, ctx.queue_name))
        time.sleep(0.05)
        return {"sum": a + b}

    job = add.enqueue(2, 3)
    assert run_all(gj) == 1
    done = gj.job(job.id)
    assert (done.status, done.result, done.error, done.error_event) == (
        "succeeded",
        {"sum": 5},
        None,
        None,
    )
    assert seen == [(job.id, 1, False, "default")]
    assert done.attempts == 1
    assert done.locked_by_id is None
    assert done.created_at is not None
    assert done.performed_at is not None
    assert done.finished_at is not None
    assert done.created_at <= done.performed_at <= done.finished_at
    [execution] = done.executions
    assert execution.attempt == 1
    assert execution.process_id == gj.tracker.process_id
    assert execution.finished_at is not None
    assert execution.duration is not None
    assert dt.timedelta(seconds=0.05) <= execution.duration < dt.timedelta(seconds=5)
    assert (execution.error, execution.error_event) == (None, None)


def test_async_task_runs_and_returns(gj: GoodJob) -> None:
    @gj.task
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.01)
        ctx = current_job()
        assert ctx is not None
        return x * 2 + ctx.attempt - 1

    job = slow_double.enqueue(21)
    run_all(gj)
    assert gj.job(job.id).result == 42


def test_unhandled_error_discards_with_error_and_backtrace(gj: GoodJob) -> None:
    @gj.task
    def explode() -> None:
        raise ValueError("boom")

    job = explode.enqueue()
    run_all(gj)
    done = gj.job(job.id)
    assert (done.status, done.error_event, done.error) == (
        "discarded",
        "unhandled",
        "ValueError: boom",
    )
    assert done.finished_at is not None
    [execution] = done.executions
    assert execution.error == "ValueError: boom"
    assert execution.error_event == "unhandled"
    assert execution.error_backtrace is not None
    assert "in explode" in execution.error_backtrace


def test_discard_on(gj: GoodJob) -> None:
    class Gone(Exception):
        pass

    @gj.task(discard_on=[Gone], retry=Retry(attempts=5, wait=0))
    def fetch() -> None:
        raise Gone("record deleted")

    job = fetch.enqueue()
    run_all(gj)
    done = gj.job(job.id)
    assert (done.status, done.error_event, done.attempts) == ("discarded", "discarded", 1)
    assert done.executions[0].error_event == "discarded"


def test_handled_error_succeeds_and_keeps_the_error_on_the_execution(gj: GoodJob) -> None:
    handled: list[BaseException] = []

    @gj.task(handle=handled.append)
    def flaky() -> None:
        raise LookupError("not there")

    job = flaky.enqueue()
    run_all(gj)
    done = gj.job(job.id)
    assert (done.status, done.error_event, done.error) == ("succeeded", "handled", None)
    assert [type(e) for e in handled] == [LookupError]
    assert done.executions[0].error == "LookupError: not there"
    assert done.executions[0].error_event == "handled"


def test_a_handler_that_raises_leaves_the_error_unhandled(gj: GoodJob) -> None:
    def reraise(error: BaseException) -> None:
        raise error

    @gj.task(handle=reraise)
    def flaky() -> None:
        raise LookupError("still not there")

    job = flaky.enqueue()
    run_all(gj)
    assert gj.job(job.id).error_event == "unhandled"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_timeout_interrupts_the_task_and_records_job_timeout(gj: GoodJob, kind: str) -> None:
    finished = threading.Event()

    def sync_task() -> None:
        for _ in range(500):
            try:  # noqa: SIM105 - the point is a task's own broad except
                time.sleep(0.01)
            except Exception:  # a task's own except Exception cannot swallow the timeout
                pass
        finished.set()

    async def async_task() -> None:
        await asyncio.sleep(5)
        finished.set()

    task = gj.task(name=f"slow_{kind}", timeout=0.2)(sync_task if kind == "sync" else async_task)
    job = task.enqueue()
    started = time.monotonic()
    run_all(gj)
    assert time.monotonic() - started < 3
    done = gj.job(job.id)
    assert not finished.is_set()
    assert done.status == "discarded"
    assert done.error_event == "unhandled"
    assert done.error is not None
    assert done.error.startswith("goodjob.errors.JobTimeout:")
    assert "timeout of 0.2s" in done.error
    duration = done.executions[0].duration
    assert duration is not None
    assert dt.timedelta(seconds=0.19) <= duration < dt.timedelta(seconds=3)


def test_timeout_is_retried_by_a_policy_that_names_it(gj: GoodJob) -> None:
    @gj.task(timeout=0.1, retry=Retry(attempts=2, wait=0, on=TimeoutError))
    def slow() -> None:
        # short sleeps: the timeout lands between bytecodes, not inside one long C call
        for _ in range(200):
            time.sleep(0.01)

    job = slow.enqueue()
    run_all(gj)
    done = gj.job(job.id)
    assert [e.error_event for e in done.executions] == ["retried", "retry_stopped"]


def test_unknown_task_is_discarded_visibly_and_can_be_retried(
    make_app: type[GoodJob],
) -> None:
    producer = make_app()
    worker = make_app()

    @producer.task(name="billing.charge")
    def charge(amount: int) -> int:
        return amount

    job = charge.enqueue(10)
    run_all(worker)  # the worker's app has no such task
    done = worker.job(job.id)
    assert (done.status, done.error_event) == ("discarded", "unhandled")
    assert done.error is not None
    assert "UnknownTaskError: no task named 'billing.charge'" in done.error

    worker.task(name="billing.charge")(lambda amount: amount * 2)  # deployed
    assert worker.retry_job(job.id).status == "retried"
    run_all(worker)
    again = worker.job(job.id)
    assert (again.status, again.result, again.attempts) == ("succeeded", 20, 2)


def test_unstorable_result_succeeds_without_a_result(gj: GoodJob) -> None:
    @gj.task
    def make_set() -> set[int]:
        return {1, 2}

    job = make_set.enqueue()
    run_all(gj)
    done = gj.job(job.id)
    assert (done.status, done.result) == ("succeeded", None)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ("always", {"ok", "bad"}),
        ("never", set()),
        ("on_unhandled_error", {"bad"}),
    ],
)
def test_preserve_job_records(
    make_app: type[GoodJob], database_url: str, policy: str, kept: set[str]
) -> None:
    gj = make_app(preserve_job_records=policy)

    @gj.task(name="ok")
    def ok() -> None: ...

    @gj.task(name="bad")
    def bad() -> None:
        raise ValueError

    ok.enqueue()
    bad.enqueue()
    run_all(gj)
    assert {row[0] for row in sql(database_url, "SELECT task_name FROM goodjob_jobs")} == kept
    # executions go with their jobs
    orphans = sql(
        database_url,
        "SELECT count(*) FROM goodjob_executions e"
        " WHERE NOT EXISTS (SELECT 1 FROM goodjob_jobs j WHERE j.id = e.job_id)",
    )
    assert orphans[0][0] == 0


def test_order_is_priority_then_scheduled_at(gj: GoodJob) -> None:
    order: list[str] = []

    @gj.task
    def note(name: str) -> None:
        order.append(name)

    note.enqueue("first-default")
    note.using(priority=5).enqueue("low")
    note.using(priority=-5).enqueue("high")
    note.enqueue("second-default")
    note.using(wait=60).enqueue("future")
    run_all(gj)
    assert order == ["high", "first-default", "second-default", "low"]


def test_job_handle_type(gj: GoodJob) -> None:
    @gj.task
    def noop() -> None: ...

    assert isinstance(noop.enqueue(), Job)


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        ("*", ["b1", "a1", "c1"]),
        ("a,c", ["a1", "c1"]),
        ("-a", ["b1", "c1"]),
        ("+c,a", ["c1", "a1"]),
    ],
)
def test_claims_follow_the_queue_selection(gj: GoodJob, queues: str, expected: list[str]) -> None:
    @gj.task
    def note(tag: str) -> str:
        return tag

    note.using(queue="b", priority=-1).enqueue("b1")
    note.using(queue="a").enqueue("a1")
    note.using(queue="c").enqueue("c1")
    performer = gj.performer(ClaimSpec(parse_selection(queues)))
    with gj.tracker.register():
        claimed = performer.claim(10)
        performer.complete([performer.perform(job) for job in claimed])
    assert [json.loads(job.arguments)["args"][0] for job in claimed] == expected


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_running_job_holds_no_pooled_connection(
    make_app: type[GoodJob], database_url: str, kind: str
) -> None:
    # A slow heartbeat, so the tracker's refresh cannot borrow a connection mid-test.
    gj = make_app(process_stale_seconds=30, process_expired_seconds=60)
    busy: list[int] = []

    def look() -> None:
        # Asked from outside: how many of goodjob's pooled sessions are not idle right now.
        busy.append(
            sql(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'goodjob:pool' AND state <> 'idle'",
            )[0][0]
        )

    async def async_look() -> None:
        look()

    gj.task(name="look")(look if kind == "sync" else async_look)
    gj.tasks["look"].enqueue()
    gj.performer().drain()
    assert busy == [0]
