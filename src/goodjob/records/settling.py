"""Keeping a batch's state true as its jobs change: every change runs in a transaction that
locks the batch's row first and settles the batch last (``batches_settle``).

The lock is what makes a batch's callbacks run exactly once. Two processes finishing a batch's
last two jobs at the same moment each settle it in turn: the second, once the first committed,
reads both jobs finished and enqueues ``on_finish``; the first read the other still running and
enqueued nothing. Without the lock, each would have read the other's job as unfinished and
neither would have. The callback is inserted in the transaction that finished the last job, so a
crash between the two cannot lose it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from goodjob.db import CHANNEL, Database
from goodjob.db.database import caller_transaction
from goodjob.errors import BatchNotFound
from goodjob.ids import new_ids

EVENTS = ("finish", "success", "discard")  # what a batch's callbacks are told


@contextlib.contextmanager
def settling(
    db: Database,
    batch_ids: Iterable[uuid.UUID | None],
    conn: Any = None,
    *,
    must_exist: bool = False,
) -> Iterator[Any]:
    """A transaction (on ``conn``, the caller's, if given) for changing the jobs of these
    batches: their rows are locked when it begins and the batches settled before it commits.
    With ``must_exist``, a batch that has no row is a BatchNotFound."""
    ids = sorted({batch_id for batch_id in batch_ids if batch_id is not None})
    with db.transaction() if conn is None else caller_transaction(conn) as tx:
        if ids:
            locked = db.execute("batches_lock", {"ids": ids}, conn=tx)
            missing = set(ids) - {row["id"] for row in locked}
            if must_exist and missing:
                raise BatchNotFound(f"no batch has id {min(missing)}")
        yield tx
        if ids:
            settle(db, ids, tx)


@contextlib.contextmanager
def settling_job(db: Database, job_id: uuid.UUID) -> Iterator[Any]:
    """:func:`settling` for an operation on one job (retry, discard, cancel): the batch it
    belongs to, or whose callback it runs, if any."""
    with db.transaction() as tx:
        locked = db.execute("batches_lock_of_job", {"id": job_id}, conn=tx)
        yield tx
        if locked:
            settle(db, [locked[0]["id"]], tx)


def settle(db: Database, batch_ids: list[uuid.UUID], conn: Any) -> list[dict[str, Any]]:
    """Run ``batches_settle`` on ``conn``, inside a :func:`settling` transaction; the callbacks
    it enqueued (batch id, event, task)."""
    params = {
        "ids": batch_ids,
        "channel": CHANNEL,
        "callback_ids": new_ids(len(EVENTS) * len(batch_ids)),
    }
    return db.execute("batches_settle", params, conn=conn)
