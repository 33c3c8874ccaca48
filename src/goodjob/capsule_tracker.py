"""CapsuleTracker: the reference-counted record of this process in ``goodjob_processes``.

Every part of a process that claims jobs registers with the tracker; while anything is
registered, the process has a row whose id is written to ``locked_by_id`` of the jobs it claims.
The row is refreshed as a heartbeat by a background task and, with an advisory registration,
held under a session advisory lock, so that other processes see at once when this one dies and
release its jobs. The last unregistration deletes the row and releases this process's claims.

Semantics follow GoodJob's CapsuleTracker, with these fixes: after ``os.fork()`` the child starts
clean (new id, no registrations, no inherited connection, task or executor); a process whose
heartbeat has failed for longer than the expiry interval stops handing out lock ids; a row
deleted elsewhere is re-created with the same id on the next refresh; and an advisory lock lost
with its connection is taken again by the next refresh.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from types import TracebackType
from typing import Any, ClassVar, Protocol

from goodjob.config import Settings
from goodjob.db import Database, DedicatedConnection
from goodjob.db.database import inherited
from goodjob.errors import DatabaseError, Error
from goodjob.records import processes
from goodjob.records.processes import ProcessRecord

logger = logging.getLogger("goodjob.capsule_tracker")

JITTER = 0.1  # the refresh runs every stale interval plus up to 10%, so processes spread out
TAKEOVER_SECONDS = 1.0  # how long an ended stale session may take to let go of the lock
# A claim this process holds without knowing it (its reply lost with its connection) is given
# back once it is this many heartbeat periods old: long past any claim reply still on its way.
ORPHAN_PERIODS = 3


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
    """Calls ``renew`` every stale interval (jittered) until cancelled.

    A small timer thread keeps the time; with an executor, each renewal is submitted to it as one
    short task (as GoodJob's ScheduledTask does), so the executor's workers are never held
    between heartbeats. A renewal still running when the next one is due is not doubled.
    """

    def __init__(self, tracker: CapsuleTracker, executor: Executor | None) -> None:
        self._tracker = weakref.ref(tracker)
        self._executor = executor
        self._stop = threading.Event()
        self._interval = tracker.settings.process_stale_seconds
        self._pending: Future[None] | None = None
        self._thread = threading.Thread(
            target=self._run, name="goodjob-capsule-tracker", daemon=True
        )
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval * (1 + JITTER * random.random())):
            if self._executor is None:
                self._renew()
            elif self._pending is None or self._pending.done():
                try:
                    self._pending = self._executor.submit(self._renew)
                except RuntimeError:  # the executor was shut down: keep the heartbeat alive
                    logger.warning(
                        "executor shut down; renewing on the timer thread",
                        extra={"action": "heartbeat"},
                    )
                    self._executor = None
                    self._renew()

    def _renew(self) -> None:
        tracker = self._tracker()
        if tracker is None or self._stop.is_set():
            return
        try:
            tracker._renew_from(self)
        except Exception:
            logger.exception("heartbeat failed", extra={"action": "heartbeat"})

    def cancel(self) -> None:
        """Stop the task; wait for its thread unless called from it. Never hold the mutex here:
        the thread may be waiting for it inside ``renew``."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class HasDatabase(Protocol):
    """What a tracker is made from: an app (or anything with the app's database)."""

    @property
    def database(self) -> Database: ...


StateProvider = Callable[[], dict[str, Any]]


class CapsuleTracker:
    """The process's row in ``goodjob_processes``, reference-counted across its users."""

    # Weak: a tracker must not keep its app alive (issue 12); kept for the fork reset.
    instances: ClassVar[weakref.WeakSet[CapsuleTracker]] = weakref.WeakSet()

    def __init__(self, gj: HasDatabase, executor: Executor | None = None) -> None:
        # What it uses, taken now: a tracker made before the app is copied with other settings
        # (GoodJob.with_settings) keeps writing where it was made for.
        self._database = gj.database
        self._settings = gj.database.settings
        self._executor = executor
        self._state_providers: list[StateProvider] = []
        self._mutex = threading.RLock()
        self._locks = 0
        self._advisory_locks = 0
        self._record_id = uuid.uuid4()
        self._record: ProcessRecord | None = None
        self._lock_conn: DedicatedConnection | None = None
        self._owns_lock_conn = False
        self._refresh_task: _RefreshTask | None = None
        self._last_heartbeat = 0.0  # time.monotonic() of the last successful refresh
        # The jobs this process knows it holds (claimed, until recorded or given back): a claim
        # of this process not among them is one whose reply was lost (see renew).
        self._held: set[uuid.UUID] = set()
        self._held_lock = threading.Lock()
        CapsuleTracker.instances.add(self)

    def __repr__(self) -> str:
        return (
            f"<CapsuleTracker process_id={self._record_id} locks={self._locks}"
            f" advisory_locks={self._advisory_locks}>"
        )

    # -- inspection -------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def add_state(self, provider: StateProvider) -> None:
        """Add ``provider``'s fields to this process's row (its capsule's pools, middleware)."""
        self._state_providers.append(provider)

    def remove_state(self, provider: StateProvider) -> None:
        if provider in self._state_providers:
            self._state_providers.remove(provider)

    def state(self) -> dict[str, Any]:
        """What this tracker's row says about the process (written with every heartbeat)."""
        state = processes.process_state()
        for provider in list(self._state_providers):
            try:
                state.update(provider())
            except Exception:
                logger.exception("process state provider failed")
        state["database_connection_pool"] = self._database.pool_stats()
        return state

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
        """Whether the advisory lock is held on a live connection.

        A connection of the tracker's own is pinged (as GoodJob's ``active?`` does): a session
        ended by the server is only noticed on use. A caller's connection (the notifier's) is not
        pinged, because its owner may be blocked on it waiting for notifications; its owner sees
        the failure first and the closed flag tells us.
        """
        conn = self._lock_conn
        if conn is None or conn.closed:
            return False
        return conn.ping() if self._owns_lock_conn else True

    # -- registration -----------------------------------------------------------------------

    def register(
        self, with_advisory_lock: bool = False, connection: DedicatedConnection | None = None
    ) -> Registration:
        """Add a registration; with the advisory lock, create (or re-lock) the row now.

        ``connection`` is the dedicated connection that will hold the lock (the notifier's);
        without one the tracker opens its own. Usable as ``with tracker.register(): ...``.
        """
        with self._mutex:
            if with_advisory_lock:
                if not self.advisory_locked():
                    self._lock(connection)
                self._advisory_locks += 1
            self._locks += 1
        return Registration(self, with_advisory_lock)

    def _lock(self, connection: DedicatedConnection | None) -> None:
        """Upsert the row as ``advisory`` and take its session lock, in one transaction."""
        db = self._database
        self._drop_lock_conn()  # a connection that died took its lock with it
        conn = connection or db.dedicated("capsule-tracker")
        try:
            with conn.transaction():
                record, _ = processes.upsert(
                    db, self._record_id, self.state(), advisory=True, conn=conn
                )
                if not self._take_lock(conn):
                    raise DatabaseError(
                        f"the advisory lock of process {self._record_id} is held by another session"
                    )
        except BaseException:
            if connection is None:
                conn.close()
            raise
        self._lock_conn, self._owns_lock_conn = conn, connection is None
        self._record = record
        self._last_heartbeat = time.monotonic()
        self._start_refresh_task()

    def _take_lock(self, conn: DedicatedConnection) -> bool:
        """Take the session advisory lock on ``conn``. Held elsewhere, it is held by a stale
        session of this very process (no other has its id), which the server keeps after a
        network cut until its keepalive gives up: that session is ended, and the lock taken
        once it is gone (within a second)."""
        params = {"id": self._record_id}
        if conn.execute("process_advisory_lock", params)[0]["locked"]:
            return True
        if not conn.execute("process_advisory_lock_stale", params)[0]["ended"]:
            return False  # not ours to end (see README: A dead process that wakes)
        logger.warning(
            "ended a stale session holding this process's lock",
            extra={"process_id": str(self._record_id), "action": "relock"},
        )
        deadline = time.monotonic() + TAKEOVER_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.02)
            if conn.execute("process_advisory_lock", params)[0]["locked"]:
                return True
        return False

    def unregister(self, with_advisory_lock: bool = False) -> None:
        """Remove a registration; the last one deletes the row and releases this process's jobs.

        With registrations left, ``with_advisory_lock=True`` drops the advisory lock (the row
        stays, ``lock_type`` becomes null), as GoodJob does.
        """
        task: _RefreshTask | None = None
        with self._mutex:
            if self._locks == 0:
                return
            try:
                if self._locks == 1:
                    self._delete_record()
                elif with_advisory_lock and self._lock_conn is not None:
                    self._unlock(delete=False)
            finally:
                self._locks -= 1
                if self._locks == 0:
                    self._record = None
                    self._advisory_locks = 0
                    self._drop_lock_conn()
                    task, self._refresh_task = self._refresh_task, None
        if task is not None:
            task.cancel()

    def _delete_record(self) -> None:
        # The lock goes whatever flag the last caller passed: on a caller's connection it would
        # otherwise outlive the registration.
        if self._lock_conn is not None:
            self._unlock(delete=True)
        elif self._record is not None:
            processes.delete(self._database, self._record_id)

    def _unlock(self, *, delete: bool) -> None:
        assert self._lock_conn is not None
        conn = self._lock_conn
        try:
            with conn.transaction():
                conn.execute("process_advisory_unlock", {"id": self._record_id})
                if delete:
                    conn.execute("process_delete", {"id": self._record_id})
                else:
                    rows = conn.execute(
                        "process_set_lock_type", {"id": self._record_id, "lock_type": None}
                    )
                    self._record = ProcessRecord.from_row(rows[0]) if rows else self._record
        except DatabaseError:
            # The lock connection broke, and the lock went with it: finish through the pool.
            if delete:
                processes.delete(self._database, self._record_id)
            else:
                self._database.execute(
                    "process_set_lock_type", {"id": self._record_id, "lock_type": None}
                )
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

        Creates the row on first use and refreshes it when stale. A failed refresh is logged and
        the id still returned while the last heartbeat is younger than the expiry interval; after
        that it raises: other processes may have judged this one dead and handed its claims out,
        so it must not claim more until a heartbeat succeeds again.
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
                            extra={"process_id": str(self._record_id), "action": "heartbeat"},
                        )
                        raise
                    logger.warning(
                        "heartbeat failed; retrying on the next claim",
                        exc_info=True,
                        extra={"process_id": str(self._record_id), "action": "heartbeat"},
                    )
            return self._record_id

    def hold(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Note jobs this process just claimed."""
        with self._held_lock:
            self._held.update(job_ids)

    def let_go(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Forget jobs whose claims ended (recorded, given back, fenced out)."""
        with self._held_lock:
            self._held.difference_update(job_ids)

    def renew(self, silent: bool = False) -> None:
        """Refresh the row if stale (re-taking a lost advisory lock), give back the claims this
        process holds without knowing it, then sweep dead processes."""
        registered = False
        with self._mutex:
            if self._locks and self._record is not None:
                registered = True
                if self._advisory_locks and not self.advisory_locked():
                    logger.warning(
                        "advisory lock lost with its connection; taking it again",
                        extra={"process_id": str(self._record_id), "action": "relock"},
                    )
                    self._lock(None)
                elif self._stale(early=JITTER):
                    self._refresh()
        if registered:
            with self._held_lock:
                held = set(self._held)
            older_than = ORPHAN_PERIODS * self.settings.process_stale_seconds
            released = processes.release_orphans(self._database, self._record_id, held, older_than)
            if released:
                logger.warning(
                    "gave back claims whose replies were lost with their connection",
                    extra={"action": "orphans", "released_jobs": released},
                )
        result = processes.sweep(self._database)
        if result.dead_processes or result.released_jobs:
            log = logger.debug if silent else logger.info
            log(
                "swept dead processes",
                extra={
                    "action": "sweep",
                    "dead_processes": result.dead_processes,
                    "released_jobs": result.released_jobs,
                    "terminated_sessions": result.terminated_sessions,
                },
            )

    def _renew_from(self, task: _RefreshTask) -> None:
        # A task cancelled while it waited for the mutex must not write a row that the last
        # unregister just deleted.
        with self._mutex:
            if task.cancelled or task is not self._refresh_task:
                return
            self.renew(silent=True)

    def heartbeat_only(self) -> None:
        """Mark the row heartbeat-only now: the connection that held its advisory lock died
        while this process lives (a proxy's idle timeout, a terminated backend), so other
        processes must judge it by its heartbeat, not by the lost lock, and not re-run its jobs.
        """
        with self._mutex:
            if self._locks and self._record is not None and self._advisory_locks == 0:
                self._refresh()

    def _stale(self, early: float = 0.0) -> bool:
        """Whether the heartbeat is due; ``early`` (a share of the period) makes it due that much
        sooner. The refresh task ticks once a period, a little after the last heartbeat was
        stamped (the stamp follows the write's round trip), so it asks with JITTER: without
        it, a tick that came a moment early skipped its heartbeat and the next one came two
        periods after the last."""
        stale: float = self.settings.process_stale_seconds
        return time.monotonic() - self._last_heartbeat >= stale * (1 - early)

    def _expired(self) -> bool:
        expired: float = self.settings.process_expired_seconds
        return time.monotonic() - self._last_heartbeat >= expired

    def _refresh(self) -> None:
        """Write the heartbeat through the pool, never over the lock connection."""
        record, created = processes.upsert(
            self._database, self._record_id, self.state(), advisory=self._lock_conn is not None
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

    # -- fork safety --------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        """In a forked child: a new identity with nothing registered and nothing inherited.

        The parent's lock connection is kept referenced, never closed (closing it would end the
        parent's session and drop the parent's lock). The executor is forgotten too: its worker
        threads do not exist in the child, so work submitted to it might never run.
        """
        if self._lock_conn is not None:
            inherited.append(self._lock_conn)
        self._mutex = threading.RLock()
        self._executor = None
        self._locks = 0
        self._advisory_locks = 0
        self._record_id = uuid.uuid4()
        self._record = None
        self._lock_conn, self._owns_lock_conn = None, False
        self._refresh_task = None  # its thread does not exist in the child
        self._last_heartbeat = 0.0
        self._held = set()
        self._held_lock = threading.Lock()


def _after_fork_in_child() -> None:
    for tracker in CapsuleTracker.instances:
        tracker._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["CapsuleTracker", "Registration"]
