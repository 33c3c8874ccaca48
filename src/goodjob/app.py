"""The app: settings, database, registered tasks, and the entry points users call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, overload

from goodjob.capsule_tracker import CapsuleTracker
from goodjob.config import Settings
from goodjob.db import Database
from goodjob.db import migrate as migrations
from goodjob.db.database import is_async_connection
from goodjob.errors import ConfigurationError, JobNotFound
from goodjob.records import jobs as job_records
from goodjob.records.jobs import Job
from goodjob.retry import Retry
from goodjob.task import JobRequest, P, R, Task, TaskOptions

ExecutionMode = Literal["external", "async", "inline"]


class GoodJob:
    """A goodjob app: create one, register tasks on it, point workers at it.

    Settings come from keyword arguments, then ``GOODJOB_*`` environment variables, then
    defaults (see :class:`goodjob.config.Settings`). With no database URL anywhere, an embedded
    Postgres is started on first use.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        execution_mode: ExecutionMode = "external",
        retry: Retry | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings.load(database_url=database_url, **settings)
        if execution_mode not in ("external", "async", "inline"):
            raise ConfigurationError(
                f"execution_mode={execution_mode!r} is not valid: external, async or inline"
            )
        self.execution_mode: ExecutionMode = execution_mode
        self.default_retry = retry
        self.database = Database(self.settings)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._tracker: CapsuleTracker | None = None
        self._capsule: Any = None  # the async-mode Capsule (goodjob.runtime), when started
        self._schema_checked = False

    def __repr__(self) -> str:
        return f"<GoodJob tasks={len(self.tasks)} mode={self.execution_mode}>"

    # -- tasks --------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        labels: Sequence[str] = (),
        retry: Retry | None = None,
        discard_on: Sequence[type[BaseException]] = (),
        timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        labels: Sequence[str] = (),
        retry: Retry | None = None,
        discard_on: Sequence[type[BaseException]] = (),
        timeout: float | None = None,
    ) -> Any:
        """Register a function as a task: ``@gj.task`` or ``@gj.task(queue="mail", ...)``."""

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            task = Task(
                self,
                function,
                name=name,
                options=TaskOptions(queue=queue, priority=priority, labels=tuple(labels)),
                retry=retry,
                discard_on=tuple(discard_on),
                timeout=timeout,
            )
            existing = self.tasks.get(task.name)
            if existing is not None and existing.fn is not function:
                raise ConfigurationError(
                    f"two tasks are named {task.name!r}; give one of them name=..."
                )
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    # -- the schema ---------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied."""
        applied = migrations.migrate(self.database)
        self._schema_checked = True
        return applied

    def check_schema(self) -> None:
        """Raise SchemaNotMigrated unless the database is migrated (checked once per app)."""
        if not self._schema_checked:
            migrations.check(self.database)
            self._schema_checked = True

    # -- enqueueing ---------------------------------------------------------------------------

    def enqueue_all(self, requests: Iterable[JobRequest], *, connection: Any = None) -> list[Job]:
        """Insert many jobs in one statement, with one NOTIFY per queue.

        With ``connection`` (the caller's psycopg connection) the jobs join the caller's
        transaction: they exist if and only if it commits, and workers hear of them on commit.
        """
        new_jobs = [request.to_new_job() for request in requests]
        if not new_jobs:
            return []
        self.check_schema()
        self.database.execute("jobs_insert", job_records.insert_params(new_jobs), conn=connection)
        handles = [self._handle(job) for job in new_jobs]
        if self.execution_mode == "inline" and connection is None:
            self.perform_inline()
        return handles

    async def aenqueue_all(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> list[Job]:
        """:meth:`enqueue_all` for async code; ``connection`` may be an AsyncConnection."""
        if connection is None or not is_async_connection(connection):
            return await asyncio.to_thread(self.enqueue_all, list(requests), connection=connection)
        new_jobs = [request.to_new_job() for request in requests]
        if new_jobs:
            await asyncio.to_thread(self.check_schema)
            await self.database.aexecute(
                "jobs_insert", job_records.insert_params(new_jobs), connection
            )
        return [self._handle(job) for job in new_jobs]

    def _handle(self, new: job_records.NewJob) -> Job:
        return Job(
            id=new.id,
            task_name=new.task_name,
            queue_name=new.queue_name,
            priority=new.priority,
            arguments=new.arguments,
            status="scheduled" if new.run_at or new.wait > 0 else "queued",
            scheduled_at=new.run_at,
            created_at=None,
            labels=new.labels,
        )

    # -- jobs ---------------------------------------------------------------------------------

    def job(self, job_id: uuid.UUID | str) -> Job:
        """The job with this id, fresh from the database."""
        job_id = uuid.UUID(str(job_id))
        job = job_records.get(self.database, job_id)
        if job is None:
            raise JobNotFound(f"no job has id {job_id}")
        return job

    def perform_inline(self) -> int:
        """Run every due job now, in this thread (inline mode and tests); returns how many."""
        from goodjob.performer import Performer

        return Performer(self, raise_errors=self.execution_mode == "inline").drain()

    # -- the process --------------------------------------------------------------------------

    @property
    def tracker(self) -> CapsuleTracker:
        """This process's CapsuleTracker for this app."""
        if self._tracker is None:
            self._tracker = CapsuleTracker(self)
        return self._tracker

    def start(self) -> None:
        """Async mode: run a worker Capsule inside this process (threads; returns at once)."""
        from goodjob.runtime import Capsule

        if self._capsule is None or self._capsule.stopped:
            capsule = Capsule(self)
            capsule.start()
            self._capsule = capsule

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the Capsule started by :meth:`start` (``timeout`` overrides shutdown_timeout)."""
        capsule, self._capsule = self._capsule, None
        if capsule is not None:
            capsule.shutdown(timeout)

    def close(self) -> None:
        """Close the app's connections."""
        self.database.close()
