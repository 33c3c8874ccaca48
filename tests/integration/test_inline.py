"""Inline mode: jobs run in the enqueueing thread, errors reach the caller."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import psycopg
import pytest

from goodjob import GoodJob
from tests.helpers import wait_until


@pytest.fixture
def inline(make_app: type[GoodJob]) -> GoodJob:
    return make_app(execution_mode="inline")


def test_enqueue_runs_the_job_in_the_calling_thread(inline: GoodJob) -> None:
    threads: list[int] = []

    @inline.task
    def double(x: int) -> int:
        threads.append(threading.get_ident())
        return x * 2

    job = double.enqueue(21)
    assert threads == [threading.get_ident()]
    assert (job.status, job.result) == ("succeeded", 42)


def test_async_task_and_nested_enqueue(inline: GoodJob) -> None:
    order: list[str] = []

    @inline.task
    async def child() -> None:
        order.append("child")

    @inline.task
    def parent() -> None:
        order.append("parent")
        child.enqueue()
        order.append("parent done")

    parent.enqueue()
    assert order == ["parent", "child", "parent done"]


def test_unhandled_error_is_raised_to_the_caller_and_recorded(inline: GoodJob) -> None:
    @inline.task
    def boom() -> None:
        raise ValueError("inline boom")

    with pytest.raises(ValueError, match="inline boom"):
        boom.enqueue()
    [job] = inline.jobs()
    assert (job.status, job.error) == ("discarded", "ValueError: inline boom")


def test_scheduled_jobs_run_when_due_through_perform_inline(inline: GoodJob) -> None:
    ran: list[int] = []

    @inline.task
    def note(n: int) -> None:
        ran.append(n)

    job = note.using(run_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)).enqueue(1)
    assert ran == []
    assert job.status == "scheduled"
    wait_until(lambda: inline.perform_inline() == 1, timeout=5, message="the job to come due")
    assert ran == [1]


def test_transactional_enqueue_runs_after_commit(inline: GoodJob, database_url: str) -> None:
    ran: list[int] = []

    @inline.task
    def note(n: int) -> None:
        ran.append(n)

    with psycopg.connect(database_url) as conn, conn.transaction():
        note.using(connection=conn).enqueue(1)
        assert ran == []  # not committed: not run at enqueue
    assert inline.perform_inline() == 1
    assert ran == [1]


def test_inline_enqueue_from_async_code(inline: GoodJob) -> None:
    @inline.task
    async def child(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def scenario() -> tuple[object, object]:
        # a sync enqueue inside a running event loop, then the async face
        first = child.enqueue(1)
        second = await child.aenqueue(2)
        return first.result, second.result

    assert asyncio.run(scenario()) == (2, 3)


def test_inline_enqueue_runs_the_jobs_it_enqueued_and_nothing_else(
    make_app: type[GoodJob], inline: GoodJob
) -> None:
    """Issue 12: inline enqueue used to run every due job in the database."""
    ran: list[str] = []
    external = make_app()  # another app on the same database, enqueueing for real workers

    def note(what: str) -> None:
        ran.append(what)

    def parent() -> None:
        ran.append("parent")
        inline.tasks["note"].enqueue("child")

    for app in (inline, external):
        app.task(name="note")(note)
        app.task(name="parent")(parent)

    waiting = external.tasks["note"].enqueue("someone else's")
    inline.tasks["parent"].enqueue()
    assert ran == ["parent", "child"]  # its job, and what that job enqueued, in order
    assert inline.job(waiting.id).status == "queued"
