"""What a job is enqueued with: :class:`TaskOptions`, :class:`Concurrency` and
:class:`JobRequest`.

A request names its task by its stored name, so the layers below the task registry (the
records, the middleware) handle requests without knowing tasks. Options are checked when made,
so a bad value fails where it was written.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from goodjob.errors import ConfigurationError
from goodjob.queues import check_queue_name
from goodjob.serialization import unstorable_text

DEFAULT_QUEUE = "default"
PRIORITY_RANGE = (-(2**31), 2**31 - 1)  # the column is a Postgres integer
MAX_WAIT = 100 * 365.25 * 24 * 3600.0  # seconds: a job scheduled further ahead is a mistake


@dataclass(frozen=True)
class TaskOptions:
    """What a task, or one call of it, is enqueued with. Checked when made, so a bad value fails
    where it was written, with a message naming it (issue 11), not as a database error."""

    queue: str = DEFAULT_QUEUE
    priority: int = 0
    labels: tuple[str, ...] = ()
    wait: float = 0.0
    run_at: dt.datetime | None = None
    connection: Any = None
    concurrency_key: str | None = None
    # Set by a batch on the requests it inserts (gj.batch, Batch.add), never by using().
    batch_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        low, high = PRIORITY_RANGE
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise ConfigurationError(f"priority {self.priority!r} is not valid: use a whole number")
        if not low <= self.priority <= high:
            raise ConfigurationError(
                f"priority {self.priority} is out of range: use {low:,} to {high:,}"
            )
        object.__setattr__(self, "wait", _seconds(self.wait))
        if self.run_at is not None:
            if not isinstance(self.run_at, dt.datetime):
                raise ConfigurationError(f"run_at {self.run_at!r} is not valid: use a datetime")
            if self.run_at.utcoffset() is None:
                raise ConfigurationError(
                    f"run_at {self.run_at!r} has no time zone: pass an aware datetime"
                )
        labels = (self.labels,) if isinstance(self.labels, str) else tuple(self.labels)
        for label in labels:
            if not isinstance(label, str) or not label or unstorable_text(label):
                raise ConfigurationError(
                    f"label {label!r} is not valid: use non-empty text without NUL characters"
                )
        object.__setattr__(self, "labels", labels)
        if self.concurrency_key is not None:
            check_concurrency_key(self.concurrency_key)


def _seconds(wait: object) -> float:
    """``wait`` (seconds or a timedelta) as seconds; a ConfigurationError naming what is wrong."""
    if isinstance(wait, dt.timedelta):
        wait = wait.total_seconds()
    if not isinstance(wait, int | float) or isinstance(wait, bool):
        raise ConfigurationError(f"wait {wait!r} is not valid: use seconds or a timedelta")
    if not 0 <= wait <= MAX_WAIT:  # NaN fails every comparison
        raise ConfigurationError(
            f"wait {wait!r} is not valid: use 0 to {MAX_WAIT:,.0f} seconds (100 years)"
        )
    return float(wait)


MAX_KEY_LENGTH = 1_000  # characters: a key is an identifier, not a payload


def check_concurrency_key(key: object) -> str:
    """``key`` if it can be a concurrency key; a ConfigurationError naming it if not."""
    if not isinstance(key, str) or not key or unstorable_text(key) or len(key) > MAX_KEY_LENGTH:
        raise ConfigurationError(
            f"concurrency key {key!r} is not valid: use non-empty text of at most"
            f" {MAX_KEY_LENGTH:,} characters without NUL characters"
        )
    return key


Throttle = tuple[int, float]  # (count, seconds): at most count per period of seconds


@dataclass(frozen=True)
class Concurrency:
    """Limits and throttles that the jobs of one concurrency key share, exactly, across every
    process (``@gj.task(concurrency=...)``; README: Concurrency controls).

    ``key`` is text, or a callable given the task's arguments that returns it; without one, the
    key is the task's name (all its jobs share the limits). ``total_limit`` counts queued and
    running jobs with the key, ``enqueue_limit`` queued ones (scheduled included), and an
    enqueue over either is refused; ``perform_limit`` counts running ones, and a job over it
    waits, queued. Throttles are ``(count, seconds)``: at most ``count`` enqueues
    (``enqueue_throttle``) or starts (``perform_throttle``) in any period of ``seconds``.
    """

    key: str | Callable[..., str] | None = None
    total_limit: int | None = None
    enqueue_limit: int | None = None
    perform_limit: int | None = None
    enqueue_throttle: Throttle | None = None
    perform_throttle: Throttle | None = None

    def __post_init__(self) -> None:
        if self.key is not None and not callable(self.key):
            check_concurrency_key(self.key)
        for name in ("total_limit", "enqueue_limit", "perform_limit"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**31
            ):
                raise ConfigurationError(f"{name}={value!r} is not valid: use a whole number ≥ 1")
        for name in ("enqueue_throttle", "perform_throttle"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _throttle(name, value))

    @property
    def limits_enqueue(self) -> bool:
        """Whether an enqueue can be refused (and so must be counted, one job at a time)."""
        return (
            self.total_limit is not None
            or self.enqueue_limit is not None
            or self.enqueue_throttle is not None
        )

    def key_for(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of one call of the task named ``task_name``."""
        if self.key is None:
            return task_name
        if isinstance(self.key, str):
            return self.key
        try:
            key = self.key(*args, **kwargs)
        except Exception as exc:
            raise ConfigurationError(
                f"task {task_name}: its concurrency key function raised {exc!r}"
            ) from exc
        try:
            return check_concurrency_key(key)
        except ConfigurationError as exc:
            raise ConfigurationError(f"task {task_name}: {exc}") from None


def _throttle(name: str, value: object) -> Throttle:
    """``(count, seconds)`` checked, seconds as a float (a timedelta is accepted)."""
    if isinstance(value, tuple) and len(value) == 2:
        count, seconds = value
        if isinstance(seconds, dt.timedelta):
            seconds = seconds.total_seconds()
        if (
            isinstance(count, int)
            and not isinstance(count, bool)
            and 1 <= count <= 10_000
            and isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and 0 < seconds <= MAX_WAIT
        ):
            return count, float(seconds)
    raise ConfigurationError(
        f"{name}={value!r} is not valid: use (count, seconds) with a count of 1 to 10,000"
        " and a positive number of seconds"
    )


class JobRequest(NamedTuple):
    """One call of a task, prepared for :meth:`GoodJob.enqueue_all`.

    A named tuple rather than a frozen dataclass: one is made per job of a batch, and a tuple is
    made in half the time (0.28 vs 0.55 µs; issue 5).
    """

    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: TaskOptions
    # The task's limits when it has them; options.concurrency_key is then the call's key.
    concurrency: Concurrency | None = None
    # Stored with the job's arguments under "headers" and handed back with each claim
    # (ClaimedJob.headers): the trace context of goodjob.tracing (issue 19). Set by middleware.
    headers: dict[str, str] | None = None
    # The job's id when a middleware minted it before the insert (goodjob.tracing names the job
    # in its producer span); otherwise the insert mints it.
    id: uuid.UUID | None = None
