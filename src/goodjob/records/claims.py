"""Claims: taking due jobs for a process, recording how their attempts ended, giving them back.

Every statement that claims a job, records its outcome or releases its claim is here, rendered
from one description of a pool's claim, :class:`ClaimSpec`. The claim's text varies with the
spec (the queue selection's filter and order, the lock strategy, the fixed extra filters) and
with the number of jobs claimed; each variant is a statement of its own, written out rather than
parameterized so that Postgres plans it once and keeps the plan (issue 5), and the variants are
a small fixed set: a test explains every one (``tests/integration/test_dequeue_plans.py``).

Fencing: a claim writes the process id to ``locked_by_id`` and counts the attempt; an outcome is
recorded only where the job still names that process and that attempt, so a worker that lost
its claim (a zombie) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from goodjob.db import CHANNEL, Database, json_text
from goodjob.db.queries import qualify
from goodjob.queues import QueueSelection

Kind = Literal["succeeded", "discarded", "retry", "release"]

# The queue selection's part of a claim. One named queue is an equality, not `= ANY(array)`:
# only an equality lets the planner read goodjob_jobs_dequeue_queue in claim order; with `= ANY`
# it walks goodjob_jobs_dequeue_any and filters, so a claim from a small queue read the whole
# backlog of every other queue ahead of it (100,000 due jobs elsewhere: 53.6 ms per claim
# instead of 0.2 ms; issue 5).
_QUEUE_FILTERS = {
    "all": "",
    "include": "AND j.queue_name = ANY(%(queues)s::text[])",
    "exclude": "AND j.queue_name <> ALL(%(queues)s::text[])",
    "ordered": "AND j.queue_name = ANY(%(queues)s::text[])",
}
_ONE_QUEUE = "AND j.queue_name = (%(queues)s::text[])[1]"
_ORDERED = "array_position(%(queues)s::text[], j.queue_name),"
# Filters a spec may add, each fixed text: only these jobs (inline mode runs the jobs it
# enqueued, nothing else). Concurrency gates take their place here.
_ONLY_IDS = "AND j.id = ANY(%(ids)s::uuid[])"
# Pauses (gj.pause), in one of two forms. With nothing paused, the usual case, a gate that reads
# goodjob_settings once per claim and passes everything (or nothing, should a pause have come:
# the caller then switches form): filters on each candidate would change the plan, the
# planner then expecting few rows and sorting the backlog instead of walking a dequeue index.
# With something paused, a primary-key probe of goodjob_settings per candidate, as the dequeue
# index yields it.
_NOTHING_PAUSED = "AND NOT EXISTS (SELECT 1 FROM goodjob_settings WHERE key LIKE 'pause:%%')"
_NOT_PAUSED = """AND NOT EXISTS (SELECT 1 FROM goodjob_settings s
                      WHERE s.key = 'pause:queue:' || j.queue_name)
      AND NOT EXISTS (SELECT 1 FROM goodjob_settings s
                      WHERE s.key = 'pause:task:' || j.task_name)
      AND NOT EXISTS (SELECT 1 FROM goodjob_settings s, unnest(j.labels) AS l(label)
                      WHERE s.key = 'pause:label:' || l.label)"""


@dataclass(frozen=True)
class ClaimSpec:
    """What one pool claims: its queues, whether it takes advisory locks, and its filters."""

    queues: QueueSelection = field(default_factory=QueueSelection)
    advisory: bool = False  # the advisory and hybrid strategies: skip jobs whose lock is held
    only_ids: bool = False  # claim only the jobs whose ids are given (inline mode)
    paused: bool = False  # something is paused: pass over its jobs one by one

    def statement(self, db: Database, limit: int) -> str:
        """The text of this spec's claim of up to ``limit`` jobs."""
        return _render(self, db.sql("jobs_claim"), db.schema, int(limit))

    def params(self, process_id: uuid.UUID, ids: Sequence[uuid.UUID] = ()) -> dict[str, Any]:
        """The parameters of this spec's claim."""
        params: dict[str, Any] = {"process_id": process_id, "queues": list(self.queues.names)}
        if self.only_ids:
            params["ids"] = list(ids)
        return params


@functools.lru_cache(maxsize=256)
def _render(spec: ClaimSpec, template: str, schema: str, limit: int) -> str:
    queues = spec.queues
    one_queue = queues.mode in ("include", "ordered") and len(queues.names) == 1
    fragments = {
        "queue_filter": _ONE_QUEUE if one_queue else _QUEUE_FILTERS[queues.mode],
        "queue_order": _ORDERED if queues.mode == "ordered" and not one_queue else "",
        "filters": _ONLY_IDS if spec.only_ids else "",
        "pauses": qualify(_NOT_PAUSED if spec.paused else _NOTHING_PAUSED, schema),
        "skip_advisory_locked": "true" if spec.advisory else "false",
        "limit": str(limit),
    }
    for key, fragment in fragments.items():
        template = template.replace("{" + key + "}", fragment)
    return template


@dataclass(frozen=True)
class ClaimedJob:
    """A job this process claimed: what its worker thread needs to run it."""

    id: uuid.UUID
    queue_name: str
    priority: int
    task_name: str
    arguments: str  # JSON text, decoded by the thread that runs the job
    scheduled_at: dt.datetime
    attempt: int
    labels: tuple[str, ...]
    interrupted: bool
    claimed_at: float = 0.0  # time.monotonic() when the claim returned
    pool: int = 0  # the index of the pool that claimed it

    @classmethod
    def from_row(cls, row: dict[str, Any], claimed_at: float = 0.0, pool: int = 0) -> ClaimedJob:
        return cls(
            id=row["id"],
            queue_name=row["queue_name"],
            priority=row["priority"],
            task_name=row["task_name"],
            arguments=row["arguments"],
            scheduled_at=row["scheduled_at"],
            attempt=row["executions_count"],
            labels=tuple(row["labels"] or ()),
            interrupted=row["interrupted"],
            claimed_at=claimed_at,
            pool=pool,
        )


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, ready to be recorded. Its texts are already in a form Postgres
    accepts, its result already JSON text."""

    job: ClaimedJob
    kind: Kind
    duration: float
    result: str | None = None
    error: str | None = None
    error_event: str | None = None
    backtrace: str | None = None
    wait: float = 0.0
    exception: BaseException | None = None

    @property
    def failed(self) -> bool:
        """Whether the attempt raised (also true of a handled error)."""
        return self.error is not None


def claim(
    db: Database,
    spec: ClaimSpec,
    process_id: uuid.UUID,
    limit: int,
    *,
    claimed_at: float,
    pool: int = 0,
    ids: Sequence[uuid.UUID] = (),
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs for ``process_id`` in one statement (see ``jobs_claim``)."""
    rows = db.execute_text(spec.statement(db, limit), spec.params(process_id, ids))
    return [ClaimedJob.from_row(row, claimed_at, pool) for row in rows]


def complete(
    db: Database, process_id: uuid.UUID, outcomes: Sequence[Outcome], preserve: Sequence[bool]
) -> set[uuid.UUID]:
    """Record ``outcomes``, fenced; returns the ids recorded (a zombie's are missing).

    ``preserve`` says, per outcome, whether a finished job's row is kept. Recorded retries and
    releases wake their queues once each, with the earliest time one of their jobs is due.
    """
    params = {
        "process_id": process_id,
        "ids": [o.job.id for o in outcomes],
        "attempts": [o.job.attempt for o in outcomes],
        "kinds": [o.kind for o in outcomes],
        "results": [
            json_text(o.result or "null") if o.kind == "succeeded" else None for o in outcomes
        ],
        "errors": [o.error for o in outcomes],
        "error_events": [o.error_event for o in outcomes],
        "backtraces": [o.backtrace for o in outcomes],
        "waits": [o.wait for o in outcomes],
        "durations": [o.duration for o in outcomes],
        "preserve": list(preserve),
    }
    recorded = {row["id"] for row in db.execute("jobs_complete", params)}
    due: dict[str, float] = {}
    for o in outcomes:
        if o.kind in ("retry", "release") and o.job.id in recorded:
            due[o.job.queue_name] = min(o.wait, due.get(o.job.queue_name, o.wait))
    for queue, wait in due.items():
        renotify(db, queue, wait)
    return recorded


def unclaim(db: Database, process_id: uuid.UUID, jobs: Sequence[ClaimedJob]) -> None:
    """Give back claims of jobs that never started, as if they had not been claimed."""
    if jobs:
        params = {
            "process_id": process_id,
            "ids": [job.id for job in jobs],
            "attempts": [job.attempt for job in jobs],
        }
        db.execute("jobs_unclaim", params)


def anything_paused(db: Database) -> bool:
    """Whether any queue, task or label is paused (which claim form to use)."""
    return bool(db.execute("pauses_any")[0]["paused"])


def held(db: Database, process_id: uuid.UUID, job: ClaimedJob) -> bool:
    """Whether ``process_id`` still holds its claim of ``job``'s attempt."""
    row = db.fetchone(
        "job_claim_held", {"id": job.id, "process_id": process_id, "attempt": job.attempt}
    )
    return bool(row and row["held"])


def renotify(db: Database, queue: str, wait: float = 0.0) -> None:
    """Wake the workers serving ``queue``: a job there is due in ``wait`` seconds."""
    db.execute("jobs_renotify", {"channel": CHANNEL, "queue": queue, "wait": wait})
