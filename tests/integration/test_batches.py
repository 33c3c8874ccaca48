"""Batches (issue 16): jobs grouped under one row, callbacks enqueued exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest

from goodjob import (
    Batch,
    BatchNotFound,
    ConfigurationError,
    GoodJob,
    SerializationError,
    current_job,
)
from tests.helpers import sql


class Boom(Exception):
    pass


def _tasks(gj: GoodJob) -> tuple[Any, Any, list[tuple[str, Batch]]]:
    """A job task that fails on ``fail=True`` (discarded at once), and a callback task that
    records what it was called with."""
    calls: list[tuple[str, Batch]] = []

    @gj.task(name="work", discard_on=Boom)
    def work(n: int, fail: bool = False) -> int:
        if fail:
            raise Boom(f"job {n} failed")
        return n

    @gj.task(name="callback", queue="callbacks")
    def callback(batch: Batch, event: str) -> None:
        calls.append((event, batch))

    return work, callback, calls


def _callback_jobs(url: str, batch_id: uuid.UUID) -> list[str]:
    rows = sql(
        url,
        "SELECT arguments->'args'->>1 FROM goodjob_jobs WHERE batch_callback_id = %s ORDER BY 1",
        (batch_id,),
    )
    return [row[0] for row in rows]


def test_callbacks_run_once_with_the_batch_when_every_job_succeeded(
    gj: GoodJob, database_url: str
) -> None:
    work, callback, calls = _tasks(gj)
    with gj.batch(
        on_finish=callback,
        on_success=callback,
        on_discard=callback,
        properties={"user_id": 7, "when": dt.date(2026, 12, 3)},
        description="three jobs",
    ) as batch:
        handles = [work.enqueue(n) for n in range(3)]
        assert sql(database_url, "SELECT count(*) FROM goodjob_jobs")[0][0] == 0  # not yet
    assert [job.id for job in batch.jobs] == [job.id for job in handles]
    assert all(job.batch_id == batch.id for job in batch.jobs)

    running = batch.refresh()
    assert running.status == "running"
    assert running.enqueued_at is not None
    assert running.counts == {"queued": 3}
    assert running.properties == {"user_id": 7, "when": dt.date(2026, 12, 3)}

    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["finish", "success"]
    assert all(b.id == batch.id and b.description == "three jobs" for _, b in calls)
    assert _callback_jobs(database_url, batch.id) == ["finish", "success"]
    queues = sql(
        database_url,
        "SELECT DISTINCT queue_name FROM goodjob_jobs WHERE batch_callback_id = %s",
        (batch.id,),
    )
    assert queues == [("callbacks",)]

    done = gj.batch_by_id(batch.id)
    assert done.status == "finished"
    assert done.succeeded
    assert done.counts == {"succeeded": 3}
    assert done.jobs_finished_at is not None
    assert done.finished_at is not None
    assert done.finished_at >= done.jobs_finished_at
    assert done.discarded_at is None
    assert gj.perform_inline() == 0  # nothing more to run: no callback twice


def test_the_first_discarded_job_runs_on_discard_and_the_batch_never_succeeds(
    gj: GoodJob, database_url: str
) -> None:
    work, callback, calls = _tasks(gj)
    with gj.batch(on_finish=callback, on_success=callback, on_discard=callback) as batch:
        work.enqueue(1, fail=True)
        work.enqueue(2, fail=True)
        work.enqueue(3)
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish"]
    done = batch.refresh()
    assert done.discarded_at is not None
    assert not done.succeeded
    assert done.status == "finished"
    assert done.counts == {"discarded": 2, "succeeded": 1}


def test_a_batch_without_jobs_finishes_when_its_block_exits(gj: GoodJob, database_url: str) -> None:
    _, callback, calls = _tasks(gj)
    with gj.batch(on_finish=callback, on_success=callback) as batch:
        pass
    assert _callback_jobs(database_url, batch.id) == ["finish", "success"]
    assert batch.refresh().jobs_finished_at is not None
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["finish", "success"]
    assert batch.refresh().status == "finished"


def test_a_batch_without_callbacks_is_finished_with_its_last_job(gj: GoodJob) -> None:
    work, _, _ = _tasks(gj)
    with gj.batch() as batch:
        work.enqueue(1)
    gj.perform_inline()
    done = batch.refresh()
    assert done.status == "finished"
    assert done.finished_at == done.jobs_finished_at


def test_an_error_in_the_block_inserts_nothing(gj: GoodJob, database_url: str) -> None:
    work, _, _ = _tasks(gj)
    batch = gj.batch()

    def change_mind() -> None:
        with batch:
            work.enqueue(1)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        change_mind()
    assert sql(database_url, "SELECT count(*) FROM goodjob_jobs")[0][0] == 0
    with pytest.raises(BatchNotFound):
        gj.batch_by_id(batch.id)
    with pytest.raises(ConfigurationError, match="not in the database"):
        batch.add([work.prepare(2)])


def test_a_rollback_of_the_callers_transaction_leaves_neither_batch_nor_jobs(
    gj: GoodJob, database_url: str
) -> None:
    work, callback, _ = _tasks(gj)
    with psycopg.connect(database_url) as conn:
        with gj.batch(on_finish=callback, connection=conn) as batch:
            work.enqueue(1)
            work.enqueue(2)
        assert conn.execute(
            "SELECT count(*) FROM goodjob_jobs WHERE batch_id = %s", (batch.id,)
        ).fetchone() == (2,)
        conn.rollback()
    assert sql(database_url, "SELECT count(*) FROM goodjob_jobs")[0][0] == 0
    assert sql(database_url, "SELECT count(*) FROM goodjob_batches")[0][0] == 0

    with psycopg.connect(database_url) as conn:
        with gj.batch(on_finish=callback, connection=conn) as kept:
            work.enqueue(3)
        conn.commit()
    assert kept.refresh().counts == {"queued": 1}


def test_retry_reopens_the_batch_and_its_callbacks_run_again_once(
    gj: GoodJob, database_url: str
) -> None:
    attempts: dict[int, int] = {}

    @gj.task(name="flaky", discard_on=Boom)
    def flaky(n: int) -> None:
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] == 1 and n == 2:
            raise Boom("first time")

    _, callback, calls = _tasks(gj)
    with gj.batch(on_finish=callback, on_success=callback, on_discard=callback) as batch:
        for n in range(3):
            flaky.enqueue(n)
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish"]
    assert batch.refresh().discarded_at is not None

    assert batch.refresh().retry() == 1
    reopened = batch.refresh()
    assert reopened.status == "running"
    assert reopened.discarded_at is None  # no discarded job left
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish", "finish", "success"]
    assert batch.refresh().succeeded
    assert gj.perform_inline() == 0


def test_jobs_added_later_reopen_a_finished_batch(gj: GoodJob, database_url: str) -> None:
    work, callback, calls = _tasks(gj)
    with gj.batch(on_finish=callback) as batch:
        work.enqueue(1)
    gj.perform_inline()
    assert [event for event, _ in calls] == ["finish"]
    added = batch.add([work.prepare(2), work.prepare(3)])
    assert [job.batch_id for job in added] == [batch.id, batch.id]
    assert batch.refresh().status == "running"
    gj.batch_by_id(batch.id).add([work.prepare(4)])
    gj.perform_inline()
    assert [event for event, _ in calls] == ["finish", "finish"]
    assert batch.refresh().counts == {"succeeded": 4}
    with pytest.raises(BatchNotFound):
        gj.add_to_batch(uuid.uuid4(), [work.prepare(5)])


def test_jobs_enqueued_by_a_batchs_job_join_it_and_hold_it_open(
    gj: GoodJob, database_url: str
) -> None:
    _, callback, calls = _tasks(gj)
    seen: list[int] = []

    @gj.task(name="fan_out")
    def fan_out(depth: int) -> None:
        ctx = current_job()
        assert ctx is not None
        assert ctx.batch_id is not None
        seen.append(depth)
        if depth < 2:
            fan_out.enqueue(depth + 1)
            # finishing now would be wrong: the child is queued

    with gj.batch(on_finish=callback) as batch:
        fan_out.enqueue(0)
    with gj.tracker.register():
        assert gj.performer().perform_one() is not None  # depth 0 only
    assert batch.refresh().counts == {"succeeded": 1, "queued": 1}
    assert batch.refresh().status == "running"
    assert calls == []
    gj.perform_inline()
    assert seen == [0, 1, 2]
    assert [event for event, _ in calls] == ["finish"]
    assert batch.refresh().counts == {"succeeded": 3}


def test_an_operator_discard_of_a_batchs_job_settles_the_batch(gj: GoodJob) -> None:
    work, callback, calls = _tasks(gj)
    with gj.batch(on_finish=callback, on_discard=callback) as batch:
        first = work.enqueue(1)
        second = work.enqueue(2)
    gj.discard_job(first.id)
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish"]
    assert gj.job(second.id).status == "succeeded"
    gj.job(first.id).refresh()
    gj.retry_job(first.id)  # its batch reopens
    assert batch.refresh().status == "running"
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish", "finish"]


def test_a_cancelled_waiting_job_counts_as_discarded(gj: GoodJob) -> None:
    work, callback, calls = _tasks(gj)
    with gj.batch(on_discard=callback, on_finish=callback) as batch:
        job = work.enqueue(1)
    job.cancel()
    gj.perform_inline()
    assert sorted(event for event, _ in calls) == ["discard", "finish"]
    assert batch.refresh().counts == {"discarded": 1}


def test_a_batchs_jobs_are_kept_even_when_finished_jobs_are_not(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(preserve_job_records=False)
    work, callback, calls = _tasks(gj)
    outside = work.enqueue(0)
    with gj.batch(on_finish=callback) as batch:
        work.enqueue(1)
    gj.perform_inline()
    assert [event for event, _ in calls] == ["finish"]
    assert batch.refresh().counts == {"succeeded": 1}
    assert not sql(database_url, "SELECT 1 FROM goodjob_jobs WHERE id = %s", (outside.id,))


def test_cleanup_keeps_an_unfinished_batchs_jobs_and_deletes_finished_batches(
    gj: GoodJob, database_url: str
) -> None:
    work, _, _ = _tasks(gj)
    with gj.batch() as open_batch:
        done = work.enqueue(1)
        work.enqueue(2, fail=True)
        waiting = work.enqueue(3)
    later = "UPDATE goodjob_jobs SET scheduled_at = now() + interval '1 hour' WHERE id = %s"
    sql(database_url, later, (waiting.id,))
    gj.perform_inline()  # jobs 1 and 2 (discarded); job 3 waits
    assert gj.cleanup_preserved_jobs(0, include_discarded=True) == 0
    assert gj.job(done.id).status == "succeeded"
    gj.reschedule_job(waiting.id)
    gj.perform_inline()
    assert open_batch.refresh().status == "finished"
    assert gj.cleanup_preserved_jobs(0, include_discarded=True) == 3
    with pytest.raises(BatchNotFound):
        gj.batch_by_id(open_batch.id)


def test_bad_batch_options_name_what_is_wrong(gj: GoodJob) -> None:
    work, callback, _ = _tasks(gj)

    @gj.task(name="elsewhere", queue="other")
    def elsewhere(batch: Batch, event: str) -> None: ...

    with pytest.raises(ConfigurationError, match="on_finish='nope'"):
        gj.batch(on_finish="nope")
    with pytest.raises(ConfigurationError, match="callback_queue="):
        gj.batch(on_finish=callback, on_discard=elsewhere)
    assert gj.batch(on_finish=callback, on_discard=elsewhere, callback_queue="cb").spec
    with pytest.raises(ConfigurationError, match="queue"):
        gj.batch(on_finish=callback, callback_queue="bad queue!")
    with pytest.raises(SerializationError, match="properties"):
        gj.batch(properties={"f": object()})
    with pytest.raises(ConfigurationError, match="properties"):
        gj.batch(properties=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="argument 0"), gj.batch():
        work.enqueue(object())
    assert gj.batch(on_finish="callback").spec.on_finish == "callback"


def test_batches_are_listed_newest_first_with_their_jobs(gj: GoodJob) -> None:
    work, _, _ = _tasks(gj)
    with gj.batch(description="first") as first:
        work.enqueue(1)
    with gj.batch(description="second") as second:
        work.enqueue(2)
        work.enqueue(3)
    listed = gj.batches()
    assert [b.id for b in listed] == [second.id, first.id]
    assert [b.total for b in listed] == [2, 1]
    assert [job.args for job in gj.batch_by_id(second.id).jobs()] == [[2], [3]]


def test_an_async_block_inserts_the_batch(gj: GoodJob) -> None:
    work, callback, _ = _tasks(gj)

    async def main() -> uuid.UUID:
        async with gj.batch(on_finish=callback) as batch:
            await work.aenqueue(1)
            await work.aenqueue(2)
        return batch.id

    assert gj.batch_by_id(asyncio.run(main())).counts == {"queued": 2}
