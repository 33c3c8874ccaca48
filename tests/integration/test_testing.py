"""goodjob.testing: assertions on what was enqueued, and drain() running it in the test's
thread, scheduled jobs included without sleeping."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from goodjob import Concurrency, ConfigurationError, GoodJob, Retry
from goodjob.testing import assert_enqueued, drain, enqueued_jobs, refute_enqueued
from tests.helpers import sql


def test_assertions_match_task_arguments_queue_and_count(gj: GoodJob) -> None:
    @gj.task(queue="mail")
    def send(address: str, *, urgent: bool = False) -> None: ...

    @gj.task
    def other() -> None: ...

    refute_enqueued(send)
    send.enqueue("ada@example.com")
    send.enqueue("bob@example.com", urgent=True)
    send.using(queue="bulk").enqueue("eve@example.com")
    other.enqueue()

    [job] = assert_enqueued(send, args=["ada@example.com"], queue="mail")
    assert job.kwargs == {}
    assert_enqueued(send, kwargs={"urgent": True}, count=1)
    assert_enqueued(send, count=3)
    assert_enqueued(send, queue="mail", count=2)
    refute_enqueued(send, args=["nobody@example.com"])
    refute_enqueued(send, queue="default")
    assert len(enqueued_jobs(gj)) == 4
    assert [j.args for j in enqueued_jobs(send, queue="mail")] == [
        ["ada@example.com"],
        ["bob@example.com"],
    ]

    with pytest.raises(AssertionError, match=r"expected 2 jobs of .*send with queue='bulk'"):
        assert_enqueued(send, queue="bulk", count=2)
    with pytest.raises(AssertionError, match=r"found 1: .* args=\['eve@example.com'\]"):
        refute_enqueued(send, queue="bulk")
    with pytest.raises(AssertionError, match=r"expected a job .* waiting for it: .*ada"):
        assert_enqueued(send, args=["nobody@example.com"])


def test_drain_runs_due_jobs_in_this_thread_with_what_they_enqueue(gj: GoodJob) -> None:
    threads: list[int] = []

    @gj.task
    def child(n: int) -> int:
        threads.append(threading.get_ident())
        return n * 10

    @gj.task(priority=-1)
    def parent(n: int) -> int:
        threads.append(threading.get_ident())
        child.enqueue(n)
        return n

    @gj.task
    def fails() -> None:
        raise ValueError("boom")

    parent.enqueue(1)
    fails.enqueue()
    ran = drain(gj)
    assert [(j.task_name, j.status, j.result) for j in ran] == [
        (parent.name, "succeeded", 1),
        (fails.name, "discarded", None),
        (child.name, "succeeded", 10),
    ]
    assert ran[1].error == "ValueError: boom"
    assert set(threads) == {threading.get_ident()}
    assert drain(gj) == []
    refute_enqueued(child)


def test_drain_without_recursion_leaves_what_the_jobs_enqueue(gj: GoodJob) -> None:
    @gj.task
    def child() -> None: ...

    @gj.task
    def parent() -> None:
        child.enqueue()

    parent.enqueue()
    assert [j.task_name for j in drain(gj, recursive=False)] == [parent.name]
    assert_enqueued(child, count=1)


def test_drain_selects_queues_and_runs_a_retry_only_in_the_next_drain(gj: GoodJob) -> None:
    attempts: list[int] = []

    @gj.task(queue="mail", retry=Retry(attempts=2, wait=0))
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return "sent"

    @gj.task(queue="reports")
    def report() -> None: ...

    flaky.enqueue()
    report.enqueue()
    [first] = drain(gj, "mail")
    assert (first.status, first.error_event) == ("retried", "retried")
    assert_enqueued(report, count=1)
    [second] = drain(gj, "-reports")
    assert (second.id, second.status, second.result) == (first.id, "succeeded", "sent")
    assert [j.task_name for j in drain(gj, "+reports,mail")] == [report.name]


def test_time_travel_runs_a_job_scheduled_a_day_ahead_without_sleeping(
    gj: GoodJob, database_url: str
) -> None:
    @gj.task
    def remind(user_id: int) -> int:
        return user_id

    tomorrow = gj.database.now() + dt.timedelta(days=1)
    job = remind.using(run_at=tomorrow).enqueue(7)
    later = remind.using(wait=dt.timedelta(days=3)).enqueue(8)
    assert drain(gj) == []
    assert drain(gj, now=dt.timedelta(hours=23)) == []

    [ran] = drain(gj, now=dt.timedelta(days=1, minutes=1))
    assert (ran.id, ran.status, ran.result) == (job.id, "succeeded", 7)
    # Its scheduled time is put back: the record says when it was scheduled for.
    assert gj.job(job.id).scheduled_at == tomorrow
    assert gj.job(later.id).status == "scheduled"

    [ran] = drain(gj, with_scheduled=True)
    assert (ran.id, ran.result) == (later.id, 8)
    # The claim itself is the workers' (the clock is the database's): nothing was left due.
    assert sql(database_url, "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL") == [
        (0,)
    ]

    with pytest.raises(ConfigurationError, match="aware datetime"):
        drain(gj, now=dt.datetime(2030, 1, 1))


def test_drain_leaves_paused_and_limited_jobs_waiting_with_their_schedule(gj: GoodJob) -> None:
    @gj.task(queue="held")
    def held() -> None: ...

    @gj.task(concurrency=Concurrency(key="one", perform_limit=1))
    def limited() -> None: ...

    gj.pause(queue="held")
    job = held.using(wait=3600).enqueue()
    scheduled_at = gj.job(job.id).scheduled_at
    assert drain(gj, with_scheduled=True) == []
    assert gj.job(job.id).scheduled_at == scheduled_at
    gj.unpause(queue="held")
    limited.enqueue()
    assert [j.task_name for j in drain(gj)] == [limited.name]


def test_drain_returns_the_jobs_whose_records_are_not_kept(make_app: type[GoodJob]) -> None:
    gj = make_app(preserve_job_records="never")

    @gj.task
    def answer() -> int:
        return 42

    answer.enqueue()
    [ran] = drain(gj)
    assert (ran.status, ran.result, ran.args) == ("succeeded", 42, [])
    assert gj.jobs() == []
