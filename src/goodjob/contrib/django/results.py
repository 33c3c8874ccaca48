"""Django's view of a goodjob job: a ``TaskResult`` built from the stored job and its attempts.

Statuses: a job waiting to run (scheduled, queued, or to be retried) is ``READY``, a running one
``RUNNING``, a succeeded one ``SUCCESSFUL`` and a discarded one ``FAILED``. Priorities are
mapped both ways by :func:`goodjob_priority` and :func:`django_priority`.
"""

from __future__ import annotations

from typing import Any

from goodjob.contrib.django.tasks_api import Task, TaskError, TaskResult, TaskResultStatus
from goodjob.records.jobs import Job

# TaskResultStatus("READY") rather than TaskResultStatus.READY: the same member, typed as one
# without Django's type stubs.
STATUSES = {
    "scheduled": TaskResultStatus("READY"),
    "queued": TaskResultStatus("READY"),
    "retried": TaskResultStatus("READY"),
    "running": TaskResultStatus("RUNNING"),
    "succeeded": TaskResultStatus("SUCCESSFUL"),
    "discarded": TaskResultStatus("FAILED"),
}


def goodjob_priority(priority: int) -> int:
    """Django runs larger priorities first (-100 to 100), goodjob smaller ones: Django's 100 is
    goodjob's -100, and Django's default 0 stays goodjob's default 0, so Django's tasks and
    goodjob's own share one order."""
    return -priority


def django_priority(priority: int) -> int:
    """The inverse of :func:`goodjob_priority`."""
    return -priority


def result_of(job: Job, task: Task[Any, Any], backend: str) -> TaskResult[Any]:
    """The TaskResult of ``job``, a job of Django's ``task``."""
    executions = job.executions
    # An attempt's execution row is written by its claim: a running attempt has one.
    worker_ids = [str(e.process_id) for e in executions if e.process_id is not None]
    errors = [
        TaskError(exception_class_path=_class_path(e.error), traceback=e.error_backtrace or e.error)
        for e in executions
        if e.error is not None
    ]
    if job.error is not None and not errors:  # ended without an attempt (cancelled, say)
        errors.append(TaskError(exception_class_path=_class_path(job.error), traceback=job.error))
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(job.id),
        status=STATUSES[job.status],
        enqueued_at=job.created_at,
        started_at=executions[0].performed_at if executions else job.performed_at,
        finished_at=job.finished_at,
        last_attempted_at=job.performed_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=backend,
        errors=errors,
        worker_ids=worker_ids,
    )
    if job.status == "succeeded":
        object.__setattr__(result, "_return_value", job.result)
    return result


def _class_path(error: str) -> str:
    """The import path of the error class of a stored error (``module.Type: message``; a
    builtin's is stored without its module)."""
    name = error.partition(":")[0].strip()
    return name if "." in name else f"builtins.{name}"
