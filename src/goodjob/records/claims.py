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
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from goodjob.db import CHANNEL, Database, json_text
from goodjob.db.queries import qualify
from goodjob.queues import QueueSelection
from goodjob.records.settling import settling
from goodjob.serialization import load_headers

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
# Concurrency keys (goodjob.Concurrency), in one of two forms too. With no queued job that has
# a key, a gate as for pauses: one probe of the goodjob_jobs_keyed_queued index. With some, the
# gated form, still one statement: it finds the keys of the first due keyed jobs, locks their
# rows, takes each key's next jobs within its free slots, and merges them in claim order with
# the jobs without a key, claimed as ever.
_NO_KEYED = """AND NOT EXISTS (SELECT 1 FROM goodjob_jobs k
                      WHERE k.concurrency_key IS NOT NULL AND k.finished_at IS NULL
                        AND k.locked_by_id IS NULL)"""
# The keyed jobs the gated claim looks at first, in one of two forms. Its usual form walks the
# first {window} due keyed jobs in claim order, through the goodjob_jobs_keyed_due index (on
# locked_at, the same as locked_by_id IS NULL: see goodjob_jobs_locked_together): O(window), not
# O(keys). When the walk met too few keys with a free slot (every job it read belonged to full
# keys), the claim is made again in the full form, which reads each key's next due job.
_WALK = """
walk AS MATERIALIZED (
    SELECT j.concurrency_key AS key, j.queue_name, j.priority, j.scheduled_at, j.id, j.ctid AS tid
    FROM goodjob_jobs j
    WHERE j.concurrency_key IS NOT NULL AND j.finished_at IS NULL AND j.locked_at IS NULL
      AND j.scheduled_at <= now() {queue_filter} {filters} {pauses}
    ORDER BY j.priority, j.scheduled_at, j.id
    LIMIT {window}
),"""
_EVERY_KEY = """
walk AS MATERIALIZED (
    SELECT c.key, d.queue_name, d.priority, d.scheduled_at, d.id
    FROM goodjob_concurrency c
    CROSS JOIN LATERAL (
        SELECT j.queue_name, j.priority, j.scheduled_at, j.id
        FROM goodjob_jobs j
        WHERE j.concurrency_key = c.key AND j.finished_at IS NULL AND j.locked_by_id IS NULL
          AND j.scheduled_at <= now() {queue_filter} {filters} {pauses}
        ORDER BY j.priority, j.scheduled_at, j.id
        LIMIT 1
    ) AS d
),"""
# When a key's perform throttle admits a start again: its oldest start the throttle still counts,
# plus the period; null when the throttle is not full.
_REOPENS = """
        SELECT CASE WHEN cardinality(c.starts) >= c.perform_throttle
                         AND c.starts[cardinality(c.starts) - c.perform_throttle + 1]
                             + make_interval(secs => c.perform_throttle_seconds)
                             > statement_timestamp()
                    THEN c.starts[cardinality(c.starts) - c.perform_throttle + 1]
                         + make_interval(secs => c.perform_throttle_seconds)
               END AS reopens
    """
_GATE = """
due AS MATERIALIZED (
    -- Each walked key once, at its first job, with its free slots as this statement's snapshot
    -- sees them (null: no perform_limit): a key full by the last committed counts is not locked.
    SELECT d.*, t.reopens,
           c.perform_limit - (SELECT count(*) FROM goodjob_jobs r
                              WHERE r.concurrency_key = c.key AND r.finished_at IS NULL
                                AND r.locked_by_id IS NOT NULL) AS free
    FROM (SELECT DISTINCT ON (key) * FROM walk ORDER BY key, priority, scheduled_at, id) AS d
    JOIN goodjob_concurrency c ON c.key = d.key
    CROSS JOIN LATERAL ({reopens}) AS t
),
locked AS MATERIALIZED (
    -- The rows of the first keys with a free slot, passing over keys another claim or a limited
    -- enqueue holds (SKIP LOCKED: the next claim tries them). A row a transaction changed after
    -- this statement's snapshot is locked, and returned, in its newest version.
    SELECT c.key, c.perform_limit, c.perform_throttle, c.perform_throttle_seconds, c.starts
    FROM goodjob_concurrency c
    JOIN due ON due.key = c.key
    WHERE coalesce(due.free, 1) > 0 AND due.reopens IS NULL
    ORDER BY due.priority, due.scheduled_at, due.id
    LIMIT {limit}
    FOR NO KEY UPDATE OF c SKIP LOCKED
),
slots AS MATERIALIZED (
    -- Free slots of each locked key, counted once its row is locked: goodjob_running_jobs takes a
    -- snapshot of its own (volatile), which sees every claim of the key that committed, and none
    -- can commit while the lock is held (completions can, and only free more). The perform
    -- throttle counts the starts of the row's newest version up to now: the clock, not the
    -- statement's start, which may come before the starts of a claim that committed since.
    SELECT l.key,
           least(coalesce(l.perform_limit - goodjob_running_jobs(l.key), 2147483647),
                 coalesce(l.perform_throttle
                          - (SELECT count(*) FROM unnest(l.starts) AS s(at)
                             WHERE s.at > clock_timestamp()
                                          - make_interval(secs => l.perform_throttle_seconds)),
                          2147483647)) AS free
    FROM locked l
),"""
# The keyed jobs to claim, in one of two forms as well. After the walk: the walked jobs of the
# locked keys, within each key's free slots, in claim order, locked by the ctid the walk read
# (a job changed since then is locked in its new version and checked again). After reading
# every key: each key's next jobs, as many as it has free slots, through the index of queued
# keyed jobs (never past another key's backlog).
_KEYED_WALKED = """
keyed AS (
    SELECT j.id, j.ctid AS tid, j.queue_name, j.priority, j.scheduled_at
    FROM (
        SELECT w.id, w.tid
        FROM (SELECT walk.*, row_number() OVER (PARTITION BY walk.key
                                                ORDER BY priority, scheduled_at, id) AS nth
              FROM walk) AS w
        JOIN slots s ON s.key = w.key
        WHERE w.nth <= s.free
        ORDER BY w.priority, w.scheduled_at, w.id
        LIMIT {limit}
    ) AS w
    JOIN goodjob_jobs j ON j.ctid = w.tid
    WHERE j.id = w.id AND j.finished_at IS NULL AND j.locked_by_id IS NULL
      AND j.scheduled_at <= now()
      AND EXISTS (SELECT 1 FROM me)
      AND (NOT {skip_advisory_locked} OR goodjob_lock_key(j.id) NOT IN (SELECT key FROM held))
    FOR NO KEY UPDATE OF j SKIP LOCKED
),"""
_KEYED_EVERY = """
keyed AS (
    SELECT k.*
    FROM slots s
    CROSS JOIN LATERAL (
        SELECT j.id, j.ctid AS tid, j.queue_name, j.priority, j.scheduled_at
        FROM goodjob_jobs j
        WHERE j.concurrency_key = s.key AND j.finished_at IS NULL AND j.locked_by_id IS NULL
          AND j.scheduled_at <= now() {queue_filter} {filters} {pauses}
          AND EXISTS (SELECT 1 FROM me)
          AND (NOT {skip_advisory_locked} OR goodjob_lock_key(j.id) NOT IN (SELECT key FROM held))
        ORDER BY j.priority, j.scheduled_at, j.id
        LIMIT least(s.free, {limit})
        FOR NO KEY UPDATE OF j SKIP LOCKED
    ) AS k
    WHERE s.free > 0
),"""
# The keys' walk reads this many due keyed jobs per job claimed (and at least WALK_MIN): enough
# to meet many keys when their jobs interleave, few enough to cost less than reading every key.
WALK_PER_JOB = 2
WALK_MIN = 20
_ALL_CHOSEN = "SELECT id, tid FROM candidates"
# The claim's order over both kinds; rows locked and not chosen stay unclaimed (their locks end
# with the claim's statement).
_MERGED = """SELECT j.id, j.tid
    FROM (SELECT * FROM candidates UNION ALL SELECT * FROM keyed) AS j
    ORDER BY {queue_order} j.priority, j.scheduled_at, j.id
    LIMIT {limit}"""
_NOTED = """
noted AS (
    -- The starts of each throttled key, newest last, as many as its throttle counts.
    UPDATE goodjob_concurrency k
    SET starts = (k.starts || array_fill(clock_timestamp(), ARRAY[x.n]))
                     [greatest(1, cardinality(k.starts) + x.n - k.perform_throttle + 1):],
        updated_at = now()
    FROM (SELECT concurrency_key AS key, count(*)::int AS n FROM claimed
          WHERE concurrency_key IS NOT NULL GROUP BY 1) AS x
    WHERE k.key = x.key AND k.perform_throttle IS NOT NULL
),
report AS (
    -- What the caller needs besides the jobs: how many jobs the walk read, and, for each queue,
    -- the throttled key that admits a start soonest, and when (its row is not locked; the worker
    -- sets a timer).
    SELECT json_build_object(
        'walked', (SELECT count(*) FROM walk),
        'throttled', (SELECT coalesce(json_agg(json_build_array(queue_name, reopens)), '[]')
                      FROM (SELECT DISTINCT ON (queue_name) queue_name,
                                   extract(epoch FROM reopens)::float8 AS reopens
                            FROM due
                            WHERE coalesce(free, 1) > 0 AND reopens IS NOT NULL
                            ORDER BY queue_name, reopens) AS throttled)
    ) AS report
),"""
# The gated form's one column more: the report, on every row (one row with no job when none),
# as text: the caller decodes it once, not once per job.
_REPORTED = ", r.report::text AS report"
_REPORT_JOIN = " RIGHT JOIN report r ON true"
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
    gated: bool = False  # jobs with concurrency keys are due: claim them within their limits

    def statement(self, db: Database, limit: int, *, every_key: bool = False) -> str:
        """The text of this spec's claim of up to ``limit`` jobs; in the gated form, one that
        walks the first due keyed jobs, or with ``every_key`` one that reads every key."""
        return _render(self, db.sql("jobs_claim"), db.schema, int(limit), every_key)

    def params(self, process_id: uuid.UUID, ids: Sequence[uuid.UUID] = ()) -> dict[str, Any]:
        """The parameters of this spec's claim."""
        params: dict[str, Any] = {"process_id": process_id, "queues": list(self.queues.names)}
        if self.only_ids:
            params["ids"] = list(ids)
        return params


def walk_window(limit: int) -> int:
    """How many due keyed jobs the keys' walk reads for a claim of ``limit`` jobs."""
    return max(WALK_MIN, WALK_PER_JOB * limit)


@functools.lru_cache(maxsize=256)
def _render(spec: ClaimSpec, template: str, schema: str, limit: int, every_key: bool) -> str:
    queues = spec.queues
    one_queue = queues.mode in ("include", "ordered") and len(queues.names) == 1
    gated = spec.gated
    # In this order: the concurrency fragments hold the others' placeholders.
    fragments = {
        "gate_ctes": qualify((_EVERY_KEY if every_key else _WALK) + _GATE, schema) if gated else "",
        "gate_filter": "" if gated else qualify(_NO_KEYED, schema),
        "keyed": qualify(_KEYED_EVERY if every_key else _KEYED_WALKED, schema) if gated else "",
        "chosen": _MERGED if gated else _ALL_CHOSEN,
        "gate_noted": qualify(_NOTED, schema) if gated else "",
        "report_column": _REPORTED if gated else "",
        "report_join": _REPORT_JOIN if gated else "",
        "now": "clock_timestamp()" if gated else "statement_timestamp()",
        "queue_filter": _ONE_QUEUE if one_queue else _QUEUE_FILTERS[queues.mode],
        "queue_order": _ORDERED if queues.mode == "ordered" and not one_queue else "",
        "filters": _ONLY_IDS if spec.only_ids else "",
        "pauses": qualify(_NOT_PAUSED if spec.paused else _NOTHING_PAUSED, schema),
        "skip_advisory_locked": "true" if spec.advisory else "false",
        "reopens": _REOPENS,
        "window": str(walk_window(limit)),
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
    concurrency_key: str | None = None
    cancelled: bool = False  # cancelled while its previous attempt ran: discarded, not run
    batch_id: uuid.UUID | None = None  # the batch it belongs to
    batch_callback_id: uuid.UUID | None = None  # the batch whose callback it is

    @property
    def headers(self) -> dict[str, str]:
        """The headers stored with the job at enqueue (a trace context), read on demand."""
        return load_headers(self.arguments)

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
            concurrency_key=row.get("concurrency_key"),
            cancelled=bool(row.get("cancelled")),
            batch_id=row.get("batch_id"),
            batch_callback_id=row.get("batch_callback_id"),
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
    throttled: Callable[[str, float], object] | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs for ``process_id`` in one statement (see ``jobs_claim``).
    ``throttled(queue, db_epoch)`` hears when a key whose perform throttle is full admits a start
    again, and where its next job waits."""
    params = spec.params(process_id, ids)
    if not spec.gated:
        rows = db.execute_text(spec.statement(db, limit), params)
        return [ClaimedJob.from_row(row, claimed_at, pool) for row in rows]
    rows = db.execute_text(spec.statement(db, limit), params)
    report = json.loads(rows[0]["report"])
    short = limit - sum(row["id"] is not None for row in rows)
    if short > 0 and report["walked"] >= walk_window(limit):
        # Keys past the walk may have free slots (the jobs it read were full keys'): once more,
        # reading every key.
        more = db.execute_text(spec.statement(db, short, every_key=True), params)
        rows += more
        report["throttled"] += json.loads(more[0]["report"])["throttled"]
    if throttled is not None:
        for queue, epoch in report["throttled"]:
            throttled(queue, epoch)
    return [ClaimedJob.from_row(row, claimed_at, pool) for row in rows if row["id"] is not None]


def complete(
    db: Database, process_id: uuid.UUID, outcomes: Sequence[Outcome], preserve: Sequence[bool]
) -> set[uuid.UUID]:
    """Record ``outcomes``, fenced; returns the ids recorded (a zombie's are missing).

    ``preserve`` says, per outcome, whether a finished job's row is kept. Recorded retries and
    releases wake their queues once each, with the earliest time one of their jobs is due.
    Outcomes of batches' jobs are recorded with their batches locked, and settled (callbacks
    enqueued) in the same transaction (records/settling.py).
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
    # The queues to wake when these outcomes commit: a retried or released job is due again,
    # or a slot of a key is free (workers hear it now, not at their next poll).
    due: dict[str, float] = {}
    for o in outcomes:
        if o.kind in ("retry", "release"):
            due[o.job.queue_name] = min(o.wait, due.get(o.job.queue_name, o.wait))
        elif o.job.concurrency_key is not None:
            due[o.job.queue_name] = 0.0
    params.update(channel=CHANNEL, wake_queues=list(due), wake_waits=list(due.values()))
    # The batches whose state these outcomes may change: a job belongs to one, or runs one's
    # callback (never both).
    batches = [o.job.batch_id or o.job.batch_callback_id for o in outcomes]
    if not any(batches):
        rows = db.execute("jobs_complete", params)
    else:
        with settling(db, batches) as tx:
            rows = db.execute("jobs_complete", params, conn=tx)
    return {row["id"] for row in rows if row["id"] is not None}


def recorded_before(
    db: Database, process_id: uuid.UUID, outcomes: Sequence[Outcome]
) -> set[uuid.UUID]:
    """The ids of ``outcomes`` that an earlier try of :func:`complete` recorded: one whose
    connection broke after its commit, so it could not say so (``executions_recorded``)."""
    if not outcomes:
        return set()
    params = {
        "process_id": process_id,
        "ids": [o.job.id for o in outcomes],
        "attempts": [o.job.attempt for o in outcomes],
        "errors": [o.error for o in outcomes],
    }
    return {row["id"] for row in db.execute("executions_recorded", params)}


def unclaim(db: Database, process_id: uuid.UUID, jobs: Sequence[ClaimedJob]) -> None:
    """Give back claims of jobs that never started, as if they had not been claimed."""
    if jobs:
        params = {
            "process_id": process_id,
            "ids": [job.id for job in jobs],
            "attempts": [job.attempt for job in jobs],
        }
        db.execute("jobs_unclaim", params)


def special(db: Database) -> tuple[bool, bool]:
    """(anything paused, any due job with a concurrency key): which claim form to use."""
    row = db.execute("claims_special")[0]
    return bool(row["paused"]), bool(row["gated"])


def held(db: Database, process_id: uuid.UUID, job: ClaimedJob) -> bool:
    """Whether ``process_id`` still holds its claim of ``job``'s attempt."""
    row = db.fetchone(
        "job_claim_held", {"id": job.id, "process_id": process_id, "attempt": job.attempt}
    )
    return bool(row and row["held"])


def renotify(db: Database, due: dict[str, float], conn: Any = None) -> None:
    """Wake the workers serving each queue of ``due``: a job there is due in that many seconds
    (at the commit of ``conn``'s transaction, when given)."""
    params = {"channel": CHANNEL, "queues": list(due), "waits": list(due.values())}
    db.execute("jobs_renotify", params, conn=conn)
