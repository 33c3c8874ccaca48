"""Middleware: the one extension point, hooks around enqueue, perform and record.

Subclass :class:`Middleware`, override the hooks you need and pass instances to
``GoodJob(middleware=[...])``. Every hook here is a no-op, so a subclass states only what it adds.
Order: ``before_enqueue``, ``after_claim``, ``after_record``, ``on_error`` and ``process_state``
run in list order; ``around_perform`` nests, the first middleware outermost. goodjob's own
counters, metrics and tracing are middleware too.

A hook that raises is logged and loses no job: ``before_enqueue`` goes on with the requests it was
given (only :class:`goodjob.EnqueueRefused` refuses an enqueue), ``around_perform`` goes on
without that middleware (running the attempt if the hook had not), and the others are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from goodjob.errors import EnqueueRefused
from goodjob.options import JobRequest
from goodjob.records.claims import ClaimedJob, Outcome

logger = logging.getLogger("goodjob.middleware")

Perform = Callable[[], Outcome]


class Middleware:
    """Hooks around enqueue, perform and record. Each one is a no-op here."""

    def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
        """Called before jobs are inserted: return the requests to insert, in the same number
        (changed or not); raise :class:`goodjob.EnqueueRefused` to refuse the whole batch."""
        return requests

    def around_perform(self, job: ClaimedJob, perform: Perform) -> Outcome:
        """Wraps one attempt of a job (sync or async task): call ``perform()`` to run it and
        return the outcome it returns."""
        return perform()

    def after_claim(self, jobs: Sequence[ClaimedJob]) -> None:
        """Called with the jobs of each claim that found any, before they run."""

    def after_record(self, outcomes: Sequence[Outcome]) -> None:
        """Called with outcomes once written: only those the fence accepted."""

    def on_error(self, error: BaseException, job: ClaimedJob | None) -> None:
        """Called with every error a job raised (``job`` set) and every error of goodjob's own
        threads: notifier, claimer, sweeper, completer (``job`` None)."""

    def process_state(self) -> dict[str, Any]:
        """Fields to add to this process's row in ``goodjob_processes`` (its ``state``)."""
        return {}


ErrorReporter = Callable[[BaseException, "ClaimedJob | None"], object]


class OnThreadError(Middleware):
    """``GoodJob(on_thread_error=fn)``: GoodJob's ``on_thread_error``, the one place to report
    errors from (Sentry and the like). ``fn(error, job)`` hears of every error a job raised
    (``job`` set) and every error of goodjob's own threads (``job`` None)."""

    def __init__(self, report: ErrorReporter) -> None:
        if not callable(report):
            raise TypeError(f"on_thread_error={report!r} is not callable: pass fn(error, job)")
        self.report = report

    def on_error(self, error: BaseException, job: ClaimedJob | None) -> None:
        self.report(error, job)

    def __repr__(self) -> str:
        return f"OnThreadError({self.report!r})"


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


class MiddlewareChain:
    """The app's middleware, called in order; hooks nobody overrides cost nothing."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        for item in middleware:
            if not isinstance(item, Middleware):
                raise TypeError(f"{item!r} is not a goodjob.Middleware")
        self.items: tuple[Middleware, ...] = tuple(middleware)
        self._enqueue = [m for m in self.items if _overrides(m, "before_enqueue")]
        self._perform = [m for m in self.items if _overrides(m, "around_perform")]
        self._claim = [m for m in self.items if _overrides(m, "after_claim")]
        self._record = [m for m in self.items if _overrides(m, "after_record")]
        self._error = [m for m in self.items if _overrides(m, "on_error")]
        self._state = [m for m in self.items if _overrides(m, "process_state")]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Any:
        return iter(self.items)

    def plus(self, first: Middleware) -> MiddlewareChain:
        """This chain with ``first`` put in front (the runtime's own counters)."""
        return MiddlewareChain([first, *self.items])

    def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
        for middleware in self._enqueue:
            try:
                changed = middleware.before_enqueue(list(requests))
            except EnqueueRefused:
                raise
            except Exception as exc:
                self._failed(middleware, "before_enqueue", exc)
                continue
            if not isinstance(changed, list) or len(changed) != len(requests):
                logger.error(
                    "%r.before_enqueue returned %d requests for %d; ignored",
                    middleware,
                    len(changed) if isinstance(changed, list) else -1,
                    len(requests),
                )
                continue
            requests = changed
        return requests

    def around_perform(self, job: ClaimedJob, perform: Perform) -> Outcome:
        if not self._perform:
            return perform()
        for middleware in reversed(self._perform):
            perform = self._layer(middleware, job, perform)
        return perform()

    def _layer(self, middleware: Middleware, job: ClaimedJob, inner: Perform) -> Perform:
        def run() -> Outcome:
            done: list[Outcome] = []

            def perform() -> Outcome:
                if not done:  # a middleware calling it twice does not run the job twice
                    done.append(inner())
                return done[0]

            try:
                outcome = middleware.around_perform(job, perform)
            except Exception as exc:
                self._failed(middleware, "around_perform", exc)
                return perform()
            if not isinstance(outcome, Outcome):
                logger.error("%r.around_perform returned %r, not an outcome", middleware, outcome)
                return perform()
            return outcome

        return run

    def after_claim(self, jobs: Sequence[ClaimedJob]) -> None:
        for middleware in self._claim:
            try:
                middleware.after_claim(jobs)
            except Exception as exc:
                self._failed(middleware, "after_claim", exc)

    def after_record(self, outcomes: Sequence[Outcome]) -> None:
        for middleware in self._record:
            try:
                middleware.after_record(outcomes)
            except Exception as exc:
                self._failed(middleware, "after_record", exc)

    def on_error(self, error: BaseException, job: ClaimedJob | None = None) -> None:
        for middleware in self._error:
            try:
                middleware.on_error(error, job)
            except Exception:
                # Not passed to on_error again: a failing error reporter would loop.
                logger.exception("%r.on_error failed", middleware)

    def process_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for middleware in self._state:
            try:
                state.update(middleware.process_state())
            except Exception as exc:
                self._failed(middleware, "process_state", exc)
        return state

    def _failed(self, middleware: Middleware, hook: str, error: Exception) -> None:
        logger.exception("%r.%s failed", middleware, hook, extra={"action": "middleware"})
        self.on_error(error)
