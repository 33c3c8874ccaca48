"""One bad job never stops a worker (issue 11).

Each hostile job runs in a real worker (a Capsule in this process, one thread), followed by 100
ordinary jobs: the hostile one must end in a visible state with a clear error, and the worker must
run the other 100. Before the fix, a NUL character jammed the completer, a deep result killed
the thread and deep arguments killed the claimer.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from goodjob import GoodJob, Retry
from goodjob.performer import MAX_BACKTRACE_CHARS, MAX_ERROR_CHARS
from tests.helpers import nested, sql, wait_until

FOLLOWERS = 100


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def chained(length: int) -> Exception:
    """An error with a chain of ``length`` causes."""
    error = ValueError("root")
    for n in range(length):
        try:
            raise ValueError(f"link {n}") from error
        except ValueError as exc:
            error = exc
    return error


def _raise(error: BaseException) -> Any:
    raise error


# name -> (the task's body, the status the job ends in, a fragment of its stored error)
HOSTILE: dict[str, tuple[Callable[[], Any], str, str]] = {
    "nul_in_result": (lambda: "a\x00b", "succeeded", "NUL character"),
    "surrogate_in_result": (lambda: {"k": "\udc80"}, "succeeded", "lone surrogate"),
    "nul_in_error": (lambda: _raise(ValueError("bad \x00 byte")), "discarded", "bad \\x00 byte"),
    "surrogate_in_error": (lambda: _raise(ValueError("bad \udc80")), "discarded", "bad \\udc80"),
    "deep_result": (lambda: nested(5_000), "succeeded", "nested more than 64 levels"),
    "huge_result": (lambda: "x" * 2_000_000, "succeeded", "max_payload_bytes"),
    "unserializable_result": (lambda: {1, 2}, "succeeded", "builtins.set"),
    "unprintable_error": (lambda: _raise(Unprintable()), "discarded", "could not be read"),
    "long_cause_chain": (lambda: _raise(chained(3_000)), "discarded", "link 2999"),
    "recursion_error": (lambda: (lambda f: f(f))(lambda f: f(f)), "discarded", "RecursionError"),
    "system_exit": (lambda: sys.exit(3), "discarded", "SystemExit: 3"),
    "huge_error": (lambda: _raise(ValueError("e" * 1_000_000)), "discarded", "more characters"),
}


def _run_behind_hostile(gj: GoodJob, hostile: Any) -> uuid.UUID:
    """Enqueue the hostile job, then FOLLOWERS ordinary ones; run a one-thread worker until
    all followers succeeded; return the hostile job's id."""

    @gj.task
    def follower(n: int) -> int:
        return n

    bad_id = hostile.enqueue().id
    followers = gj.enqueue_all([follower.prepare(n) for n in range(FOLLOWERS)])
    gj.start()
    try:
        wait_until(
            lambda: len(gj.jobs(status="succeeded", task=follower, limit=FOLLOWERS)) == FOLLOWERS,
            timeout=30,
            message="the jobs behind the hostile one to succeed",
        )
        wait_until(lambda: gj.job(bad_id).finished, timeout=10, message="the hostile job")
    finally:
        gj.shutdown()
    assert {gj.job(job.id).result for job in followers} == set(range(FOLLOWERS))
    return bad_id


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_job_ends_visibly_and_the_worker_runs_the_next_100(
    make_app: Any, name: str
) -> None:
    gj: GoodJob = make_app(max_threads=1, poll_interval=30)
    body, status, fragment = HOSTILE[name]
    hostile = gj.task(name=name)(body)

    bad = gj.job(_run_behind_hostile(gj, hostile))

    assert bad.status == status
    [execution] = bad.executions
    assert execution.error is not None
    assert fragment in execution.error or fragment in (execution.error_backtrace or "")
    assert len(execution.error) <= MAX_ERROR_CHARS + 100
    assert len(execution.error_backtrace or "") <= MAX_BACKTRACE_CHARS + 100
    if status == "succeeded":
        # The work is done and must not run again: the job succeeds without its result.
        assert (bad.result, execution.error_event) == (None, "result_refused")


def test_arguments_too_deep_to_decode_discard_the_job_and_the_worker_goes_on(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(max_threads=1, poll_interval=30)

    @gj.task(name="victim", retry=Retry(attempts=5, on=Exception))
    def victim(*args: Any) -> None: ...

    job = victim.enqueue()
    # goodjob's enqueue refuses such arguments, so write them as another client could.
    deep = '{"args": [' + "[" * 3_000 + "]" * 3_000 + '], "kwargs": {}}'  # json.dumps would fail
    sql(database_url, "UPDATE goodjob_jobs SET arguments = %s::jsonb WHERE id = %s", (deep, job.id))

    bad = gj.job(_run_behind_hostile(gj, victim))  # a second one, with no arguments, succeeds
    wait_until(lambda: gj.job(job.id).finished, timeout=10)
    broken = gj.job(job.id)
    assert broken.status == "discarded"  # not retried, whatever the task's policy says
    assert broken.error is not None
    assert "nested too deep to decode" in broken.error
    assert bad.status == "succeeded"


def test_a_retry_policy_whose_wait_raises_discards_the_job_instead_of_killing_the_thread(
    make_app: Any,
) -> None:
    gj: GoodJob = make_app(max_threads=1, poll_interval=30)

    def broken_wait(attempt: int) -> float:
        raise ZeroDivisionError("wait function")

    @gj.task(retry=Retry(attempts=3, wait=broken_wait))
    def flaky() -> None:
        raise ValueError("first")

    bad = gj.job(_run_behind_hostile(gj, flaky))
    assert bad.status == "discarded"
    assert bad.error is not None
    assert "wait function" in bad.error


def test_a_completer_write_that_keeps_failing_for_one_job_holds_back_no_other(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(max_threads=2, poll_interval=30)

    @gj.task
    def cursed() -> None: ...

    # A trigger makes the database refuse every write of this one job's executions: the
    # completer must record everybody else's outcomes, and not retry this one forever.
    cursed_job = cursed.using(queue="cursed").enqueue()
    sql(
        database_url,
        f"""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON goodjob_executions FOR EACH ROW
        WHEN (NEW.job_id = '{cursed_job.id}') EXECUTE FUNCTION refuse();
        """,
    )

    @gj.task
    def follower(n: int) -> int:
        return n

    gj.enqueue_all([follower.prepare(n) for n in range(FOLLOWERS)])
    gj.start()
    try:
        wait_until(
            lambda: len(gj.jobs(status="succeeded", task=follower, limit=FOLLOWERS)) == FOLLOWERS,
            timeout=30,
            message="every other job to be recorded",
        )
        more = gj.enqueue_all([follower.prepare(n) for n in range(10)])
        wait_until(lambda: all(gj.job(job.id).status == "succeeded" for job in more), timeout=10)
    finally:
        gj.shutdown()
    # Its claim was released when the worker stopped: it waits to run again, not lost.
    assert gj.job(cursed_job.id).status in ("queued", "retried")
