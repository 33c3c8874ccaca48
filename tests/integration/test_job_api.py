"""The job record API: reading jobs, operating on them (also racing a claim), awaiting results."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from goodjob import GoodJob, JobFailed, JobNotFound, JobStateError, WaitTimeout
from tests.helpers import sql, wait_until


def test_job_reads_status_through_the_lifecycle(gj: GoodJob) -> None:
    gate = threading.Event()

    @gj.task(labels=["x"])
    def blocked() -> str:
        gate.wait(10)
        return "ok"

    later = blocked.using(wait=3600).enqueue()
    assert gj.job(later.id).status == "scheduled"
    job = blocked.enqueue()
    assert gj.job(str(job.id)).status == "queued"  # ids may be given as text

    performer = gj.performer()
    with gj.tracker.register():
        [claimed] = performer.claim()
        assert gj.job(job.id).status == "running"
        runner = threading.Thread(target=lambda: performer.complete([performer.perform(claimed)]))
        runner.start()
        gate.set()
        runner.join(10)
    done = gj.job(job.id)
    assert (done.status, done.result, done.labels, done.attempts) == ("succeeded", "ok", ("x",), 1)
    with pytest.raises(JobNotFound):
        gj.job(uuid.uuid4())


def test_jobs_filters(gj: GoodJob) -> None:
    @gj.task(name="a")
    def a() -> None: ...

    @gj.task(name="b")
    def b() -> None:
        raise ValueError

    a.using(queue="q1", labels=["red"]).enqueue()
    a.using(queue="q2", labels=["red", "blue"]).enqueue()
    b.using(queue="q1").enqueue()
    b.using(wait=600).enqueue()
    gj.performer().drain()

    def names(**filters: object) -> list[tuple[str, str]]:
        return sorted((j.task_name, j.queue_name) for j in gj.jobs(**filters))  # type: ignore[arg-type]

    assert names(status="succeeded") == [("a", "q1"), ("a", "q2")]
    assert names(status="discarded") == [("b", "q1")]
    assert names(status="scheduled") == [("b", "default")]
    assert names(queue="q1") == [("a", "q1"), ("b", "q1")]
    assert names(task=b) == [("b", "default"), ("b", "q1")]
    assert names(label="blue") == [("a", "q2")]
    assert names(label="red", queue="q1") == [("a", "q1")]
    assert len(gj.jobs(limit=2)) == 2
    with pytest.raises(ValueError, match="status 'done'"):
        gj.jobs(status="done")


def test_retry_discard_reschedule_destroy(gj: GoodJob, database_url: str) -> None:
    @gj.task
    def fail() -> None:
        raise ValueError("nope")

    @gj.task
    def ok() -> None: ...

    failed = fail.enqueue()
    succeeded = ok.enqueue()
    gj.performer().drain()

    # retry: only a discarded job
    with pytest.raises(JobStateError, match="it is succeeded"):
        gj.retry_job(succeeded.id)
    assert gj.retry_job(failed.id).status == "retried"
    with pytest.raises(JobStateError, match="it is retried"):
        gj.retry_job(failed.id)

    # discard: an unfinished job
    discarded = gj.discard_job(failed.id)
    assert (discarded.status, discarded.error_event) == ("discarded", "discarded")
    with pytest.raises(JobStateError):
        gj.discard_job(succeeded.id)

    # reschedule: a waiting job becomes due now
    later = ok.using(wait=3600).enqueue()
    assert gj.reschedule_job(later.id).status == "queued"
    with pytest.raises(JobStateError):
        gj.reschedule_job(succeeded.id)

    # destroy: finished jobs only, executions with them
    with pytest.raises(JobStateError, match="only finished jobs"):
        gj.destroy_job(later.id)
    gj.destroy_job(succeeded.id)
    with pytest.raises(JobNotFound):
        gj.job(succeeded.id)
    with pytest.raises(JobNotFound):
        gj.destroy_job(succeeded.id)
    count = sql(
        database_url, "SELECT count(*) FROM goodjob_executions WHERE job_id = %s", [succeeded.id]
    )
    assert count[0][0] == 0


def test_discarding_a_running_job_needs_force_and_fences_the_worker(gj: GoodJob) -> None:
    @gj.task
    def work() -> str:
        return "late"

    job = work.enqueue()
    performer = gj.performer()
    with gj.tracker.register():
        [claimed] = performer.claim()
        with pytest.raises(JobStateError, match="it is running"):
            gj.discard_job(job.id)
        assert gj.discard_job(job.id, force=True).status == "discarded"
        # The worker's completion arrives after the discard: it changes nothing.
        assert performer.complete([performer.perform(claimed)]) == set()
    done = gj.job(job.id)
    assert (done.status, done.result) == ("discarded", None)
    assert done.executions[0].error_event == "discarded"
    assert done.executions[0].finished_at is not None


@pytest.mark.parametrize("operation", ["discard", "reschedule"])
def test_operations_racing_claims_never_both_win(gj: GoodJob, operation: str) -> None:
    """Each job is either taken by the operation or run by a worker, never both."""

    @gj.task
    def work(n: int) -> None: ...

    jobs = gj.enqueue_all([work.prepare(i) for i in range(40)])
    start = threading.Barrier(5)
    won: set[uuid.UUID] = set()
    refused: set[uuid.UUID] = set()

    def operator() -> None:
        start.wait()
        for job in jobs:
            try:
                if operation == "discard":
                    gj.discard_job(job.id)
                else:
                    gj.reschedule_job(job.id)
                won.add(job.id)
            except JobStateError:
                refused.add(job.id)

    claimed: list[uuid.UUID] = []
    lock = threading.Lock()

    def worker() -> None:
        performer = gj.performer()
        start.wait()
        while True:
            batch = performer.claim(1)
            if not batch:
                return
            with lock:
                claimed.extend(j.id for j in batch)
            performer.complete([performer.perform(j) for j in batch])

    with gj.tracker.register():
        threads = [threading.Thread(target=operator)] + [
            threading.Thread(target=worker) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(claimed) == len(set(claimed))  # no job claimed twice
    statuses = {j.id: gj.job(j.id).status for j in jobs}
    if operation == "discard":
        # a discarded job never ran; a job that ran was not discarded
        assert won.isdisjoint(claimed)
        assert won | set(claimed) == {j.id for j in jobs}
        assert all(statuses[i] == "discarded" for i in won)
        assert all(statuses[i] == "succeeded" for i in claimed)
    else:
        # a rescheduled job still runs exactly once; a refused one was running or done
        assert sorted(claimed) == sorted(j.id for j in jobs)
        assert all(status == "succeeded" for status in statuses.values())
    assert won | refused == {j.id for j in jobs}


def test_wait_returns_the_result_or_raises(gj: GoodJob) -> None:
    @gj.task
    def square(x: int) -> int:
        return x * x

    @gj.task
    def fail() -> None:
        raise ValueError("bad input")

    job, bad = square.enqueue(7), fail.enqueue()
    with pytest.raises(WaitTimeout, match="queued"):
        job.wait(timeout=0.1)
    worker = threading.Thread(target=gj.performer().drain)
    worker.start()
    assert job.wait(timeout=10) == 49
    with pytest.raises(JobFailed, match="ValueError: bad input") as info:
        bad.wait(timeout=10)
    assert info.value.job.status == "discarded"  # type: ignore[attr-defined]
    worker.join(10)


def test_await_result(gj: GoodJob) -> None:
    @gj.task
    async def greet(name: str) -> str:
        return f"hello {name}"

    job = greet.enqueue("ada")

    async def scenario() -> str:
        with pytest.raises(WaitTimeout):
            await job.await_result(timeout=0.05)
        runner = asyncio.create_task(asyncio.to_thread(gj.performer().drain))
        result = await job.await_result(timeout=10)
        await runner
        return result

    assert asyncio.run(scenario()) == "hello ada"
    wait_until(lambda: gj.job(job.id).status == "succeeded", message="the job to be recorded")


def test_with_settings_builds_a_new_app_and_the_tasks_follow_it(
    make_app: type[GoodJob], empty_database_url: str, database_url: str
) -> None:
    """Issue 12: the CLI swapped settings and database on a built app, so parts made before
    (the tracker) kept the old database. with_settings builds every part anew."""
    original = make_app()

    @original.task
    def ping() -> None: ...

    moved = original.with_settings(database_url=empty_database_url, schema="elsewhere")
    try:
        moved.migrate()
        assert original.settings.database_url == database_url  # unchanged
        assert moved.database is not original.database
        assert moved.tracker is not original.tracker
        assert moved.tasks is original.tasks  # the same tasks...
        job = ping.enqueue()  # ...now enqueued through the new app
        assert moved.job(job.id).task_name == ping.name
        with moved.tracker.register():
            moved.tracker.id_for_lock()
            rows = sql(empty_database_url, "SELECT count(*) FROM elsewhere.goodjob_processes")
        assert rows == [(1,)]
    finally:
        moved.close()


def test_trackers_do_not_keep_their_apps_alive(make_app: type[GoodJob]) -> None:
    import gc

    from goodjob import CapsuleTracker

    app = GoodJob("postgresql://unused/")
    tracker_id = id(app.tracker)
    del app
    gc.collect()
    assert tracker_id not in {id(t) for t in CapsuleTracker.instances}
