"""Per-job session advisory locks, for the ``advisory`` and ``hybrid`` lock strategies.

GoodJob's advisory strategies hold a session advisory lock on the job's id while it runs. Here the
claim itself is always ``locked_by_id`` (DESIGN section 1); the advisory lock is held on top of
it, so that while a job's code is still running somewhere (even in a worker whose claim was swept
away after a stalled heartbeat) no other worker claims it: the claim statement passes over jobs
whose lock is held.

Every lock of the process is held on one dedicated connection, taken and released a batch at a
time, so the strategy costs one connection per process whatever its thread count (issue 11: it
used to open one per claimed job, 25 for a 5-thread pool draining a backlog). When that
connection dies its locks go with it; the claims stay fenced by ``locked_by_id``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable

from goodjob.db import Database, DedicatedConnection
from goodjob.errors import DatabaseError

logger = logging.getLogger("goodjob.job_locks")


class JobLocks:
    """Session advisory locks on job ids, all on one connection of this process."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._mutex = threading.Lock()  # one statement at a time on the connection
        self._conn: DedicatedConnection | None = None
        self._held: set[uuid.UUID] = set()

    def __len__(self) -> int:
        return len(self._held)

    def held(self, job_id: uuid.UUID) -> bool:
        """Whether this process holds the advisory lock of ``job_id``."""
        return job_id in self._held

    def acquire(self, job_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Take the locks of ``job_ids`` in one statement; the ids whose lock was free."""
        ids = list(job_ids)
        if not ids:
            return set()
        with self._mutex:
            conn = self._connection()
            try:
                rows = conn.execute("job_advisory_lock", {"ids": ids})
            except DatabaseError:
                self._lost()
                raise
            locked = {row["id"] for row in rows}
            self._held |= locked
        return locked

    def release(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Release the locks of ``job_ids`` that this process holds, in one statement."""
        with self._mutex:
            ids = [job_id for job_id in job_ids if job_id in self._held]
            if not ids or self._conn is None:
                return
            try:
                self._conn.execute("job_advisory_unlock", {"ids": ids})
            except DatabaseError as exc:
                # A broken connection has lost every lock with its session: none is left held.
                logger.warning("job lock release failed: %s", exc, extra={"action": "unlock"})
                self._lost()
                return
            self._held.difference_update(ids)

    def _connection(self) -> DedicatedConnection:
        if self._conn is None or self._conn.closed:
            self._lost()
            self._conn = self._database.dedicated("job-locks")
        return self._conn

    def _lost(self) -> None:
        """The connection is gone or unusable: so are the locks its session held."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._held.clear()

    def close(self) -> None:
        """Close the connection; the locks it held go with its session."""
        with self._mutex:
            self._lost()
