"""The app: settings, database, registered tasks, and the entry points users call."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from goodjob.capsule_tracker import CapsuleTracker
from goodjob.config import Settings
from goodjob.context import current_job
from goodjob.cron import CronEntry, CronStatus, parse_cron
from goodjob.db import Database, foreign
from goodjob.db import migrate as migrations
from goodjob.db.database import is_async_connection
from goodjob.errors import ConfigurationError
from goodjob.ids import new_ids
from goodjob.job_locks import JobLocks
from goodjob.middleware import ErrorReporter, Middleware, MiddlewareChain, OnThreadError
from goodjob.options import Concurrency, JobRequest, TaskOptions
from goodjob.performer import Performer
from goodjob.policy import OutcomePolicy
from goodjob.records import batches as batch_records
from goodjob.records import concurrency as limits
from goodjob.records import cron_runs, enqueue, pauses
from goodjob.records import jobs as job_records
from goodjob.records.batches import Batch, BatchSpec, NewBatch
from goodjob.records.claims import ClaimSpec
from goodjob.records.jobs import Job, JobReader
from goodjob.retry import Retry
from goodjob.runtime import Capsule
from goodjob.task import ErrorHandler, P, R, Task, TaskRegistry

if TYPE_CHECKING:
    from goodjob.metrics import PrometheusMetrics


class GoodJob:
    """A goodjob app: create one, register tasks on it, point workers at it.

    Settings come from keyword arguments, then ``GOODJOB_*`` environment variables, then
    defaults (see :class:`goodjob.config.Settings`). With no database URL anywhere, an embedded
    Postgres is started on first use.

    The app assembles the parts and hands each what it uses: the database, the task registry
    (the resolver workers look tasks up in), the outcome policy, the middleware, the process's
    CapsuleTracker, the job locks of the advisory strategies, and the reader job handles use.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        retry: Retry | None = None,
        middleware: Sequence[Middleware] = (),
        cron: Mapping[str, Any] | None = None,
        on_thread_error: ErrorReporter | None = None,
        **settings: Any,
    ) -> None:
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"retry={retry!r}: pass a goodjob.Retry(...)")
        if on_thread_error is not None:
            # A middleware like any other, last: it hears what the others' hooks raised too.
            middleware = [*middleware, OnThreadError(on_thread_error)]
        self.default_retry = retry
        self.cron: tuple[CronEntry, ...] = parse_cron(cron)
        self._assemble(Settings.load(database_url=database_url, **settings), middleware, None)

    def _assemble(
        self,
        settings: Settings,
        middleware: Sequence[Middleware],
        tasks: TaskRegistry | None,
    ) -> None:
        self.settings = settings
        self.database = Database(settings)
        self.tasks = tasks if tasks is not None else TaskRegistry(self)
        self.tasks.owner = self
        self.given_middleware = tuple(middleware)  # what with_settings passes on
        self.metrics = _metrics(settings, self.database)
        if self.metrics is not None:
            middleware = [*middleware, self.metrics]
        self.middleware = MiddlewareChain(middleware)
        self.policy = OutcomePolicy(
            self.default_retry,
            retry_on_unhandled_error=settings.retry_on_unhandled_error,
            preserve_job_records=settings.preserve_job_records,
        )
        self.reader = JobReader(self.database)
        self.tracker = CapsuleTracker(self)
        advisory = settings.lock_strategy in ("advisory", "hybrid")
        self.job_locks = JobLocks(self.database) if advisory else None
        self._capsule: Capsule | None = None  # the async-mode capsule, when started
        self._schema_checked = False

    def with_settings(self, **changes: Any) -> GoodJob:
        """A new app with some settings changed, the same tasks and middleware, and parts of
        its own (database, tracker, locks). The tasks enqueue through the new app from then on,
        so a project's module-level tasks follow the settings its worker runs with (the CLI's
        flags)."""
        app = object.__new__(GoodJob)
        app.default_retry = self.default_retry
        app.cron = self.cron
        app._assemble(self.settings.replace(**changes), self.given_middleware, self.tasks)
        return app

    @property
    def execution_mode(self) -> str:
        """``external``, ``async`` or ``inline`` (the ``execution_mode`` setting)."""
        return self.settings.execution_mode

    def __repr__(self) -> str:
        return f"<GoodJob tasks={len(self.tasks)} mode={self.settings.execution_mode}>"

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
        discard_on: type[BaseException] | Sequence[type[BaseException]] = (),
        timeout: float | None = None,
        handle: ErrorHandler | None = None,
        concurrency: Concurrency | None = None,
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
        discard_on: type[BaseException] | Sequence[type[BaseException]] = (),
        timeout: float | None = None,
        handle: ErrorHandler | None = None,
        concurrency: Concurrency | None = None,
    ) -> Any:
        """Register a function as a task: ``@gj.task`` or ``@gj.task(queue="mail", ...)``.

        ``retry`` (a :class:`Retry`) says which errors are retried and how; ``discard_on`` lists
        errors that end the job at once; ``timeout`` interrupts an attempt after that many
        seconds (a :class:`JobTimeout` error); ``handle(error)`` is called first with any error
        the task raises and, unless it raises itself, the job succeeds with a ``handled`` error.
        ``concurrency`` (a :class:`Concurrency`) limits and throttles its jobs by key.
        """

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(function):
                raise ConfigurationError(f"@gj.task needs a function, not {function!r}")
            task = Task(
                self.tasks,
                function,
                name=name,
                options=TaskOptions(queue=queue, priority=priority, labels=tuple(labels)),
                retry=retry,
                # One error class or several (Task checks them).
                discard_on=discard_on if isinstance(discard_on, type) else tuple(discard_on),
                timeout=timeout,
                handle=handle,
                concurrency=concurrency,
            )
            return self.tasks.add(task)

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

    def enqueue_all(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> Sequence[Job]:
        """Insert many jobs in one transaction, all or nothing, waking each queue once. Returns
        their handles in the order of the requests, built when first read.

        With ``connection`` (the caller's psycopg connection, or a SQLAlchemy session or
        connection on psycopg) the jobs join the caller's transaction: they exist if and only if
        it commits, and workers hear of them on commit.
        """
        connection = foreign.unwrap(connection)
        if connection is not None and is_async_connection(connection):
            raise ConfigurationError("an AsyncConnection needs aenqueue() / aenqueue_all()")
        requests = list(requests)
        if not requests:
            return []
        if self.middleware:
            requests = self.middleware.before_enqueue(requests)
        building = batch_records.collecting.get()
        if building is not None:  # inside `with gj.batch(...)`: inserted when the block exits
            return building.collect(requests)
        ctx = current_job()
        if ctx is not None and ctx.batch_id is not None:  # a batch's job: its jobs join it
            return self._insert_into_batch(ctx.batch_id, requests, connection)
        self.check_schema()
        handles: Sequence[Job]
        if limits.keyed(requests):
            handles = limits.insert(self.database, requests, self.reader, connection)
        else:
            handles = enqueue.insert(self.database, requests, self.reader, connection)
        if self.settings.execution_mode == "inline" and connection is None:
            # Inline mode: run the jobs just enqueued (and what they enqueue), now, in this
            # thread, and hand back what happened. With the caller's connection they are not
            # committed yet: gj.perform_inline() after the commit.
            ids = [handle.id for handle in handles if handle.refused is None]
            self.perform_inline(ids)
            handles = [
                h if h.refused else job_records.get(self.database, h.id, reader=self.reader) or h
                for h in handles
            ]
        return handles

    async def aenqueue_all(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> Sequence[Job]:
        """:meth:`enqueue_all` for async code; ``connection`` may be an AsyncConnection (or a
        SQLAlchemy AsyncSession or AsyncConnection on psycopg)."""
        connection = await foreign.aunwrap(connection)
        if connection is None or not is_async_connection(connection):
            return await asyncio.to_thread(self.enqueue_all, list(requests), connection=connection)
        requests = list(requests)
        if not requests:
            return []
        if self.middleware:
            requests = self.middleware.before_enqueue(requests)
        building = batch_records.collecting.get()
        if building is not None:
            return building.collect(requests)
        ctx = current_job()
        if ctx is not None and ctx.batch_id is not None:
            raise ConfigurationError(
                "a batch's job cannot enqueue into its batch on an AsyncConnection:"
                " enqueue without connection=, or on a sync psycopg Connection"
            )
        await asyncio.to_thread(self.check_schema)
        if limits.keyed(requests):
            return await limits.ainsert(self.database, requests, self.reader, connection)
        return await enqueue.ainsert(self.database, requests, self.reader, connection)

    # -- batches ------------------------------------------------------------------------------

    def batch(
        self,
        *,
        on_finish: Task[Any, Any] | str | None = None,
        on_success: Task[Any, Any] | str | None = None,
        on_discard: Task[Any, Any] | str | None = None,
        properties: Mapping[str, Any] | None = None,
        description: str | None = None,
        callback_queue: str | None = None,
        callback_priority: int | None = None,
        connection: Any = None,
    ) -> NewBatch:
        """A new batch, for a ``with`` block: the jobs enqueued inside it are inserted with the
        batch when the block exits, in one transaction (the caller's with ``connection``).

        Callbacks are tasks called as ``callback(batch, event)``: ``on_finish`` once all its jobs
        finished, ``on_success`` once all succeeded, ``on_discard`` at the first discarded job.
        They run as jobs on ``callback_queue`` with ``callback_priority`` (by default the
        callbacks' own queue and priority, which must then agree).
        """
        callbacks = {
            "on_finish": self._callback("on_finish", on_finish),
            "on_success": self._callback("on_success", on_success),
            "on_discard": self._callback("on_discard", on_discard),
        }
        given = [task for task in callbacks.values() if task is not None]
        if callback_queue is None and given:
            callback_queue = _agreed("queue", {task.options.queue for task in given})
        if callback_priority is None and given:
            callback_priority = _agreed("priority", {task.options.priority for task in given})
        # Checked as a job's queue and priority are.
        TaskOptions(queue=callback_queue or "default", priority=callback_priority or 0)
        if description is not None and not isinstance(description, str):
            raise ConfigurationError(f"description={description!r}: pass text")
        connection = foreign.unwrap(connection)
        if connection is not None and is_async_connection(connection):
            raise ConfigurationError("gj.batch(connection=) needs a sync connection")
        spec = BatchSpec(
            id=new_ids(1)[0],
            description=description,
            properties=batch_records.dump_properties(properties, self.settings.max_payload_bytes),
            on_finish=_name(callbacks["on_finish"]),
            on_success=_name(callbacks["on_success"]),
            on_discard=_name(callbacks["on_discard"]),
            callback_queue=callback_queue,
            callback_priority=callback_priority,
        )
        return NewBatch(self, spec, connection)

    def _callback(self, option: str, task: Task[Any, Any] | str | None) -> Task[Any, Any] | None:
        if task is None or isinstance(task, Task):
            return task
        if isinstance(task, str) and task in self.tasks:
            return self.tasks[task]
        raise ConfigurationError(
            f"{option}={task!r}: pass a task (@gj.task) or the name of a registered one"
        )

    def create_batch(
        self,
        spec: BatchSpec,
        jobs: enqueue.NewJobs,
        *,
        connection: Any = None,
    ) -> Sequence[Job]:
        """Insert a batch made by :meth:`batch` and its jobs (``NewBatch`` calls this)."""
        self.check_schema()
        handles = batch_records.create(self.database, spec, jobs, self.reader, connection)
        if self.settings.execution_mode == "inline" and connection is None:
            self.perform_inline([h.id for h in handles if h.refused is None])
        return handles

    def add_to_batch(
        self,
        batch_id: uuid.UUID | str,
        requests: Iterable[JobRequest],
        *,
        connection: Any = None,
    ) -> Sequence[Job]:
        """Insert jobs into an existing batch (``Batch.add``); a finished one reopens."""
        requests = list(requests)
        if not requests:
            return []
        if self.middleware:
            requests = self.middleware.before_enqueue(requests)
        return self._insert_into_batch(_id(batch_id, "batch"), requests, connection)

    def _insert_into_batch(
        self, batch_id: uuid.UUID, requests: Sequence[JobRequest], connection: Any
    ) -> Sequence[Job]:
        connection = foreign.unwrap(connection)
        if connection is not None and is_async_connection(connection):
            raise ConfigurationError("adding to a batch needs a sync connection")
        self.check_schema()
        tagged = batch_records.joined(requests, batch_id)
        handles = batch_records.add(self.database, batch_id, tagged, self.reader, connection)
        if self.settings.execution_mode == "inline" and connection is None:
            self.perform_inline([h.id for h in handles if h.refused is None])
        return handles

    def batch_by_id(self, batch_id: uuid.UUID | str) -> Batch:
        """The batch with this id, fresh from the database (BatchNotFound if none)."""
        return batch_records.get(self.database, _id(batch_id, "batch"), owner=self)

    def batches(self, *, limit: int = batch_records.LIST_LIMIT) -> list[Batch]:
        """Batches, newest first."""
        return batch_records.find(self.database, limit=limit, owner=self)

    def batch_jobs(
        self, batch_id: uuid.UUID | str, *, limit: int = batch_records.JOBS_LIMIT
    ) -> list[Job]:
        """The jobs of a batch, oldest first."""
        return batch_records.jobs(self.database, _id(batch_id, "batch"), self.reader, limit)

    def retry_batch(self, batch_id: uuid.UUID | str) -> int:
        """Retry a batch's discarded jobs; how many (``Batch.retry``)."""
        return batch_records.retry(self.database, _id(batch_id, "batch"))

    # -- jobs ---------------------------------------------------------------------------------

    def job(self, job_id: uuid.UUID | str) -> Job:
        """The job with this id, fresh from the database."""
        return self.reader.job(_id(job_id, "job"))

    def jobs(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        task: str | Task[Any, Any] | None = None,
        label: str | None = None,
        limit: int = job_records.LIST_LIMIT,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first (without their executions)."""
        task_name = task.name if isinstance(task, Task) else task
        return job_records.find(
            self.database,
            status=status,
            queue=queue,
            task=task_name,
            label=label,
            limit=limit,
            reader=self.reader,
        )

    def retry_job(self, job_id: uuid.UUID | str) -> Job:
        """Run a discarded job again (now); JobStateError for any other state."""
        job_records.retry(self.database, _id(job_id, "job"))
        return self.job(job_id)

    def discard_job(self, job_id: uuid.UUID | str, *, force: bool = False) -> Job:
        """End an unfinished job as discarded. A running one is refused unless ``force``:
        then its worker's late completion is fenced out, though its code may still finish."""
        job_records.discard(self.database, _id(job_id, "job"), force=force)
        return self.job(job_id)

    def cancel_job(self, job_id: uuid.UUID | str) -> Job:
        """Cancel an unfinished job (see :meth:`Job.cancel`)."""
        return self.reader.cancel(_id(job_id, "job"))

    def reschedule_job(self, job_id: uuid.UUID | str) -> Job:
        """Make a job that waits to run (scheduled, queued, retried) due now."""
        job_records.reschedule(self.database, _id(job_id, "job"))
        return self.job(job_id)

    def destroy_job(self, job_id: uuid.UUID | str) -> None:
        """Delete a finished job and its executions."""
        job_records.destroy(self.database, _id(job_id, "job"))

    def cleanup_preserved_jobs(
        self,
        older_than: float | dt.timedelta | None = None,
        *,
        include_discarded: bool | None = None,
    ) -> int:
        """Delete finished jobs older than ``older_than`` (seconds or timedelta; default the
        ``cleanup_preserved_jobs_before_seconds_ago`` setting), in chunks; returns how many."""
        if older_than is None:
            older_than = self.settings.cleanup_preserved_jobs_before_seconds_ago
        if isinstance(older_than, dt.timedelta):
            older_than = older_than.total_seconds()
        if include_discarded is None:
            include_discarded = self.settings.cleanup_discarded_jobs
        return job_records.cleanup(
            self.database, older_than=float(older_than), include_discarded=include_discarded
        )

    def perform_inline(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        """Run due jobs now, in this thread (inline mode and tests): those of ``ids``, or every
        due job; returns how many ran.

        In inline mode a job's unhandled error is raised to the caller.
        """
        spec = ClaimSpec(advisory=self.job_locks is not None, only_ids=ids is not None)
        performer = self.performer(spec, raise_errors=self.settings.execution_mode == "inline")
        return performer.drain(ids or ())

    def performer(
        self,
        spec: ClaimSpec | None = None,
        *,
        pool: int = 0,
        raise_errors: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        shutdown: threading.Event | None = None,
        middleware: MiddlewareChain | None = None,
    ) -> Performer:
        """A performer claiming by ``spec`` (every queue by default), made from this app's
        parts: what a worker pool, ``perform_inline`` and tests run jobs with."""
        if spec is None:
            spec = ClaimSpec(advisory=self.job_locks is not None)
        return Performer(
            database=self.database,
            tracker=self.tracker,
            tasks=self.tasks,
            policy=self.policy,
            middleware=middleware if middleware is not None else self.middleware,
            job_locks=self.job_locks,
            max_payload_bytes=self.settings.max_payload_bytes,
            spec=spec,
            pool=pool,
            raise_errors=raise_errors,
            loop=loop,
            shutdown=shutdown,
            batches=self.batch_by_id,
        )

    # -- cron ---------------------------------------------------------------------------------

    def cron_request(self, entry: CronEntry) -> JobRequest:
        """The job a run of ``entry`` enqueues; ConfigurationError naming the entry when its
        task is not registered (workers check every entry before they start)."""
        task = self.tasks.resolve(entry.task_name)
        if task is None:
            raise ConfigurationError(
                f"cron entry {entry.key!r}: no task named {entry.task_name!r} is registered"
            )
        try:
            return task.using(**entry.options).prepare(*entry.args, **entry.kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(f"cron entry {entry.key!r}: {exc}") from None

    def _cron_entry(self, key: str) -> CronEntry:
        for entry in self.cron:
            if entry.key == key:
                return entry
        known = ", ".join(entry.key for entry in self.cron) or "none"
        raise ConfigurationError(f"no cron entry {key!r}; the entries are: {known}")

    def cron_entries(self) -> list[CronStatus]:
        """Every cron entry with its state: enabled, next run, last run enqueued."""
        self.check_schema()
        states = cron_runs.states(self.database)
        now = self.database.now()
        found = []
        for entry in self.cron:
            state = states.get(entry.key)
            enabled = (
                entry.enabled_by_default
                if state is None or state.enabled is None
                else state.enabled
            )
            found.append(
                CronStatus(
                    key=entry.key,
                    expression=entry.expression,
                    task_name=entry.task_name,
                    description=entry.description,
                    enabled=enabled,
                    next_at=entry.next_run(now),
                    last_at=state.last_at if state else None,
                )
            )
        return found

    def enable_cron_entry(self, key: str) -> None:
        """Enable a cron entry in every process, from its next run (no restart needed)."""
        self.check_schema()
        cron_runs.set_enabled(self.database, self._cron_entry(key).key, True)

    def disable_cron_entry(self, key: str) -> None:
        """Disable a cron entry in every process: its runs enqueue nothing until enabled."""
        self.check_schema()
        cron_runs.set_enabled(self.database, self._cron_entry(key).key, False)

    def run_cron_entry(self, key: str) -> Job:
        """Enqueue a run of a cron entry now, by hand; its job."""
        entry = self._cron_entry(key)
        request = self.cron_request(entry)
        self.check_schema()
        return self.job(cron_runs.enqueue_now(self.database, entry.key, request))

    # -- pauses -------------------------------------------------------------------------------

    def pause(
        self,
        *,
        queue: str | None = None,
        task: str | Task[Any, Any] | None = None,
        label: str | None = None,
    ) -> None:
        """Stop claiming the jobs of a queue, a task or a label (in every process, at once);
        enqueueing goes on, running jobs finish."""
        self.check_schema()
        kind, name = _paused_thing(queue, task, label)
        pauses.pause(self.database, kind, name)

    def unpause(
        self,
        *,
        queue: str | None = None,
        task: str | Task[Any, Any] | None = None,
        label: str | None = None,
    ) -> bool:
        """Undo :meth:`pause` and wake the workers; False when it was not paused."""
        self.check_schema()
        kind, name = _paused_thing(queue, task, label)
        return pauses.unpause(self.database, kind, name)

    def paused(self) -> dict[str, list[str]]:
        """What is paused: ``{"queue": [...], "task": [...], "label": [...]}``."""
        self.check_schema()
        return pauses.paused(self.database)

    # -- the process --------------------------------------------------------------------------

    def start(self) -> None:
        """Async mode: run a worker Capsule inside this process (threads; returns at once)."""
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
        if self.job_locks is not None:
            self.job_locks.close()
        self.database.close()


def _metrics(settings: Settings, database: Database) -> PrometheusMetrics | None:
    """The app's Prometheus metrics when ``enable_metrics`` is on; imported only then, so the
    core install needs no prometheus_client."""
    if not settings.enable_metrics:
        return None
    try:
        from goodjob.metrics import PrometheusMetrics
    except ImportError as exc:
        raise ConfigurationError(
            f"enable_metrics needs prometheus_client ({exc}): pip install 'goodjob[prometheus]'"
        ) from None
    return PrometheusMetrics(database)


def _id(value: uuid.UUID | str, what: str) -> uuid.UUID:
    """An id given by a caller (a CLI argument, a URL); a ConfigurationError naming it if it
    is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ConfigurationError(f"{what} id {value!r} is not a valid id (a UUID)") from None


def _name(task: Task[Any, Any] | None) -> str | None:
    return None if task is None else task.name


def _agreed(what: str, values: set[Any]) -> Any:
    """The one value the callbacks of a batch agree on; a ConfigurationError if they differ."""
    if len(values) > 1:
        raise ConfigurationError(
            f"the batch's callbacks have different {what}s ({', '.join(sorted(map(str, values)))}):"
            f" pass callback_{what}="
        )
    return values.pop()


def _paused_thing(
    queue: str | None, task: str | Task[Any, Any] | None, label: str | None
) -> tuple[str, str]:
    """The one (kind, name) of a pause call; ConfigurationError unless exactly one is given."""
    given = [
        (kind, name)
        for kind, name in (
            ("queue", queue),
            ("task", task.name if isinstance(task, Task) else task),
            ("label", label),
        )
        if name is not None
    ]
    if len(given) != 1:
        raise ConfigurationError("name one of queue=, task= or label=")
    kind, name = given[0]
    return kind, str(name)
