"""Fencing and interruption: a worker that lost its claim changes nothing; the re-run sees it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from goodjob import GoodJob, current_job
from goodjob.queues import parse_selection
from goodjob.records import processes
from goodjob.records.claims import ClaimSpec, Outcome
from goodjob.runtime import scheduler as scheduler_module
from goodjob.runtime.scheduler import VERIFY_AFTER, Scheduler
from tests.helpers import sql, wait_until


def two_workers(make_app: type[GoodJob]) -> tuple[GoodJob, GoodJob, list[dict[str, Any]]]:
    """Two apps (two process ids) with the same task; the task notes how it saw the job."""
    runs: list[dict[str, Any]] = []
    apps = (make_app(), make_app())
    for app in apps:

        def work(worker: str) -> str:
            ctx = current_job()
            assert ctx is not None
            runs.append({"attempt": ctx.attempt, "interrupted": ctx.interrupted})
            return worker

        app.task(name="work")(work)
    return apps[0], apps[1], runs


def lose_claim(gj: GoodJob, database_url: str, job_id: object) -> None:
    """Make ``gj``'s process look dead (its row gone) and sweep until the job's claim is
    released. Retried because ``gj``'s own heartbeat may re-create the row in between."""

    def released() -> bool:
        sql(database_url, "DELETE FROM goodjob_processes WHERE id = %s", [gj.tracker.process_id])
        processes.sweep(gj.database)
        rows = sql(database_url, "SELECT locked_by_id FROM goodjob_jobs WHERE id = %s", [job_id])
        return rows[0][0] is None

    wait_until(released, timeout=10, message="the sweep to release the dead process's claim")


def test_a_late_completion_is_fenced_out_and_the_newer_run_stands(
    make_app: type[GoodJob], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, runs = two_workers(make_app)
    job = a.tasks["work"].enqueue("b")  # arguments say "b": only B's run may be recorded
    performer_a, performer_b = a.performer(), b.performer()
    with a.tracker.register(), b.tracker.register():
        [claimed_a] = performer_a.claim()
        lose_claim(a, database_url, job.id)

        [claimed_b] = performer_b.claim()
        assert (claimed_b.id, claimed_b.attempt, claimed_b.interrupted) == (job.id, 2, True)
        # A finishes its (stale) run while B is still running: fenced out.
        outcome_a = performer_a.perform(claimed_a)
        assert performer_a.complete([outcome_a]) == set()
        fenced = [r for r in caplog.records if getattr(r, "action", None) == "fenced"]
        assert [getattr(r, "job_id", None) for r in fenced] == [str(job.id)]
        assert b.job(job.id).status == "running"
        assert b.job(job.id).locked_by_id == b.tracker.process_id

        assert performer_b.complete([performer_b.perform(claimed_b)]) == {job.id}
        # A's completion arriving even later changes nothing either.
        assert performer_a.complete([outcome_a]) == set()

    done = b.job(job.id)
    assert (done.status, done.result, done.attempts) == ("succeeded", "b", 2)
    assert [(e.attempt, e.error_event, e.process_id) for e in done.executions] == [
        (1, "interrupted", a.tracker.process_id),
        (2, None, b.tracker.process_id),
    ]
    assert done.executions[0].error is not None
    assert "JobInterrupted" in done.executions[0].error
    assert runs == [{"attempt": 1, "interrupted": False}, {"attempt": 2, "interrupted": True}]


def test_a_zombie_completion_after_release_leaves_the_job_queued(
    make_app: type[GoodJob], database_url: str
) -> None:
    a, b, runs = two_workers(make_app)
    job = a.tasks["work"].enqueue("a")
    performer_a = a.performer()
    with a.tracker.register():
        [claimed] = performer_a.claim()
        lose_claim(a, database_url, job.id)
        assert performer_a.complete([performer_a.perform(claimed)]) == set()
    assert a.job(job.id).status == "queued"  # not succeeded: the claim was gone

    # Re-run elsewhere: the open attempt is closed as interrupted, the task is told.
    assert b.performer().drain() == 1
    done = b.job(job.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert [e.error_event for e in done.executions] == ["interrupted", None]
    assert runs[-1] == {"attempt": 2, "interrupted": True}


def test_a_failed_outcome_is_fenced_too(make_app: type[GoodJob], database_url: str) -> None:
    a, b, _ = two_workers(make_app)

    @a.task(name="fails")
    def fails() -> None:
        raise ValueError("stale failure")

    b.task(name="fails")(lambda: "fine now")
    job = fails.enqueue()
    performer_a = a.performer()
    with a.tracker.register():
        [claimed] = performer_a.claim()
        lose_claim(a, database_url, job.id)
        b.performer().drain()
        outcome = performer_a.perform(claimed)
        assert outcome.error_event == "unhandled"
        assert performer_a.complete([outcome]) == set()
    done = b.job(job.id)
    assert (done.status, done.error, done.result) == ("succeeded", None, "fine now")


def test_a_job_released_at_shutdown_reruns_and_knows_it_was_interrupted(
    make_app: type[GoodJob],
) -> None:
    a, _, runs = two_workers(make_app)
    job = a.tasks["work"].enqueue("a")
    performer = a.performer()
    with a.tracker.register():
        [claimed] = performer.claim()
        # What the runtime records for a job it interrupts at its shutdown timeout.
        release = Outcome(
            claimed,
            "release",
            0.5,
            error="goodjob.JobInterrupted: shutdown",
            error_event="interrupted",
        )
        assert performer.complete([release]) == {job.id}
        between = a.job(job.id)
        assert (between.status, between.attempts, between.error_event) == (
            "retried",  # waiting for its next attempt, with the interruption as its error
            1,
            "interrupted",
        )
        assert between.executions[0].finished_at is not None
        assert performer.drain() == 1
    assert runs == [{"attempt": 2, "interrupted": True}]
    assert [e.error_event for e in a.job(job.id).executions] == ["interrupted", None]


def test_an_unstarted_claim_given_back_leaves_no_attempt(
    make_app: type[GoodJob], database_url: str
) -> None:
    """Jobs claimed ahead and never started (shutdown) are undone, not recorded as interrupted:
    the next claim is attempt 1 again, not interrupted, with one execution row."""
    a, b, runs = two_workers(make_app)
    job = a.tasks["work"].enqueue("b")
    performer_a, performer_b = a.performer(), b.performer()
    with a.tracker.register(), b.tracker.register():
        [claimed_a] = performer_a.claim()
        performer_a.unclaim([claimed_a])
        executions = "SELECT count(*) FROM goodjob_executions WHERE job_id = %s"
        assert sql(database_url, executions, [job.id])[0][0] == 0

        [claimed_b] = performer_b.claim()
        assert (claimed_b.id, claimed_b.attempt, claimed_b.interrupted) == (job.id, 1, False)
        assert performer_b.complete([performer_b.perform(claimed_b)]) == {job.id}
    assert runs == [{"attempt": 1, "interrupted": False}]
    assert sql(database_url, executions, [job.id])[0][0] == 1


def test_a_worker_whose_claims_were_swept_does_not_start_the_jobs_it_claimed_ahead(
    make_app: type[GoodJob], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: jobs claimed ahead wait in the pool's buffer. When the process's claims are
    swept away meanwhile (its row judged dead) and another worker runs those jobs, this worker
    must not run them as well: the fence would reject its records, not its side effects.

    A pool gives back what waited RETURN_AFTER, but a process that hung (or whose claimer is
    slow) can find jobs older than that in its buffer; with the give-back put off, the check
    before the start is what keeps them from running."""
    monkeypatch.setattr(scheduler_module, "RETURN_AFTER", 60.0)
    # However long the jobs: four claimed ahead of the thread while draining.
    monkeypatch.setattr(Scheduler, "_ahead", lambda self: 4 if self._draining else 0)
    gj = make_app(max_threads=1, poll_interval=30)
    other = make_app()
    gate = threading.Event()
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def note(name: str) -> None:
        with lock:
            runs[name] += 1

    def work(name: str) -> None:
        if name == "blocker":
            gate.wait(10)
        else:
            note(name)

    for app in (gj, other):
        app.task(name="quick")(work)

    quick = gj.tasks["quick"]
    gj.enqueue_all(
        [
            quick.using(queue="slow", priority=-10).prepare("blocker"),
            *(quick.using(queue="fast").prepare(f"q{n}") for n in range(4)),
        ]
    )
    gj.start()
    try:
        wait_until(
            lambda: (
                sql(
                    database_url, "SELECT count(*) FROM goodjob_jobs WHERE locked_by_id IS NOT NULL"
                )[0][0]
                == 5
            ),
            message="the blocker running and four jobs claimed ahead",
        )

        # The process is judged dead (its heartbeat expired) while its buffer waits: another
        # process's sweep releases its claims.
        def swept() -> bool:
            # Again until it holds: the process's own heartbeat may refresh the row in between.
            sql(
                database_url,
                "UPDATE goodjob_processes SET lock_type = NULL,"
                " updated_at = now() - interval '1 hour' WHERE id = %s",
                (gj.tracker.process_id,),
            )
            processes.sweep(other.database)
            held = "SELECT count(*) FROM goodjob_jobs WHERE locked_by_id = %s"
            return sql(database_url, held, (gj.tracker.process_id,))[0][0] == 0

        wait_until(swept, timeout=10, message="the sweep to release all five claims")
        assert other.performer(ClaimSpec(parse_selection("fast"))).drain() == 4
        [pool] = gj._capsule.schedulers
        wait_until(
            lambda: time.monotonic() - pool._pending[0].claimed_at > VERIFY_AFTER,
            message="the jobs claimed ahead to have waited",
        )
        gate.set()
        # Give the worker's thread the time to take (and, before the fix, run) the buffer.
        wait_until(lambda: all(s.idle for s in gj._capsule.schedulers), timeout=10)
    finally:
        gate.set()
        gj.shutdown()
    assert runs == Counter({f"q{n}": 1 for n in range(4)})


@pytest.mark.parametrize("preserve", [True, False], ids=["kept", "deleted"])
def test_a_retried_completion_whose_first_try_committed_counts_as_recorded(
    make_app: type[GoodJob], preserve: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection breaks after the completion's commit, before its reply: the completer
    tries again, the fence refuses (the job is no longer claimed), and the re-check finds the
    attempt recorded by this very process, so it is not reported as rejected."""
    a = make_app(preserve_job_records=preserve)
    a.task(name="work")(lambda worker: worker)
    job = a.tasks["work"].enqueue("a")
    performer = a.performer()
    with a.tracker.register():
        [claimed] = performer.claim()
        outcome = performer.perform(claimed)
        assert performer.complete([outcome]) == {job.id}  # committed; say the reply was lost
        assert performer.complete([outcome]) == set()  # a plain second try is fenced out
        caplog.clear()
        assert performer.complete([outcome], retry=True) == {job.id}
    assert not [r for r in caplog.records if getattr(r, "action", None) == "fenced"]


def test_the_re_check_does_not_claim_an_attempt_another_process_closed(
    make_app: type[GoodJob], database_url: str
) -> None:
    a, b, _ = two_workers(make_app)
    job = a.tasks["work"].enqueue("b")
    performer_a, performer_b = a.performer(), b.performer()
    with a.tracker.register(), b.tracker.register():
        [claimed_a] = performer_a.claim()
        lose_claim(a, database_url, job.id)
        [claimed_b] = performer_b.claim()  # closes A's attempt as interrupted
        outcome_a = performer_a.perform(claimed_a)
        assert performer_a.complete([outcome_a], retry=True) == set()
        performer_b.complete([performer_b.perform(claimed_b)])


def test_a_claim_whose_reply_was_lost_is_given_back_by_the_heartbeat(
    make_app: type[GoodJob], database_url: str
) -> None:
    """The connection breaks after a claim committed: the process holds jobs it does not know
    of. Once such a claim is three heartbeat periods old, the heartbeat gives it back; the jobs
    the process knows it holds stay claimed."""
    gj = make_app(process_stale_seconds=0.2, process_expired_seconds=5.0)
    gj.task(name="work")(lambda worker: worker)
    known, lost = gj.tasks["work"].enqueue("known"), gj.tasks["work"].enqueue("lost")
    performer = gj.performer()
    with gj.tracker.register():
        claimed = performer.claim(limit=2)
        assert {job.id for job in claimed} == {known.id, lost.id}
        gj.tracker.let_go([lost.id])  # as if the claim's reply had never come
        sql(
            database_url,
            "UPDATE goodjob_jobs SET locked_at = now() - interval '1 second'"
            " WHERE locked_by_id IS NOT NULL",
        )
        gj.tracker.renew()
        assert gj.job(lost.id).status == "queued"
        assert gj.job(lost.id).attempts == 0
        assert not gj.job(lost.id).executions
        assert gj.job(known.id).status == "running"
        [again] = performer.claim()
        assert (again.id, again.attempt) == (lost.id, 1)
        performer.complete([performer.perform(job) for job in claimed if job.id == known.id])
        performer.complete([performer.perform(again)])
