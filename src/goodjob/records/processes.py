"""The process record: one row per worker process, its state, its liveness, and the sweep.

Liveness is judged by the database alone, with the database clock: a row is alive while its
heartbeat (``updated_at``) is younger than the expiry interval, and an ``advisory`` row only
while its session advisory lock is held too (Postgres drops it the moment the process's
connection dies, so a killed process is dead at once). The heartbeat alone catches what the lock
cannot: a process that hangs, or whose host vanished, keeps its session and its lock.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from goodjob.db import CHANNEL, Database, DedicatedConnection, json

SWEEP_LOCK_KEY = 7_306_531_104_532_211_202  # arbitrary, fixed: "one sweeper at a time"
# After a server restart every advisory lock is gone at once; give the processes whose rows were
# last refreshed before the restart this long to reconnect and lock again before they count as
# dead. A row refreshed after the restart gets no grace: its lock was lost later, so it is dead.
RESTART_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class ProcessRecord:
    """One row of ``goodjob_processes``, with its liveness when the query judged it."""

    id: uuid.UUID
    state: dict[str, Any]
    lock_type: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    alive: bool | None = None
    advisory_locked: bool | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProcessRecord:
        """The record of a row as ``processes_list`` returns it."""
        return cls(
            id=row["id"],
            state=row["state"],
            lock_type=row["lock_type"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            alive=row.get("alive"),
            advisory_locked=row.get("advisory_locked"),
        )


def memory_kb(pid: int | None = None) -> int:
    """Resident memory of a process in kB (Linux), 0 where unknown."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _version() -> str:
    try:
        return metadata.version("goodjob")
    except metadata.PackageNotFoundError:
        return "unknown"


def process_state() -> dict[str, Any]:
    """What every process row says about its process (its tracker adds its capsule's figures)."""
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "proctitle": " ".join(sys.argv) or sys.executable,
        "memory": memory_kb(),
        "version": _version(),
    }


def upsert(
    db: Database,
    process_id: uuid.UUID,
    state: dict[str, Any],
    *,
    advisory: bool,
    conn: DedicatedConnection | None = None,
) -> tuple[ProcessRecord, bool]:
    """Create or refresh the row; returns it and whether it was (re-)created."""
    params = {
        "id": process_id,
        "state": json(state),
        "lock_type": "advisory" if advisory else None,
    }
    rows = conn.execute("process_upsert", params) if conn else db.execute("process_upsert", params)
    return ProcessRecord.from_row(rows[0]), bool(rows[0]["inserted"])


def delete(db: Database, process_id: uuid.UUID) -> None:
    """Delete the row and release the claims of its unfinished jobs."""
    db.execute("process_delete", {"id": process_id})


def liveness_params(db: Database) -> dict[str, Any]:
    """The sweeper's judgement: the expiry, and the grace after a server restart.

    The grace spans at least two refresh periods: a live process notices its lost lock at its
    next refresh (up to one jittered period away) and may need a second try while the server
    finishes starting.
    """
    settings = db.settings
    grace = max(RESTART_GRACE_SECONDS, 2.2 * settings.process_stale_seconds)
    return {"expired": settings.process_expired_seconds, "restart_grace": grace}


def all_processes(db: Database) -> list[ProcessRecord]:
    """Every process row, with ``alive`` as the sweeper would judge it now."""
    return [ProcessRecord.from_row(r) for r in db.execute("processes_list", liveness_params(db))]


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did: whether it ran, how many processes it deleted and jobs it freed."""

    swept: bool  # False when another process was sweeping at the same moment
    dead_processes: int
    released_jobs: int
    terminated_sessions: int = 0  # sessions that still held a dead process's lock, ended


def sweep(db: Database) -> SweepResult:
    """Delete dead processes, release their jobs and orphaned claims, wake their queues."""
    row = db.execute(
        "processes_sweep",
        {**liveness_params(db), "sweep_key": SWEEP_LOCK_KEY, "channel": CHANNEL},
    )[0]
    return SweepResult(
        bool(row["swept"]),
        row["dead_processes"],
        row["released_jobs"],
        row["terminated_sessions"],
    )


def release_orphans(
    db: Database, process_id: uuid.UUID, held: set[uuid.UUID], older_than: float
) -> int:
    """Give back the claims of ``process_id`` older than ``older_than`` seconds that are not in
    ``held`` (claims whose reply a broken connection lost); how many."""
    params = {
        "process_id": process_id,
        "held": list(held),
        "older_than": older_than,
        "channel": CHANNEL,
    }
    return int(db.execute("process_orphans_release", params)[0]["released"])
