"""Test helpers: what a test's code enqueued, and running it now, in the test's thread.

::

    from goodjob.testing import assert_enqueued, drain, refute_enqueued

    signup("ada@example.com")                       # code under test enqueues a job
    assert_enqueued(send_welcome, args=["ada@example.com"], queue="mail")
    [job] = drain(gj)                               # runs it here; returns how it ended
    assert job.status == "succeeded"

``drain(gj, now=timedelta(days=1))`` runs what is due within a day, without sleeping. The claim
compares scheduled times with the database's clock, and a test cannot move that clock; so drain
moves each job it runs from ahead to now just before claiming it, and puts its scheduled time
back once it is recorded. The claim statement is the workers' own, unchanged: production pays
nothing for this.

The pytest plugin (``goodjob.testing.pytest_plugin``, loaded by pytest's entry point) gives each
test an app on a database of its own: the ``goodjob_app`` fixture.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from goodjob.app import GoodJob
from goodjob.errors import ConfigurationError, JobNotFound
from goodjob.queues import parse_selection
from goodjob.records.claims import ClaimSpec, Outcome
from goodjob.records.jobs import Job
from goodjob.task import Task

__all__ = ["assert_enqueued", "drain", "enqueued_jobs", "refute_enqueued"]

_ANY: Any = object()  # a filter left out matches everything
_FAR_AHEAD = dt.datetime.max.replace(tzinfo=dt.UTC)


def enqueued_jobs(
    target: Task[Any, Any] | GoodJob,
    *,
    args: Sequence[Any] = _ANY,
    kwargs: dict[str, Any] = _ANY,
    queue: str | None = None,
) -> list[Job]:
    """The jobs waiting to run (scheduled, queued, or to be retried), oldest first: of a task,
    or of every task of an app; with these exact ``args`` and ``kwargs`` and on ``queue`` when
    given."""
    app, task_name = _target(target)
    app.check_schema()
    rows = app.database.execute("testing_waiting", {"task": task_name, "queue": queue})
    jobs = [Job.from_row(row, (), app.reader) for row in rows]
    return [
        job
        for job in jobs
        if (args is _ANY or job.args == list(args)) and (kwargs is _ANY or job.kwargs == kwargs)
    ]


def assert_enqueued(
    task: Task[Any, Any],
    *,
    args: Sequence[Any] = _ANY,
    kwargs: dict[str, Any] = _ANY,
    queue: str | None = None,
    count: int | None = None,
) -> list[Job]:
    """Fail unless jobs of ``task`` matching the filters wait to run (exactly ``count`` of
    them, when given); returns them."""
    found = enqueued_jobs(task, args=args, kwargs=kwargs, queue=queue)
    if (count is None and not found) or (count is not None and len(found) != count):
        wanted = "a job" if count is None else f"{count} job{'s' * (count != 1)}"
        raise AssertionError(
            f"expected {wanted} of {task.name}{_filters(args, kwargs, queue)}, found"
            f" {len(found)}; waiting for it: {_listing(enqueued_jobs(task))}"
        )
    return found


def refute_enqueued(
    task: Task[Any, Any],
    *,
    args: Sequence[Any] = _ANY,
    kwargs: dict[str, Any] = _ANY,
    queue: str | None = None,
) -> None:
    """Fail if a job of ``task`` matching the filters waits to run."""
    found = enqueued_jobs(task, args=args, kwargs=kwargs, queue=queue)
    if found:
        raise AssertionError(
            f"expected no job of {task.name}{_filters(args, kwargs, queue)}, found"
            f" {len(found)}: {_listing(found)}"
        )


def drain(
    app: GoodJob,
    queues: str = "*",
    *,
    with_scheduled: bool = False,
    now: dt.datetime | dt.timedelta | None = None,
    recursive: bool = True,
) -> list[Job]:
    """Run the due jobs of ``queues`` (one pool's queue string: ``"*"``, ``"mail,sms"``,
    ``"-mail"``, ``"+urgent,default"``) one by one in this thread, in the order workers would
    claim them; returns each job as it ended, in the order they ran.

    ``with_scheduled`` runs jobs scheduled for any time too; ``now`` (a datetime, or a
    timedelta added to the database's clock) runs those scheduled up to then. ``recursive``
    also runs the jobs these jobs enqueue, when due; without it only the jobs waiting when
    drain began run. Each job runs at most once per drain: one that fails and is retried waits
    for the next drain. A job's error does not stop the drain: it is recorded, as a worker
    would, and its job returned with the others. Jobs paused or held back by a concurrency
    limit stay waiting.
    """
    selection = parse_selection(queues)
    until = _until(app, with_scheduled, now)
    params: dict[str, Any] = {
        "until": until,
        "mode": selection.mode,
        "queues": list(selection.names),
        "done": [],
        "only": None,
    }
    if not recursive:
        params["only"] = [row["id"] for row in _next(app, params, limit=None)]
    performer = app.performer(ClaimSpec(advisory=app.job_locks is not None, only_ids=True))
    ran: list[Job] = []
    with app.tracker.register():
        while rows := _next(app, params, limit=1):
            job_id = rows[0]["id"]
            params["done"].append(job_id)
            moved_to = None
            if rows[0]["ahead"]:
                moved = app.database.execute("testing_make_due", {"id": job_id})
                moved_to = moved[0]["scheduled_at"] if moved else None
            try:
                outcome = performer.perform_one([job_id])
            finally:
                if moved_to is not None:
                    app.database.run(
                        "testing_restore_schedule",
                        {
                            "id": job_id,
                            "scheduled_at": rows[0]["scheduled_at"],
                            "moved_to": moved_to,
                        },
                    )
            if outcome is not None:  # None: paused, or over a concurrency limit
                ran.append(_ended(app, outcome))
    return ran


def _next(app: GoodJob, params: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    """The next ``limit`` jobs drain runs (every one for None: LIMIT NULL is no limit)."""
    app.check_schema()
    return app.database.execute("testing_drain_next", {**params, "limit": limit})


def _until(
    app: GoodJob, with_scheduled: bool, now: dt.datetime | dt.timedelta | None
) -> dt.datetime | None:
    """The scheduled time up to which drain runs jobs; None for the database's now."""
    if with_scheduled:
        return _FAR_AHEAD
    if now is None:
        return None
    if isinstance(now, dt.timedelta):
        return app.database.now() + now
    if isinstance(now, dt.datetime) and now.utcoffset() is not None:
        return now
    raise ConfigurationError(f"now={now!r}: pass an aware datetime or a timedelta")


def _ended(app: GoodJob, outcome: Outcome) -> Job:
    """The job of ``outcome`` as recorded; built from the outcome when its row is not kept
    (``preserve_job_records``)."""
    try:
        return app.job(outcome.job.id)
    except JobNotFound:
        claimed = outcome.job
        return Job(
            id=claimed.id,
            task_name=claimed.task_name,
            queue_name=claimed.queue_name,
            priority=claimed.priority,
            status="succeeded" if outcome.kind == "succeeded" else "discarded",
            arguments=json.loads(claimed.arguments),
            scheduled_at=claimed.scheduled_at,
            created_at=None,
            error=outcome.error if outcome.kind != "succeeded" else None,
            error_event=outcome.error_event,
            executions_count=claimed.attempt,
            labels=claimed.labels,
            raw_result=json.loads(outcome.result) if outcome.result else None,
        )


def _target(target: Task[Any, Any] | GoodJob) -> tuple[GoodJob, str | None]:
    if isinstance(target, Task):
        owner = target.registry.owner
        if not isinstance(owner, GoodJob):
            raise ConfigurationError(f"{target!r} belongs to no goodjob.GoodJob app")
        return owner, target.name
    if isinstance(target, GoodJob):
        return target, None
    raise ConfigurationError(f"{target!r}: pass a task (@gj.task) or a goodjob.GoodJob app")


def _filters(args: Any, kwargs: Any, queue: str | None) -> str:
    given = [
        f"{name}={value!r}"
        for name, value in (("args", args), ("kwargs", kwargs), ("queue", queue))
        if value is not _ANY and value is not None
    ]
    return f" with {', '.join(given)}" if given else ""


def _listing(jobs: Sequence[Job]) -> str:
    if not jobs:
        return "none"
    return "; ".join(
        f"{job.id} {job.status} queue={job.queue_name!r} args={job.args!r}"
        + (f" kwargs={job.kwargs!r}" if job.kwargs else "")
        for job in jobs
    )
