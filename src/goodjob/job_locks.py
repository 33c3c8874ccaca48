"""Per-job session advisory locks, for the ``advisory`` and ``hybrid`` lock strategies.

GoodJob's advisory strategies hold a session advisory lock on the job's id while it runs. Here the
claim itself is always ``locked_by_id`` (DESIGN section 1); the advisory lock is held on top of
it, so that while a job's code is still running somewhere (even in a worker whose claim was swept
away after a stalled heartbeat) no other worker claims it: the claim statement passes over jobs
whose lock is held. The cost is one dedicated connection per running job; idle ones are kept for
reuse, up to :data:`MAX_IDLE`.
"""

from __future__ import annotations

import logging
import threading
import uuid

from goodjob.db import Database, DedicatedConnection
from goodjob.errors import DatabaseError

logger = logging.getLogger("goodjob.job_locks")

MAX_IDLE = 5  # idle lock connections kept open for the next jobs


class JobLocks:
    """Session advisory locks on job ids, each on a connection of its own while held."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._mutex = threading.Lock()
        self._held: dict[uuid.UUID, DedicatedConnection] = {}
        self._idle: list[DedicatedConnection] = []

    def __len__(self) -> int:
        return len(self._held)

    def held(self, job_id: uuid.UUID) -> bool:
        """Whether this process holds the advisory lock of ``job_id``."""
        return job_id in self._held

    def acquire(self, job_id: uuid.UUID) -> bool:
        """Take the job's lock on a free connection; False when another session holds it."""
        with self._mutex:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._database.dedicated("job-lock")
        try:
            locked = bool(conn.execute("job_advisory_lock", {"id": job_id})[0]["locked"])
        except BaseException:
            conn.close()
            raise
        with self._mutex:
            if locked:
                self._held[job_id] = conn
            else:
                self._park(conn)
        return locked

    def release(self, job_id: uuid.UUID) -> None:
        """Release the job's lock if this process holds it (closing the connection on error)."""
        with self._mutex:
            conn = self._held.pop(job_id, None)
        if conn is None:
            return
        try:
            conn.execute("job_advisory_unlock", {"id": job_id})
        except DatabaseError as exc:
            # A broken connection has lost the lock with its session: nothing is left held.
            logger.warning("job lock release failed: %s", exc, extra={"job_id": str(job_id)})
            conn.close()
            return
        with self._mutex:
            self._park(conn)

    def _park(self, conn: DedicatedConnection) -> None:
        if len(self._idle) < MAX_IDLE and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every connection; the locks they held go with their sessions."""
        with self._mutex:
            conns = [*self._held.values(), *self._idle]
            self._held.clear()
            self._idle.clear()
        for conn in conns:
            conn.close()
