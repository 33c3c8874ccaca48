"""Retries: the waits written to scheduled_at, attempt limits, the global default."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from goodjob import GoodJob, Retry


def attempt_once(gj: GoodJob) -> None:
    """Claim, run and record exactly one due job."""
    performer = gj.performer()
    with gj.tracker.register():
        assert performer.perform_one() is not None


def seconds_until_next_attempt(gj: GoodJob, job_id: object) -> float:
    job = gj.job(str(job_id))
    last = job.executions[-1].finished_at
    assert job.scheduled_at is not None
    assert last is not None
    return (job.scheduled_at - last).total_seconds()


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(30, [30, 30]), ("exponential", [2, 4]), ("polynomial", [3, 18]), (lambda n: 7 * n, [7, 14])],
)
def test_waits_are_written_to_scheduled_at(gj: GoodJob, wait: object, expected: list[int]) -> None:
    @gj.task(retry=Retry(attempts=3, wait=wait, jitter=0))  # type: ignore[arg-type]
    def fail() -> None:
        raise RuntimeError("again")

    job = fail.enqueue()
    waits = []
    for _ in expected:
        attempt_once(gj)
        assert gj.job(job.id).status == "retried"
        waits.append(seconds_until_next_attempt(gj, job.id))
        gj.reschedule_job(job.id)  # run it now instead of waiting
    assert waits == pytest.approx(expected, abs=0.05)
    attempt_once(gj)
    done = gj.job(job.id)
    assert (done.status, done.error_event, done.attempts) == ("discarded", "retry_stopped", 3)
    assert [e.error_event for e in done.executions] == ["retried", "retried", "retry_stopped"]


def test_jitter_stays_within_its_fraction(gj: GoodJob) -> None:
    @gj.task(retry=Retry(attempts=2, wait=100, jitter=0.5))
    def fail() -> None:
        raise RuntimeError

    job = fail.enqueue()
    attempt_once(gj)
    assert 100 <= seconds_until_next_attempt(gj, job.id) <= 150.05


def test_a_retried_job_keeps_its_row_and_error_until_it_succeeds(gj: GoodJob) -> None:
    calls: list[int] = []

    @gj.task(retry=Retry(attempts=5, wait=0, on=(ConnectionError,)))
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "done"

    job = flaky.enqueue()
    attempt_once(gj)
    between = gj.job(job.id)
    assert (between.status, between.error) == ("retried", "ConnectionError: try 1")
    gj.performer().drain()
    done = gj.job(job.id)
    assert (done.status, done.result, done.error, done.attempts) == ("succeeded", "done", None, 3)
    assert [e.error for e in done.executions] == [
        "ConnectionError: try 1",
        "ConnectionError: try 2",
        None,
    ]


def test_global_default_policy_and_task_override(make_app: type[GoodJob]) -> None:
    gj = make_app(retry=Retry(attempts=2, wait=0))

    @gj.task
    def uses_default() -> None:
        raise RuntimeError

    @gj.task(retry=Retry(attempts=3, wait=0))
    def overrides() -> None:
        raise RuntimeError

    a, b = uses_default.enqueue(), overrides.enqueue()
    gj.performer().drain()
    assert gj.job(a.id).attempts == 2
    assert gj.job(b.id).attempts == 3


def test_no_policy_means_no_retry(gj: GoodJob) -> None:
    @gj.task
    def fail() -> None:
        raise RuntimeError

    job = fail.enqueue()
    gj.performer().drain()
    assert (gj.job(job.id).status, gj.job(job.id).attempts) == ("discarded", 1)


def test_retry_on_unhandled_error_setting_retries_forever(make_app: type[GoodJob]) -> None:
    gj = make_app(retry_on_unhandled_error=True)

    @gj.task
    def fail() -> None:
        raise RuntimeError

    job = fail.enqueue()
    attempt_once(gj)
    attempt_once(gj)
    done = gj.job(job.id)
    assert (done.status, done.error_event, done.attempts) == ("retried", "unhandled", 2)
    assert done.finished_at is None
    assert done.scheduled_at is not None
    assert done.scheduled_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def test_a_retry_wakes_its_queue_with_the_time_it_is_due(gj: GoodJob, database_url: str) -> None:
    @gj.task(queue="mail", retry=Retry(attempts=2, wait=60, jitter=0))
    def fail() -> None:
        raise RuntimeError

    job = fail.enqueue()
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute('LISTEN "goodjob"')
        attempt_once(gj)
        [note] = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=1)]
    scheduled = gj.job(job.id).scheduled_at
    assert scheduled is not None
    assert note["queue"] == "mail"
    # computed in another statement a moment later: within a second of the stored time
    assert note["scheduled_at"] == pytest.approx(scheduled.timestamp(), abs=1)
