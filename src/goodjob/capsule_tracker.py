"""CapsuleTracker: the reference-counted record of this process in ``goodjob_processes``.

Every part of a process that claims jobs registers with the tracker; while anything is
registered, the process has a row whose id is written to ``locked_by_id`` of the jobs it claims.
The row is refreshed as a heartbeat by a background task and, with an advisory registration,
held under a session advisory lock, so that other processes see at once when this one dies and
release its jobs. The last unregistration deletes the row and releases this process's claims.

Semantics follow GoodJob's CapsuleTracker, with three fixes: after ``os.fork()`` the child starts
clean (new id, no registrations, no inherited connection or task); a process whose heartbeat has
failed for longer than the expiry interval stops handing out lock ids; and a row deleted
elsewhere is re-created with the same id on the next refresh.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
import weakref
from concurrent.futures import Executor
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from goodjob.config import Settings
from goodjob.db import DedicatedConnection
from goodjob.errors import DatabaseError, Error
from goodjob.records import processes
from goodjob.records.processes import ProcessRecord

if TYPE_CHECKING:
    from goodjob.app import GoodJob

logger = logging.getLogger("goodjob.capsule_tracker")

JITTER = 0.1  # the refresh runs every stale interval plus up to 10%, so processes spread out
# Connections inherited across fork() are kept referenced, never closed: closing one in the
# child would end the parent's session (and drop the parent's advisory lock).
_inherited: list[Any] = []


class Registration:
    """What :meth:`CapsuleTracker.register` returns: usable as a context manager."""

    def __init__(self, tracker: CapsuleTracker, with_advisory_lock: bool) -> None:
        self._tracker = tracker
        self._with_advisory_lock = with_advisory_lock

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tracker.unregister(with_advisory_lock=self._with_advisory_lock)


class _RefreshTask:
    """Calls ``renew`` every stale interval (jittered) until cancelled."""

    def __init__(self, tracker: CapsuleTracker, executor: Executor | None) -> None:
        self._tracker = weakref.ref(tracker)
        self._stop = threading.Event()
        self._interval = tracker.settings.process_stale_seconds
        if executor is None:
            self._thread: threading.Thread | None = threading.Thread(
                target=self._run, name="goodjob-capsule-tracker", daemon=True
            )
            self._thread.start()
        else:
            self._thread = None
            executor.submit(self._run)

    def _run(self) -> None:
        while not self._stop.wait(self._interval * (1 + JITTER * random.random())):
            tracker = self._tracker()
            if tracker is None:
                return
            try:
                tracker.renew(silent=True)
            except Exception:
                logger.exception("heartbeat failed", extra={"action": "heartbeat"})

    def cancel(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class CapsuleTracker:
    """The process's row in ``goodjob_processes``, reference-counted across its users."""

    instances: ClassVar[list[CapsuleTracker]] = []

    def __init__(self, gj: GoodJob, executor: Executor | None = None) -> None:
        self._gj = gj
        self._executor = executor
        self._mutex = threading.RLock()
        self._locks = 0
        self._advisory_locks = 0
        self._record_id = uuid.uuid4()
        self._record: ProcessRecord | None = None
        self._lock_conn: DedicatedConnection | None = None
        self._owns_lock_conn = False
        self._refresh_task: _RefreshTask | None = None
        self._last_heartbeat = 0.0  # time.monotonic() of the last successful refresh
        CapsuleTracker.instances.append(self)

    # -- inspection -------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._gj.settings

    @property
    def locks(self) -> int:
        """Current registrations."""
        return self._locks

    @property
    def advisory_locks(self) -> int:
        """Registrations that hold the advisory lock (0 once the lock is dropped)."""
        return self._advisory_locks

    @property
    def record(self) -> ProcessRecord | None:
        """The process record as last written, or None."""
        return self._record

    @property
    def process_id(self) -> uuid.UUID:
        """The id this tracker's row has or will have (use :meth:`id_for_lock` to lock jobs)."""
        return self._record_id

    def advisory_locked(self) -> bool:
        """Whether the advisory lock is held on a live connection."""
        return self._lock_conn is not None and not self._lock_conn.closed

    # -- registration -----------------------------------------------------------------------

    def register(
        self, with_advisory_lock: bool = False, connection: DedicatedConnection | None = None
    ) -> Registration:
        """Add a registration; with the advisory lock, create (or re-lock) the row now.

        ``connection`` is the dedicated connection that will hold the lock (the notifier's);
        without one the tracker opens its own.
        """
        with self._mutex:
            if with_advisory_lock and not self.advisory_locked():
                self._lock(connection)
            if with_advisory_lock:
                self._advisory_locks += 1
            self._locks += 1
        return Registration(self, with_advisory_lock)

    def _lock(self, connection: DedicatedConnection | None) -> None:
        db = self._gj.database
        conn = connection or db.dedicated("capsule-tracker")
        try:
            with conn.transaction():
                record, _ = processes.upsert(db, self._record_id, advisory=True, conn=conn)
                if not conn.execute("process_advisory_lock", {"id": self._record_id})[0]["locked"]:
                    raise DatabaseError(
                        f"the advisory lock of process {self._record_id} is held by another session"
                    )
        except BaseException:
            if connection is None:
                conn.close()
            raise
        self._drop_lock_conn()
        self._lock_conn, self._owns_lock_conn = conn, connection is None
        self._record = record
        self._last_heartbeat = time.monotonic()
        self._start_refresh_task()

    def unregister(self, with_advisory_lock: bool = False) -> None:
        """Remove a registration; the last one deletes the row and releases this process's jobs."""
        with self._mutex:
            if self._locks == 0:
                return
            try:
                if self._locks == 1:
                    self._delete_record(with_advisory_lock)
                elif with_advisory_lock and self.advisory_locked():
                    self._unlock(delete=False)
            finally:
                self._locks -= 1
                if self._locks == 0:
                    self._record = None
                    self._advisory_locks = 0
                    self._drop_lock_conn()
                    self._cancel_refresh_task()

    def _delete_record(self, with_advisory_lock: bool) -> None:
        if with_advisory_lock and self.advisory_locked():
            self._unlock(delete=True)
        elif self._record is not None or self.advisory_locked():
            processes.delete(self._gj.database, self._record_id)

    def _unlock(self, *, delete: bool) -> None:
        assert self._lock_conn is not None
        conn = self._lock_conn
        try:
            with conn.transaction():
                conn.execute("process_advisory_unlock", {"id": self._record_id})
                if delete:
                    conn.execute("process_delete", {"id": self._record_id})
                else:
                    conn.execute(
                        "process_set_lock_type", {"id": self._record_id, "lock_type": None}
                    )
        except DatabaseError:
            if not delete:
                raise
            # The lock connection broke: the lock is gone with it; delete through the pool.
            processes.delete(self._gj.database, self._record_id)
        finally:
            self._drop_lock_conn()
            self._advisory_locks = 0

    def _drop_lock_conn(self) -> None:
        if self._lock_conn is not None and self._owns_lock_conn:
            self._lock_conn.close()
        self._lock_conn, self._owns_lock_conn = None, False

    # -- the lock id and the heartbeat ------------------------------------------------------

    def id_for_lock(self) -> uuid.UUID | None:
        """The id to write to ``locked_by_id``; None when nothing is registered.

        Creates the row on first use and refreshes it when stale. Raises when the heartbeat
        has failed for longer than the expiry interval: other processes may have judged this
        one dead and handed its claims out, so it must not claim more until it is back.
        """
        with self._mutex:
            if self._locks == 0:
                return None
            if self._record is None:
                self._refresh()
                self._start_refresh_task()
            elif self._stale():
                try:
                    self._refresh()
                except Error:
                    if self._expired():
                        logger.error(
                            "heartbeat expired: claiming no new jobs until it succeeds",
                            extra={"process_id": str(self._record_id)},
                        )
                    raise
            return self._record_id

    def renew(self, silent: bool = False) -> None:
        """Refresh the row if stale, then sweep dead processes and orphaned claims."""
        with self._mutex:
            if self._record is not None and self._stale():
                self._refresh()
        result = processes.sweep(self._gj.database)
        if result.dead_processes or result.released_jobs:
            log = logger.debug if silent else logger.info
            log(
                "swept dead processes",
                extra={
                    "action": "sweep",
                    "dead_processes": result.dead_processes,
                    "released_jobs": result.released_jobs,
                },
            )

    def _stale(self) -> bool:
        stale: float = self.settings.process_stale_seconds
        return time.monotonic() - self._last_heartbeat >= stale

    def _expired(self) -> bool:
        expired: float = self.settings.process_expired_seconds
        return time.monotonic() - self._last_heartbeat >= expired

    def _refresh(self) -> None:
        """Write the heartbeat through the pool, never over the lock connection."""
        record, created = processes.upsert(
            self._gj.database, self._record_id, advisory=self.advisory_locked()
        )
        if created and self._record is not None:
            logger.warning(
                "process row was deleted elsewhere; re-created it",
                extra={"process_id": str(self._record_id)},
            )
        self._record = record
        self._last_heartbeat = time.monotonic()

    def _start_refresh_task(self) -> None:
        if self._refresh_task is None:
            self._refresh_task = _RefreshTask(self, self._executor)

    def _cancel_refresh_task(self) -> None:
        task, self._refresh_task = self._refresh_task, None
        if task is not None:
            task.cancel()

    # -- fork safety --------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        """In a forked child: a new identity with nothing registered and nothing inherited."""
        if self._lock_conn is not None:
            _inherited.append(self._lock_conn)
        self._mutex = threading.RLock()
        self._locks = 0
        self._advisory_locks = 0
        self._record_id = uuid.uuid4()
        self._record = None
        self._lock_conn, self._owns_lock_conn = None, False
        self._refresh_task = None  # its thread does not exist in the child
        self._last_heartbeat = 0.0


def _after_fork_in_child() -> None:
    for tracker in CapsuleTracker.instances:
        tracker._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["CapsuleTracker", "Registration"]
