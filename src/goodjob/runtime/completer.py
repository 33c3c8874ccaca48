"""The Completer: records outcomes in batches, one ``complete()`` statement per flush.

Worker threads hand their outcome over and go straight back to claiming; this thread writes
what accumulated every few milliseconds. Counters (succeeded, failed) move only after the row
is written, so nothing reports a job finished before its row says so. When the database is
down, outcomes are kept and written once it is back (the claims stay fenced meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable

from goodjob.errors import DatabaseUnavailable
from goodjob.middleware import MiddlewareChain
from goodjob.performer import MAX_ERROR_CHARS, Performer
from goodjob.records.claims import Outcome
from goodjob.serialization import clean_text

logger = logging.getLogger("goodjob.completer")

FLUSH_INTERVAL = 0.002  # seconds of accumulation before a flush: batches a burst
RETRY_BACKOFF = 0.5  # seconds between attempts while the database is unreachable
MAX_BATCH = 500


class Completer:
    """Accumulates outcomes from every scheduler of a capsule and writes them in batches."""

    def __init__(
        self,
        performer: Performer,
        *,
        on_recorded: Callable[[list[Outcome]], None] | None = None,
        errors: MiddlewareChain | None = None,
    ) -> None:
        self.performer = performer
        self.on_recorded = on_recorded
        self._errors = errors or MiddlewareChain()
        self._lock = threading.Lock()
        self._queue: list[Outcome] = []
        self._event = threading.Event()
        self._stopping = False
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="goodjob-completer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        with self._lock:
            self._queue.append(outcome)
        self._event.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def stop(self, timeout: float | None = 10.0) -> None:
        """Write everything submitted so far, then stop."""
        self._stopping = True
        self._event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._event.wait()
            if not self._stopping:
                time.sleep(FLUSH_INTERVAL)
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._in_flight = len(batch)
                if not self._queue:
                    self._event.clear()
            if batch:
                self._flush(batch)
            with self._lock:
                self._in_flight = 0
                done = self._stopping and not self._queue
            if done:
                return

    def _flush(self, batch: list[Outcome]) -> None:
        try:
            recorded = self._write(batch)
        except Exception as exc:
            # Never expected (_write handles what the database says); the thread must live on,
            # or every later outcome of this process would wait forever.
            logger.exception("recording outcomes failed", extra={"action": "complete"})
            self._errors.on_error(exc)
            return
        if self.on_recorded is not None:
            # Only what was written counts; a fenced (zombie) outcome was logged by complete().
            try:
                self.on_recorded([o for o in batch if o.job.id in recorded])
            except Exception:
                logger.exception("on_recorded failed", extra={"action": "complete"})

    def _write(self, outcomes: list[Outcome]) -> set[uuid.UUID]:
        """Record ``outcomes``; the ids written. Retries while the database is unreachable.

        When the database refuses the statement itself, the outcomes are written one by one, so
        that one outcome it cannot take holds back no other (issue 11: a NUL character in one
        job's error jammed every later outcome of its worker, retried every half second).
        """
        attempts = 0
        while True:
            try:
                return self.performer.complete(outcomes, retry=attempts > 0)
            except DatabaseUnavailable as exc:
                attempts += 1
                if self._stopping and attempts >= 3:
                    # Shutting down with the database gone: the claims are released by the
                    # sweep of whichever process sees this one's row die.
                    logger.error("outcomes not recorded: %s", exc, extra={"action": "complete"})
                    self._errors.on_error(exc)
                    return set()
                logger.warning("recording outcomes failed: %s; retrying", exc)
                time.sleep(RETRY_BACKOFF)
            except Exception as exc:
                self._errors.on_error(exc)
                if len(outcomes) > 1:
                    logger.warning("outcomes refused (%s); writing them one by one", exc)
                    return {job_id for outcome in outcomes for job_id in self._write([outcome])}
                return self._write_plain(outcomes[0], exc)

    def _write_plain(self, outcome: Outcome, refusal: Exception) -> set[uuid.UUID]:
        """Write a refused outcome again in its plainest form: no result, no backtrace, and an
        error that says what happened. If even that is refused, give up on it (logged): its job
        stays claimed by this process until the process ends, and is then run again."""
        plain = dataclasses.replace(
            outcome,
            result=None,
            backtrace=None,
            error=clean_text(
                f"goodjob.DatabaseError: the outcome could not be recorded as it was: {refusal}",
                MAX_ERROR_CHARS,
            ),
            error_event=outcome.error_event or "result_refused",
        )
        try:
            return self.performer.complete([plain])
        except Exception as exc:
            logger.error(
                "outcome not recorded: %s",
                exc,
                extra={"job_id": str(outcome.job.id), "action": "complete"},
            )
            return set()
