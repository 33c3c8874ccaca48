"""``GoodJobBackend``: Django's tasks stored and run by goodjob, in Django's own database.

Every enqueue runs on Django's connection to the backend's database (``OPTIONS["database"]``,
default ``"default"``), which must be PostgreSQL through psycopg 3: inside
``transaction.atomic()`` the job is part of Django's transaction, so a rollback leaves no job
and the commit wakes the workers (goodjob's NOTIFY is transactional); there is no second
connection, and no ``on_commit`` window in which a crash loses the job. Results are read on the
same connection. Workers (``manage.py goodjob_worker``) reach that database through goodjob's
own pool, with the connection parameters Django uses.

A job's task name is the Django task's import path; a worker imports the task by it. The other
``OPTIONS`` are the keyword arguments of :class:`goodjob.GoodJob` (``max_threads``, ``retry``,
``middleware``...).
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from goodjob.app import GoodJob
from goodjob.context import current_job
from goodjob.contrib.django.results import django_priority, goodjob_priority, result_of
from goodjob.contrib.django.tasks_api import (
    BaseTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)
from goodjob.db import foreign
from goodjob.db.database import is_connection
from goodjob.errors import ConfigurationError
from goodjob.options import TaskOptions
from goodjob.performer import format_backtrace
from goodjob.records import jobs as job_records
from goodjob.task import Task as GoodJobTask


class GoodJobBackend(BaseTaskBackend):
    """A Django Tasks backend on goodjob: ``TASKS = {"default": {"BACKEND":
    "goodjob.contrib.django.GoodJobBackend", "QUEUES": [...], "OPTIONS": {...}}}``."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(params.get("OPTIONS", {}))
        self.database = options.pop("database", DEFAULT_DB_ALIAS)
        if "database_url" in options:
            raise ConfigurationError(
                f"TASKS[{alias!r}]['OPTIONS']['database_url']: the goodjob backend uses the"
                " database of DATABASES[OPTIONS['database']] (default 'default'), so that jobs"
                " join Django's transactions; name another alias there instead"
            )
        self._settings = options
        self._goodjob: GoodJob | None = None
        self._lock = threading.Lock()

    # -- the goodjob app ----------------------------------------------------------------------

    @property
    def goodjob(self) -> GoodJob:
        """The goodjob app of this backend (workers run it; ``goodjob.testing.drain`` takes it).
        Made on first use, from Django's database settings as they are then (a test run's
        database included)."""
        if self._goodjob is None:
            with self._lock:
                if self._goodjob is None:
                    params = connections[self.database].get_connection_params()
                    app = GoodJob(foreign.conninfo(params), **self._settings)
                    app.tasks.find = self._find
                    self._goodjob = app
        return self._goodjob

    def _find(self, name: str) -> GoodJobTask[Any, Any] | None:
        """The goodjob task that runs the Django task at import path ``name`` (a worker
        resolving a job), or None when there is no such task of this backend."""
        try:
            task = import_string(name)
        except ImportError:
            return None
        if not isinstance(task, Task) or task.backend != self.alias:
            return None
        return self._runner(task)

    def _goodjob_task(self, task: Task[Any, Any]) -> GoodJobTask[Any, Any]:
        registered = self.goodjob.tasks.get(task.module_path)
        if registered is not None:
            return registered
        return self.goodjob.tasks.add(self._runner(task))

    def _runner(self, task: Task[Any, Any]) -> GoodJobTask[Any, Any]:
        """A goodjob task that runs ``task`` as Django would: its context when it takes one,
        the task_started and task_finished signals, a return value normalized as JSON."""
        run: Callable[..., Any]
        if inspect.iscoroutinefunction(task.func):

            async def run(*args: Any, **kwargs: Any) -> Any:
                result = await sync_to_async(self._started)(task, args, kwargs)
                try:
                    call_args = (
                        (TaskContext(task_result=result), *args) if task.takes_context else args
                    )
                    value = normalize_json(await task.func(*call_args, **kwargs))
                except BaseException as error:
                    await sync_to_async(self._finished)(result, error=error)
                    raise
                await sync_to_async(self._finished)(result, value=value)
                return value

        else:

            def run(*args: Any, **kwargs: Any) -> Any:
                _tidy_connections()
                try:
                    result = self._started(task, args, kwargs)
                    try:
                        context = (TaskContext(task_result=result),) if task.takes_context else ()
                        value = normalize_json(task.func(*context, *args, **kwargs))
                    except BaseException as error:
                        self._finished(result, error=error)
                        raise
                    self._finished(result, value=value)
                    return value
                finally:
                    _tidy_connections()

        options = TaskOptions(queue=task.queue_name, priority=goodjob_priority(task.priority))
        return GoodJobTask(self.goodjob.tasks, run, name=task.module_path, options=options)

    def _started(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """The running job's TaskResult (for its context and the signals); sends task_started."""
        ctx = current_job()
        if ctx is None:
            raise RuntimeError("a goodjob task of Django's ran outside a job")
        job = self.goodjob.job(ctx.id)
        result = result_of(job, self._as_stored(task, job), self.alias)
        object.__setattr__(result, "status", TaskResultStatus("RUNNING"))
        task_started.send(sender=type(self), task_result=result)
        return result

    def _finished(
        self, result: TaskResult[Any], *, value: Any = None, error: BaseException | None = None
    ) -> None:
        """Sends task_finished for one attempt: SUCCESSFUL, or FAILED with its error."""
        object.__setattr__(result, "finished_at", timezone.now())
        if error is None:
            object.__setattr__(result, "status", TaskResultStatus("SUCCESSFUL"))
            object.__setattr__(result, "_return_value", value)
        else:
            object.__setattr__(result, "status", TaskResultStatus("FAILED"))
            kind = type(error)
            result.errors.append(
                TaskError(
                    exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                    traceback=format_backtrace(error),
                )
            )
        task_finished.send(sender=type(self), task_result=result)

    # -- Django's contract --------------------------------------------------------------------

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Store a job for ``task`` in Django's current transaction (if any); its result."""
        self.validate_task(task)
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        options: dict[str, Any] = {
            "connection": self._connection(),
            "queue": task.queue_name,
            "priority": goodjob_priority(task.priority),
        }
        if task.run_after is not None:
            run_after = task.run_after
            if timezone.is_naive(run_after):  # USE_TZ = False: Django's own time zone
                run_after = timezone.make_aware(run_after)
            options["run_at"] = run_after
        job = self._goodjob_task(task).using(**options).enqueue(*args, **kwargs)
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=str(job.id),
            status=TaskResultStatus("READY"),
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        if self.goodjob.execution_mode == "inline":
            # Run once committed (at once outside atomic()), as inline mode runs a job
            # enqueued on a caller's connection.
            transaction.on_commit(lambda: self.goodjob.perform_inline([job.id]), self.database)
        task_enqueued.send(sender=type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The result of the job ``result_id``, read on Django's connection (so inside
        ``atomic()`` a job enqueued in it is found); TaskResultDoesNotExist if there is none."""
        try:
            job_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        job = job_records.get(self.goodjob.database, job_id, conn=self._connection())
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = import_string(job.task_name)
        except ImportError:
            task = None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{result_id} is a job of {job.task_name}, not a task")
        return result_of(job, self._as_stored(task, job), self.alias)

    def _as_stored(self, task: Task[Any, Any], job: job_records.Job) -> Task[Any, Any]:
        """``task`` with the priority and queue its job was stored with (as Django's own
        result would carry), when Django accepts them."""
        priority, queue = django_priority(job.priority), job.queue_name
        if (priority, queue) == (task.priority, task.queue_name):
            return task
        if -100 <= priority <= 100 and (not self.queues or queue in self.queues):
            return task.using(priority=priority, queue_name=queue)
        return task

    def _connection(self) -> Any:
        """Django's psycopg connection to the backend's database (opened if it was not); a
        ConfigurationError naming the database when it is not PostgreSQL through psycopg 3."""
        wrapper = connections[self.database]
        wrapper.ensure_connection()
        raw = wrapper.connection
        if wrapper.vendor != "postgresql" or not is_connection(raw):
            driver = type(raw).__module__.partition(".")[0]
            raise ConfigurationError(
                f"the goodjob backend enqueues on Django's database {self.database!r}, which"
                " must use django.db.backends.postgresql with psycopg 3; it uses"
                f" {wrapper.settings_dict['ENGINE']} through {driver}"
            )
        return raw


def _tidy_connections() -> None:
    """Close this thread's Django connections that are broken or past CONN_MAX_AGE, as Django
    does at the start and end of a request; not inside ``atomic()`` (a test draining jobs in
    its transaction), where closing would end the transaction."""
    if not any(c.in_atomic_block for c in connections.all(initialized_only=True)):
        close_old_connections()
