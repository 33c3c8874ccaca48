"""Middleware: the hooks around enqueue, perform and record, their order, and their failures."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from goodjob import (
    ClaimedJob,
    EnqueueRefused,
    GoodJob,
    JobRequest,
    Middleware,
    Outcome,
    Retry,
)
from goodjob.records import processes
from tests.helpers import wait_until

span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)


class Timing(Middleware):
    """The README's example: how long each attempt took, by task."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, int, str, float]] = []

    def around_perform(self, job: ClaimedJob, perform: Any) -> Outcome:
        started = time.perf_counter()
        outcome: Outcome = perform()
        self.timings.append(
            (job.task_name, job.attempt, outcome.kind, time.perf_counter() - started)
        )
        return outcome


class Journal(Middleware):
    """Notes every hook it sees, under its name, in one shared list."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal

    def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
        self.journal.append(f"{self.name}:enqueue:{len(requests)}")
        return requests

    def around_perform(self, job: ClaimedJob, perform: Any) -> Outcome:
        self.journal.append(f"{self.name}:before")
        token = span.set(self.name)  # what a tracing middleware does: the task must see it
        try:
            outcome: Outcome = perform()
        finally:
            span.reset(token)
        self.journal.append(f"{self.name}:after:{outcome.kind}")
        return outcome

    def after_record(self, outcomes: Sequence[Outcome]) -> None:
        self.journal.append(f"{self.name}:recorded:{len(outcomes)}")

    def on_error(self, error: BaseException, job: ClaimedJob | None) -> None:
        self.journal.append(f"{self.name}:error:{type(error).__name__}")

    def process_state(self) -> dict[str, Any]:
        return {"journal": self.name}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_hooks_run_in_order_around_sync_and_async_tasks(make_app: Any, kind: str) -> None:
    journal: list[str] = []
    gj: GoodJob = make_app(middleware=[Journal("outer", journal), Journal("inner", journal)])
    seen: list[str | None] = []

    if kind == "sync":

        @gj.task(name="work")
        def work() -> int:
            seen.append(span.get())
            return 1

    else:

        @gj.task(name="work")
        async def work() -> int:  # type: ignore[misc]
            await asyncio.sleep(0)
            seen.append(span.get())
            return 1

    gj.tasks["work"].enqueue()
    assert journal == ["outer:enqueue:1", "inner:enqueue:1"]
    journal.clear()
    gj.start()
    try:
        wait_until(lambda: "inner:recorded:1" in journal, message="the outcome recorded")
    finally:
        gj.shutdown()
    assert journal == [
        "outer:before",
        "inner:before",
        "inner:after:succeeded",
        "outer:after:succeeded",
        "outer:recorded:1",
        "inner:recorded:1",
    ]
    assert seen == ["inner"]  # the innermost middleware's context reaches the task


def test_the_timing_example_sees_each_attempt_and_its_outcome(make_app: Any) -> None:
    timing = Timing()
    gj: GoodJob = make_app(middleware=[timing])

    @gj.task(retry=Retry(attempts=2, wait=0, jitter=0))
    def flaky() -> None:
        from goodjob import current_job

        job = current_job()
        assert job is not None
        if job.attempt == 1:
            raise ConnectionError("first attempt fails")

    flaky.enqueue()
    assert gj.perform_inline() == 2
    assert [(name, attempt, kind) for name, attempt, kind, _ in timing.timings] == [
        (flaky.name, 1, "retry"),
        (flaky.name, 2, "succeeded"),
    ]
    assert all(seconds >= 0 for *_, seconds in timing.timings)


def test_before_enqueue_may_change_requests_or_refuse_the_batch(gj: GoodJob) -> None:
    class Tagging(Middleware):
        def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
            return [
                r._replace(options=dataclasses.replace(r.options, labels=("tagged",)))
                for r in requests
            ]

    class Gate(Middleware):
        def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
            if any(r.args == ("forbidden",) for r in requests):
                raise EnqueueRefused("no forbidden jobs")
            return requests

    app = GoodJob(gj.settings.database_url, middleware=[Tagging(), Gate()])
    try:

        @app.task
        def note(what: str) -> None: ...

        job = note.enqueue("fine")
        assert app.job(job.id).labels == ("tagged",)
        with pytest.raises(EnqueueRefused, match="no forbidden jobs"):
            app.enqueue_all([note.prepare("fine"), note.prepare("forbidden")])
        assert len(app.jobs()) == 1  # nothing of the refused batch
    finally:
        app.close()


def test_a_raising_hook_is_logged_and_loses_no_job(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []

    class Broken(Middleware):
        def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
            raise RuntimeError("enqueue hook")

        def around_perform(self, job: ClaimedJob, perform: Any) -> Outcome:
            raise RuntimeError("perform hook")

        def after_record(self, outcomes: Sequence[Outcome]) -> None:
            raise RuntimeError("record hook")

        def process_state(self) -> dict[str, Any]:
            raise RuntimeError("state hook")

    gj: GoodJob = make_app(middleware=[Broken(), Journal("after", journal)])
    ran: list[int] = []

    @gj.task
    def work(n: int) -> None:
        ran.append(n)

    with caplog.at_level(logging.ERROR, logger="goodjob.middleware"):
        jobs = [work.enqueue(n) for n in range(3)]
        gj.start()
        try:
            wait_until(lambda: all(gj.job(j.id).status == "succeeded" for j in jobs))
            gj.tracker.renew()  # writes the process row: the state hook runs and fails
        finally:
            gj.shutdown()
    assert sorted(ran) == [0, 1, 2]  # each job ran once, despite the broken hooks
    failures = {r.getMessage().split(".")[-1] for r in caplog.records}
    assert {"before_enqueue failed", "around_perform failed", "after_record failed"} <= failures
    # The middleware after the broken one still saw everything; on_error heard of each failure.
    assert journal.count("after:enqueue:1") == 3
    assert journal.count("after:after:succeeded") == 3
    assert "after:error:RuntimeError" in journal


def test_on_error_hears_of_job_errors_with_their_job(gj: GoodJob) -> None:
    heard: list[tuple[str, str | None]] = []

    class Reporter(Middleware):
        def on_error(self, error: BaseException, job: ClaimedJob | None) -> None:
            heard.append((type(error).__name__, job.task_name if job else None))

    app = GoodJob(gj.settings.database_url, middleware=[Reporter()])
    try:

        @app.task(name="fails")
        def fails() -> None:
            raise KeyError("missing")

        fails.enqueue()
        app.perform_inline()
    finally:
        app.close()
    assert heard == [("KeyError", "fails")]


def test_process_state_of_the_middleware_is_in_the_process_row(make_app: Any) -> None:
    gj: GoodJob = make_app(middleware=[Journal("stateful", [])])
    gj.start()
    try:
        [row] = processes.all_processes(gj.database)
        assert row.state["journal"] == "stateful"
        assert row.state["schedulers"][0]["queues"] == "*"
    finally:
        gj.shutdown()


def test_two_apps_in_one_process_each_report_their_own_capsule(make_app: Any) -> None:
    """Issue 12: the process state was one global registry, merged into every app's row."""
    mail: GoodJob = make_app(queues="mail:2")
    rest: GoodJob = make_app(queues="-mail:3")
    mail.start()
    rest.start()
    try:
        rows = {p.id: p.state for p in processes.all_processes(mail.database)}
        assert [s["queues"] for s in rows[mail.tracker.process_id]["schedulers"]] == ["mail"]
        assert [s["queues"] for s in rows[rest.tracker.process_id]["schedulers"]] == ["-mail"]
    finally:
        mail.shutdown()
        rest.shutdown()


def test_middleware_must_be_middleware() -> None:
    with pytest.raises(TypeError, match=r"is not a goodjob\.Middleware"):
        GoodJob("postgresql://unused/", middleware=[object()])  # type: ignore[list-item]


def test_a_hook_that_calls_perform_twice_runs_the_job_once(make_app: Any) -> None:
    runs = threading.Semaphore(0)

    class Twice(Middleware):
        def around_perform(self, job: ClaimedJob, perform: Any) -> Outcome:
            perform()
            outcome: Outcome = perform()
            return outcome

    gj: GoodJob = make_app(middleware=[Twice()])

    @gj.task
    def once() -> None:
        runs.release()

    once.enqueue()
    assert gj.perform_inline() == 1
    assert runs.acquire(timeout=0)
    assert not runs.acquire(timeout=0)
