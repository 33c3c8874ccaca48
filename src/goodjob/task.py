"""Tasks: functions registered on an app, and the ways to enqueue them.

``@gj.task`` turns a function (plain or ``async def``) into a :class:`Task`. Calling the task
calls the function; ``task.enqueue(...)`` stores a job that a worker will run;
``task.using(...)`` returns a copy with per-call options (queue, priority, wait, run_at, labels,
connection for transactional enqueue).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from goodjob.errors import ConfigurationError
from goodjob.options import Concurrency, JobRequest, TaskOptions
from goodjob.records.jobs import Job
from goodjob.retry import Retry

# What using() accepts: every option but the batch, which gj.batch() and Batch.add() set.
USING_OPTIONS = tuple(f.name for f in dataclasses.fields(TaskOptions) if f.name != "batch_id")
P = ParamSpec("P")
R = TypeVar("R")
# Called with the error of a failed attempt; returning (not raising) marks the error handled.
ErrorHandler = Callable[[BaseException], Any]


class Enqueuer(Protocol):
    """What a task enqueues through: the app that owns its registry."""

    def enqueue_all(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> Sequence[Job]: ...

    async def aenqueue_all(
        self, requests: Iterable[JobRequest], *, connection: Any = None
    ) -> Sequence[Job]: ...


class Task(Generic[P, R]):
    """A function that can be enqueued as a job."""

    def __init__(
        self,
        registry: TaskRegistry,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        options: TaskOptions | None = None,
        retry: Retry | None = None,
        discard_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        timeout: float | None = None,
        handle: ErrorHandler | None = None,
        concurrency: Concurrency | None = None,
    ) -> None:
        self.registry = registry
        self.fn = fn
        # The stored name: the import path, so a worker importing the same module finds it.
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.options = options or TaskOptions()
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"task {self.name}: retry={retry!r}: pass a goodjob.Retry")
        self.retry = retry
        if isinstance(discard_on, type):
            discard_on = (discard_on,)
        for kind in discard_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ConfigurationError(
                    f"task {self.name}: discard_on={kind!r} is not an exception class"
                )
        self.discard_on = tuple(discard_on)
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"task {self.name}: timeout={timeout!r} must be positive")
        self.timeout = timeout
        if handle is not None and not callable(handle):
            raise ConfigurationError(f"task {self.name}: handle={handle!r} is not callable")
        self.handle = handle
        if concurrency is not None and not isinstance(concurrency, Concurrency):
            raise ConfigurationError(
                f"task {self.name}: concurrency={concurrency!r}: pass a goodjob.Concurrency"
            )
        self.concurrency = concurrency
        if self.options.concurrency_key is not None and concurrency is None:
            raise _unlimited_key(self.name)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def using(self, **options: Any) -> Task[P, R]:
        """A copy of this task whose enqueues use ``options`` (queue, priority, wait, ...)."""
        unknown = set(options) - set(USING_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown enqueue option {sorted(unknown)[0]!r}; options are: "
                + ", ".join(USING_OPTIONS)
            )
        if options.get("concurrency_key") is not None and self.concurrency is None:
            raise _unlimited_key(self.name)
        copy = object.__new__(Task)
        copy.__dict__.update(self.__dict__)
        copy.options = dataclasses.replace(self.options, **options)
        return copy

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> JobRequest:
        """One call, for :meth:`GoodJob.enqueue_all`."""
        concurrency = self.concurrency
        if concurrency is None:
            return JobRequest(self.name, args, kwargs, self.options)
        options = self.options
        if options.concurrency_key is None:  # not set by using(): the task's key for this call
            key = concurrency.key_for(self.name, args, kwargs)
            options = dataclasses.replace(options, concurrency_key=key)
        return JobRequest(self.name, args, kwargs, options, concurrency)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store a job that calls this task with these arguments; returns its handle."""
        return self.registry.owner.enqueue_all(
            [self.prepare(*args, **kwargs)], connection=self.options.connection
        )[0]

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """:meth:`enqueue` for async code (pass an AsyncConnection as ``connection``)."""
        return (
            await self.registry.owner.aenqueue_all(
                [self.prepare(*args, **kwargs)], connection=self.options.connection
            )
        )[0]


def _unlimited_key(task_name: str) -> ConfigurationError:
    # A key without limits would be stored and enforce nothing: say so where it was written.
    return ConfigurationError(
        f"task {task_name}: concurrency_key needs limits: declare them with"
        " @gj.task(concurrency=goodjob.Concurrency(...))"
    )


class TaskResolver(Protocol):
    """Where a worker looks up the task of a job by its stored name."""

    def resolve(self, name: str) -> Task[Any, Any] | None: ...


class TaskRegistry(Mapping[str, "Task[Any, Any]"]):
    """The tasks of an app by stored name, and the app they enqueue through (``owner``).

    The worker resolves jobs' tasks here. :meth:`GoodJob.with_settings` makes a new app that
    shares this registry and becomes its owner, so the module-level tasks of a project enqueue
    through the app its worker runs with (the CLI's database flags included).
    """

    def __init__(self, owner: Enqueuer) -> None:
        self.owner = owner
        self._tasks: dict[str, Task[Any, Any]] = {}
        # Asked for a task by a name not registered (a worker resolving a job's task); what it
        # returns is registered. The Django backend finds Django's tasks by import path here.
        self.find: Callable[[str], Task[Any, Any] | None] | None = None

    def __getitem__(self, name: str) -> Task[Any, Any]:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """Register ``task``; a second, different function under the same name is refused."""
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigurationError(
                f"two tasks are named {task.name!r}; give one of them name=..."
            )
        self._tasks[task.name] = task
        return task

    def resolve(self, name: str) -> Task[Any, Any] | None:
        task = self._tasks.get(name)
        if task is None and self.find is not None:
            task = self.find(name)
            if task is not None:
                self.add(task)
        return task
