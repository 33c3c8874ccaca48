"""The outcome policy: how an attempt that raised is classified, and which rows are kept.

Pure functions of the error, the attempt number, the task's options and three settings, so the
rules read (and are tested) without a database or an app.
"""

from __future__ import annotations

from typing import Protocol

from goodjob.config import PreserveJobRecords
from goodjob.errors import JobCancelled, JobInterrupted
from goodjob.records.claims import Kind
from goodjob.retry import Retry


class TaskRules(Protocol):
    """What the policy reads of a task."""

    @property
    def retry(self) -> Retry | None: ...

    @property
    def discard_on(self) -> tuple[type[BaseException], ...]: ...


class OutcomePolicy:
    """The app's retry default, ``retry_on_unhandled_error`` and ``preserve_job_records``."""

    def __init__(
        self,
        default_retry: Retry | None = None,
        *,
        retry_on_unhandled_error: bool = False,
        preserve_job_records: PreserveJobRecords = "always",
    ) -> None:
        self.default_retry = default_retry
        self.retry_on_unhandled_error = retry_on_unhandled_error
        self.preserve_job_records = preserve_job_records

    def classify(
        self, task: TaskRules | None, attempt: int, error: BaseException
    ) -> tuple[Kind, str, float]:
        """(kind, error_event, wait) for attempt number ``attempt`` that raised ``error``;
        ``task`` is None when the worker does not know the job's task."""
        if isinstance(error, JobInterrupted):
            return "release", "interrupted", 0.0
        if isinstance(error, JobCancelled):
            # Cancelled (job.cancel()): recorded discarded already; this outcome is fenced out.
            return "discarded", "discarded", 0.0
        if task is not None and task.discard_on and isinstance(error, task.discard_on):
            return "discarded", "discarded", 0.0
        policy = (task.retry if task is not None else None) or self.default_retry
        if task is not None and policy is not None and policy.matches(error):
            if attempt < policy.attempts:
                return "retry", "retried", policy.delay(attempt)
            return "discarded", "retry_stopped", 0.0
        if task is not None and self.retry_on_unhandled_error:
            return "retry", "unhandled", 0.0
        return "discarded", "unhandled", 0.0

    def preserve(self, kind: Kind, error_event: str | None) -> bool:
        """Whether the job's row is kept once this outcome is recorded."""
        if self.preserve_job_records == "always" or kind in ("retry", "release"):
            return True
        if self.preserve_job_records == "never":
            return False
        return error_event == "unhandled"
