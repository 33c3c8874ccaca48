"""The dashboard scenario's database: millions of jobs as a busy month leaves them, seeded in SQL.

Issue 17 asks every dashboard page to answer within 200 ms (p95) with 10,000,000 rows in
``goodjob_jobs``: mostly finished, 100,000 queued, 10,000 discarded. Enqueueing and running
that many jobs would take hours, so the rows are written by set-based statements
(``INSERT … SELECT generate_series``), a chunk of rows each, oldest first; each chunk's
``goodjob_executions`` rows (one per attempt, as claims write them) follow on a second
connection while the next chunk's jobs go in.

Where the rows sit, because the dashboard's plans depend on it:

- **Time-ordered ids** (:func:`goodjob.bench.seeding.uuid7`), inserted in id order: newest first
  is the primary key walked backwards, as on a real table.
- **The history**: the first ``rows - 2 * open`` rows, finished, spread evenly over the last 30
  days (two hours excepted). Discarded jobs are spread evenly over every finished row (one in
  a thousand at the default size), so a filter on them cannot stop early; about 3% of the
  succeeded jobs failed first and were retried (two or three executions).
- **The last two hours**: the open jobs (queued, scheduled, waiting for a retry, running)
  alternate with finished ones, so the overview's last-hour charts have hundreds of jobs a
  minute and the queued jobs sit among finished ones in id order. Running jobs are the newest,
  claimed by live process rows.
- **Tasks** in the proportions of :data:`TASKS`, each with its queue, priority, labels and
  typical duration (a few attempts are eight times slower, so p95 is not p50); one task has
  concurrency keys, one is run by batches, two are cron entries' runs.

The counts come from the row number alone (each kind is an exact count spread evenly, by
integer division), never from ``random()``: the same size gives the same table, up to the
ids' random bits.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from goodjob.bench.environment import scalar, sql
from goodjob.bench.seeding import settle, uuid7, uuid7_bound
from goodjob.records.processes import process_state

CHUNK = 1_000_000  # rows per INSERT: progress to print, and the returned rows stay small
HISTORY_DAYS = 30
TAIL_HOURS = 2  # the open jobs alternate with finished ones in the newest rows
RUNNING = 8  # running jobs, the newest open rows
RETRY_GAP = 30  # seconds between two attempts of a job
PAST_PROCESSES = 40  # worker processes that ran the history (their ids on the executions)
LIVE_PROCESSES = 4  # of them still alive: rows in goodjob_processes
KEYS = 500  # concurrency keys of the keyed task
ROWS_PER_BATCH = 50_000  # one batch per this many rows (its jobs are the batch task's)
MAX_BIGINT = 2**63 - 1  # a hash & this: never negative (abs() of the smallest bigint fails)
MIN_ROWS = 1_000
TABLES = ("goodjob_jobs", "goodjob_executions")


@dataclass(frozen=True)
class TaskSpec:
    """One seeded task: its share of the jobs and how its rows look."""

    name: str
    queue: str
    percent: int  # of the jobs (cron tasks: 0, placed by the clock instead)
    priority: int = 0
    ms: int = 100  # typical duration
    labels: tuple[str, ...] = ()
    arguments: str = '{"args": [%1$s], "kwargs": {}}'  # SQL format(): %1$s, %2$s numbers
    result: str = "null"
    keyed: bool = False
    batched: bool = False
    cron_key: str | None = None


TASKS = (
    TaskSpec(
        "myapp.mail.send_welcome",
        "mail",
        30,
        -5,
        40,
        ("email",),
        '{"args": [], "kwargs": {"user_id": %1$s, "email": "user%1$s@example.com"}}',
        '{"sent": true}',
    ),
    TaskSpec(
        "myapp.mail.send_digest",
        "mail",
        15,
        -5,
        120,
        ("email", "digest"),
        '{"args": [], "kwargs": {"user_id": %1$s, "email": "user%1$s@example.com"}}',
        '{"sent": true}',
    ),
    TaskSpec(
        "myapp.billing.charge_card",
        "billing",
        10,
        -10,
        300,
        ("billing", "critical"),
        '{"args": [%1$s], "kwargs": {"amount_cents": %2$s, "currency": "EUR"}}',
        '{"charge": "ch_%1$s"}',
    ),
    TaskSpec(
        "myapp.images.resize",
        "default",
        17,
        0,
        800,
        (),
        '{"args": ["s3://uploads/%1$s.jpg"], "kwargs": {"width": 640}}',
    ),
    TaskSpec("myapp.sync.sync_account", "default", 12, 0, 1500, ("sync",), keyed=True),
    TaskSpec(
        "myapp.search.reindex",
        "bulk",
        8,
        10,
        200,
        (),
        '{"args": ["product", %1$s], "kwargs": {}}',
    ),
    TaskSpec(
        "myapp.webhooks.deliver",
        "webhooks",
        5,
        0,
        250,
        ("webhook",),
        '{"args": ["https://hooks.example.com/%1$s"], "kwargs": {"event": "order.paid"}}',
    ),
    TaskSpec(
        "myapp.reports.export_rows",
        "reports",
        3,
        5,
        4000,
        ("reports",),
        '{"args": [%1$s], "kwargs": {"format": "csv"}}',
        '{"rows": %2$s}',
        batched=True,
    ),
    TaskSpec("myapp.reports.hourly_digest", "reports", 0, 5, 2500, cron_key="hourly_digest"),
    TaskSpec("myapp.maintenance.purge_expired", "default", 0, 20, 900, cron_key="purge_expired"),
)
RARE_LABEL = "vip"  # on one job in 200, whatever its task
BATCH_CALLBACK = "myapp.reports.export_done"

# Errors of discarded jobs (format(): %1$s a number), and their shares in twentieths.
DISCARD_ERRORS = (
    ("ValueError: invalid literal for int() with base 10: 'n/a-%1$s'", 8),
    ("KeyError: 'customer_%1$s'", 4),
    ("myapp.billing.PaymentDeclined: card declined (code %1$s)", 4),
    ("TimeoutError: upstream did not answer within 30 s (request %1$s)", 2),
    ("goodjob.JobTimeout: the job ran longer than its timeout of 60 s", 1),
    (
        "psycopg.errors.UniqueViolation: duplicate key value violates unique constraint"
        ' "accounts_email_key" (user %1$s)',
        1,
    ),
)
# Errors of attempts that were retried (the job waits for its retry, or succeeded later).
TRANSIENT_ERRORS = (
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "TimeoutError: timed out",
    "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable",
)
BACKTRACE = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/.venv/lib/python3.12/site-packages/goodjob/performer.py", line 212,'
    " in perform\n"
    "    value = call(*args, **kwargs)\n"
    '  File "/srv/app/%1$s.py", line %2$s, in %3$s\n'
    "    raise error\n"
    "%4$s"
)
PAUSES = ("pause:queue:bulk", "pause:label:digest")


@dataclass(frozen=True)
class Mix:
    """How many rows of each kind a table of ``rows`` jobs gets (issue 17's, at 10,000,000)."""

    rows: int

    @property
    def queued(self) -> int:
        return self.rows // 100

    @property
    def discarded(self) -> int:
        return self.rows // 1_000

    @property
    def scheduled(self) -> int:
        return self.rows // 1_000

    @property
    def retried(self) -> int:
        """Jobs waiting for their next attempt after an error (the dashboard's "retried")."""
        return self.rows // 10_000

    @property
    def running(self) -> int:
        return RUNNING

    @property
    def open(self) -> int:
        return self.queued + self.scheduled + self.retried + self.running

    @property
    def finished(self) -> int:
        return self.rows - self.open

    @property
    def history(self) -> int:
        """Rows before the last two hours, all finished."""
        return self.rows - 2 * self.open

    @property
    def batches(self) -> int:
        return max(1, self.rows // ROWS_PER_BATCH)

    def check(self) -> None:
        if self.rows < MIN_ROWS:
            raise ValueError(f"the dashboard's mix needs {MIN_ROWS:,} rows at least")


def _labels(t: str) -> str:
    """SQL: the labels of task number ``t`` (1-based), as constants (no array parsed per row)."""
    branches = " ".join(
        f"WHEN {i} THEN '{{{','.join(task.labels)}}}'::text[]"
        for i, task in enumerate(TASKS, 1)
        if task.labels
    )
    return f"CASE {t} {branches} END"


def _created(g: str) -> str:
    """SQL: the created_at of row number ``g`` (rows are evenly spaced within each part)."""
    return f"""CASE WHEN {g} <= %(history)s
        THEN %(now)s::timestamptz - make_interval(days => {HISTORY_DAYS})
             + make_interval(secs => ({g} - 1) * %(history_step)s)
        ELSE %(now)s::timestamptz - make_interval(hours => {TAIL_HOURS})
             + make_interval(secs => ({g} - %(history)s - 1) * %(tail_step)s) END"""


BATCHES = f"""
INSERT INTO goodjob_batches
    (id, description, properties, on_finish, callback_queue_name, enqueued_at, created_at,
     updated_at)
SELECT {uuid7("c.at")}, 'export #' || b, jsonb_build_object('export', b),
       %(callback)s, 'reports', c.at, c.at, c.at
FROM generate_series(1, %(batches)s::bigint) AS b,
     -- the batch is created a second before its first job (the rows' batch is 1 + (g-1)*B/N)
     LATERAL (SELECT ((b - 1) * %(rows)s + %(batches)s - 1) / %(batches)s + 1 AS g) AS first,
     LATERAL (SELECT {_created("first.g")} - interval '1 second' AS at) AS c
RETURNING id, created_at
"""

# One chunk of jobs (rows %(lo)s to %(hi)s), oldest first. Each step
# is a subquery of its own ("OFFSET 0" keeps the planner from merging it into the next): merged,
# every use of a column would compute its whole expression again, the row's time in each of
# the dozen places it is used (40 µs a row, against 8). "%%" is SQL's modulo.
JOBS = f"""
INSERT INTO goodjob_jobs
    (id, queue_name, priority, task_name, arguments, scheduled_at, performed_at, finished_at,
     error, error_event, executions_count, labels, locked_by_id, locked_at, concurrency_key,
     cron_key, cron_at, batch_id, result, created_at, updated_at)
SELECT {uuid7("r.created_at")},
       (%(queues)s::text[])[r.t], (%(priorities)s::int[])[r.t], (%(names)s::text[])[r.t],
       format((%(arguments)s::text[])[r.t], r.x1 %% 100000, r.x2 %% 50000 + 100)::jsonb,
       CASE r.kind
           WHEN 'queued' THEN r.created_at
           WHEN 'scheduled'
               THEN %(now)s::timestamptz + make_interval(mins => (1 + r.x3 %% 4320)::int)
           WHEN 'retried' THEN %(now)s::timestamptz + make_interval(secs => 10 + r.x3 %% 600)
           ELSE r.last_scheduled
       END,
       CASE WHEN r.n > 0 THEN r.performed END,
       CASE WHEN r.kind IN ('succeeded', 'discarded') THEN r.ended END,
       CASE r.kind
           WHEN 'discarded' THEN format((%(discard_errors)s::text[])[
               (%(discard_buckets)s::int[])[r.x3 / 7 %% 20 + 1]], r.x1 %% 1000)
           WHEN 'retried' THEN (%(transient_errors)s::text[])[r.x2 %% {len(TRANSIENT_ERRORS)} + 1]
       END,
       CASE r.kind
           WHEN 'discarded' THEN CASE WHEN r.n = 1 THEN 'discarded' ELSE 'retry_stopped' END
           WHEN 'retried' THEN 'retried'
       END,
       r.n,
       {_labels("r.t")}
           || CASE WHEN r.x3 %% 200 = 7 THEN ARRAY[%(rare_label)s::text] END,
       CASE WHEN r.kind = 'running' THEN (%(live)s::uuid[])[1 + r.k %% %(live_count)s] END,
       CASE WHEN r.kind = 'running' THEN r.performed END,
       CASE WHEN (%(keyed)s::bool[])[r.t] THEN 'sync_account:' || r.x3 %% {KEYS} END,
       (%(cron_keys)s::text[])[r.t],
       CASE WHEN (%(cron_keys)s::text[])[r.t] IS NOT NULL THEN r.created_at END,
       CASE WHEN (%(batched)s::bool[])[r.t]
            THEN (%(batch_ids)s::uuid[])[1 + (r.g - 1) * %(batches)s / %(rows)s] END,
       CASE WHEN r.kind = 'succeeded'
            THEN format((%(results)s::text[])[r.t], r.x1 %% 100000, r.x2 %% 5000)::jsonb END,
       r.created_at,
       CASE WHEN r.kind IN ('succeeded', 'discarded', 'retried') THEN r.ended
            WHEN r.kind = 'running' THEN r.performed
            ELSE r.created_at END
FROM (
    -- 5. when the last attempt ran and ended
    SELECT a.*, a.last_scheduled + a.latency AS performed,
           least(a.last_scheduled + a.latency + a.duration, %(now)s::timestamptz) AS ended
    FROM (
        -- 4. attempts: a few succeeded jobs failed first; discarded ones ran out of retries or
        -- were discarded at once; none of the newest ten minutes had time for a retry. Then
        -- the queue's latency and the task's duration (one attempt in 50 eight times it).
        SELECT n.*,
               n.created_at + make_interval(secs => {RETRY_GAP} * greatest(n.n - 1, 0))
                   AS last_scheduled,
               make_interval(secs => 0.005 + (n.x1 / 100 %% 2000)::float8 / 1000) AS latency,
               make_interval(secs => (%(durations)s::int[])[n.t]::float8 / 1000
                                     * (0.5 + (n.x2 / 100 %% 1000)::float8 / 1000)
                                     * CASE WHEN n.x3 / 10 %% 50 = 0 THEN 8 ELSE 1 END)
                   AS duration
        FROM (
            SELECT c.*, CASE
                WHEN c.kind IN ('queued', 'scheduled') THEN 0
                WHEN c.kind = 'running'
                  OR c.created_at > %(now)s::timestamptz - interval '10 minutes' THEN 1
                WHEN c.kind = 'succeeded'
                    THEN CASE WHEN c.x1 %% 100 < 3 THEN 2 + c.x3 %% 2 ELSE 1 END
                WHEN c.kind = 'discarded' THEN CASE WHEN c.x3 %% 5 < 2 THEN 1 ELSE 5 END
                ELSE 1 + c.x3 %% 3
            END AS n
            FROM (
                -- 3. the kind: each an exact count spread evenly over its rows (row i of m is
                -- one of the c picked when i * c / m steps up, in integer division); the task
                SELECT w.*, CASE
                    WHEN w.open AND w.k > %(open)s - %(running)s THEN 'running'
                    WHEN w.open AND w.k * %(scheduled)s / %(waiting)s
                                    > (w.k - 1) * %(scheduled)s / %(waiting)s THEN 'scheduled'
                    WHEN w.open AND w.k2 * %(retried)s / (%(waiting)s - %(scheduled)s)
                                    > (w.k2 - 1) * %(retried)s / (%(waiting)s - %(scheduled)s)
                        THEN 'retried'
                    WHEN w.open THEN 'queued'
                    WHEN w.f * %(discarded)s / %(finished)s
                         > (w.f - 1) * %(discarded)s / %(finished)s THEN 'discarded'
                    ELSE 'succeeded'
                END AS kind,
                CASE WHEN w.g %% %(cron_every)s = 0
                     THEN (%(cron_tasks)s::int[])[(w.g / %(cron_every)s) %% 2 + 1]
                     ELSE (%(buckets)s::int[])[w.x2 %% 100 + 1] END AS t
                FROM (
                    -- 2. where the row sits: in the history, or in the tail where open jobs
                    -- alternate with finished ones (k numbers the open rows, k2 those of them
                    -- not scheduled, f the finished rows, each from 1 in creation order)
                    SELECT p.*, p.k - p.k * %(scheduled)s / %(waiting)s AS k2
                    FROM (
                        -- 1. the row number, its time and its dice
                        SELECT g, {_created("g")} AS created_at,
                               g > %(history)s AND (g - %(history)s) %% 2 = 0 AS open,
                               (g - %(history)s) / 2 AS k,
                               CASE WHEN g <= %(history)s THEN g
                                    ELSE %(history)s + (g - %(history)s + 1) / 2 END AS f,
                               hashint8extended(g, 1) & {MAX_BIGINT} AS x1,
                               hashint8extended(g, 2) & {MAX_BIGINT} AS x2,
                               hashint8extended(g, 3) & {MAX_BIGINT} AS x3
                        FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
                        OFFSET 0
                    ) AS p
                    OFFSET 0
                ) AS w
                OFFSET 0
            ) AS c
            OFFSET 0
        ) AS n
        OFFSET 0
    ) AS a
    OFFSET 0
) AS r
"""

# The executions of the chunk of jobs (rows %(lo)s to %(hi)s) inserted before, read back by
# their ids: one per attempt, as claims write them.
EXECUTIONS = f"""
-- one execution per attempt: attempt i was scheduled (i-1) * {RETRY_GAP} s after the job's
-- creation, waited and ran as long as the last one did; the last one of a running job is open
INSERT INTO goodjob_executions
    (job_id, attempt, process_id, task_name, queue_name, scheduled_at, performed_at,
     finished_at, duration, error, error_event, error_backtrace, created_at, updated_at)
SELECT e.id, e.i, e.process_id, e.task_name, e.queue_name, e.scheduled_at, e.performed_at,
       e.finished_at, e.finished_at - e.performed_at, e.error,
       CASE WHEN e.error IS NULL THEN NULL
            WHEN e.i = e.executions_count THEN e.error_event ELSE 'retried' END,
       CASE WHEN e.error IS NOT NULL THEN format(%(backtrace)s, replace(e.task_name, '.', '/'),
           20 + get_byte(uuid_send(e.id), 13), split_part(e.task_name, '.', 3), e.error) END,
       e.performed_at, coalesce(e.finished_at, e.performed_at)
FROM (
    SELECT j.id, i, j.task_name, j.queue_name, j.executions_count, j.error_event, s.scheduled_at,
           s.scheduled_at + s.latency AS performed_at,
           CASE WHEN i = j.executions_count AND j.locked_by_id IS NOT NULL THEN NULL
                ELSE s.scheduled_at + s.latency + (j.updated_at - j.performed_at)
           END AS finished_at,
           CASE WHEN i < j.executions_count
                THEN coalesce(j.error, (%(transient_errors)s::text[])[
                    get_byte(uuid_send(j.id), 14) %% {len(TRANSIENT_ERRORS)} + 1])
                WHEN j.locked_by_id IS NULL THEN j.error
           END AS error,
           CASE WHEN i = j.executions_count AND j.locked_by_id IS NOT NULL THEN j.locked_by_id
                ELSE (%(past)s::uuid[])[1 + (get_byte(uuid_send(j.id), 15) + i) %% {PAST_PROCESSES}]
           END AS process_id
    FROM goodjob_jobs j
    CROSS JOIN LATERAL generate_series(1, j.executions_count) AS i
    CROSS JOIN LATERAL (
        SELECT j.created_at + make_interval(secs => {RETRY_GAP} * (i - 1)) AS scheduled_at,
               j.performed_at - j.created_at
                   - make_interval(secs => {RETRY_GAP} * (j.executions_count - 1)) AS latency
        OFFSET 0
    ) AS s
    -- the chunk's jobs: their ids' range for the primary key, their times for the exact edges
    WHERE j.id BETWEEN {uuid7_bound(_created("%(lo)s::bigint"), upper=False)}
                   AND {uuid7_bound(_created("%(hi)s::bigint"), upper=True)}
      AND j.created_at BETWEEN {_created("%(lo)s::bigint")} AND {_created("%(hi)s::bigint")}
      AND j.executions_count > 0
    ORDER BY j.id, i  -- in the order claims would have written them (and not as a parallel
    OFFSET 0          -- scan's workers happen to hand rows over)
) AS e
"""

# What the seeded jobs imply elsewhere: each batch's state, each open keyed job's key row, the
# cron entries' last runs, a few pauses.
AFTER = (
    """
    UPDATE goodjob_batches b
    SET jobs_finished_at = CASE WHEN NOT s.open THEN s.last END,
        finished_at = CASE WHEN NOT s.open THEN s.last END,
        discarded_at = s.first_discarded,
        updated_at = coalesce(CASE WHEN NOT s.open THEN s.last END, b.updated_at)
    FROM (SELECT batch_id, bool_or(finished_at IS NULL) AS open, max(finished_at) AS last,
                 min(finished_at) FILTER (WHERE error IS NOT NULL) AS first_discarded
          FROM goodjob_jobs WHERE batch_id IS NOT NULL GROUP BY batch_id) AS s
    WHERE s.batch_id = b.id
    """,
    """
    INSERT INTO goodjob_concurrency (key)
    SELECT DISTINCT concurrency_key FROM goodjob_jobs
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL
    ON CONFLICT (key) DO NOTHING
    """,
    """
    INSERT INTO goodjob_settings (key, value)
    SELECT 'cron:' || k, jsonb_build_object(
        'last_at', (SELECT max(cron_at) FROM goodjob_jobs WHERE cron_key = k))
    FROM unnest(%(cron_keys)s::text[]) AS k
    ON CONFLICT (key) DO NOTHING
    """,
    """
    INSERT INTO goodjob_settings (key, value)
    SELECT k, '{}'::jsonb FROM unnest(%(pauses)s::text[]) AS k
    ON CONFLICT (key) DO NOTHING
    """,
)

PROCESSES = """
INSERT INTO goodjob_processes (id, state, lock_type, created_at, updated_at)
SELECT id, state::jsonb, NULL, now() - interval '3 days', now()
FROM unnest(%(ids)s::uuid[], %(states)s::text[]) AS p(id, state)
"""


@dataclass(frozen=True)
class Seeded:
    """What the seed wrote, and how long it took."""

    rows: int
    executions: int
    seconds: float
    settle_seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _process_ids(url: str) -> list[str]:
    """Ids of the past worker processes, oldest first (the live ones are the last)."""
    rows = sql(
        url,
        f"SELECT {uuid7('now() - make_interval(days => 40 - g)')}::text"
        f" FROM generate_series(1, {PAST_PROCESSES}) AS g ORDER BY g",
    )
    return [row[0] for row in rows]


def _process_state(index: int) -> str:
    """A live process's row, as a worker's heartbeat writes it."""
    return json.dumps(
        {
            **process_state(),
            "hostname": f"worker-{index + 1}",
            "pid": 4000 + index,
            "proctitle": "goodjob start --app myapp.jobs:gj",
            "memory": 180_000 + 1_000 * index,
            "schedulers": [
                {
                    "queues": "*",
                    "max_threads": 5,
                    "busy_threads": 2,
                    "available_threads": 3,
                    "claims": 250_000,
                    "claimed": 2_500_000,
                    "returned": 0,
                }
            ],
            "cache": {"size": 12, "max": 10_000},
            "listening": True,
            "cron": {"enabled": index == 0, "entries": 2},
            "database_connection_pool": {"size": 5, "active": 2, "waiting": 0},
        }
    )


def _timeline(mix: Mix, now: dt.datetime) -> dict[str, Any]:
    """The parameters of :func:`_created`: seconds between two rows of each part."""
    history = dt.timedelta(days=HISTORY_DAYS, hours=-TAIL_HOURS)
    tail = dt.timedelta(hours=TAIL_HOURS, seconds=-5)  # the newest row: 5 s ago
    return {
        "now": now,
        "rows": mix.rows,
        "history": mix.history,
        "history_step": history.total_seconds() / mix.history,
        "tail_step": tail.total_seconds() / (2 * mix.open),
    }


def _params(mix: Mix, now: dt.datetime, batch_ids: list[str], past: list[str]) -> dict[str, Any]:
    buckets = [i + 1 for i, task in enumerate(TASKS) for _ in range(task.percent)]
    if len(buckets) != 100:
        raise ValueError("the seeded tasks' shares must add up to 100%")
    discard_buckets = [i + 1 for i, (_, share) in enumerate(DISCARD_ERRORS) for _ in range(share)]
    waiting = mix.open - mix.running
    return {
        **_timeline(mix, now),
        "open": mix.open,
        "finished": mix.finished,
        "running": mix.running,
        "waiting": waiting,
        "scheduled": mix.scheduled,
        "retried": mix.retried,
        "discarded": mix.discarded,
        "batches": mix.batches,
        "names": [t.name for t in TASKS],
        "queues": [t.queue for t in TASKS],
        "priorities": [t.priority for t in TASKS],
        "durations": [t.ms for t in TASKS],
        "arguments": [t.arguments for t in TASKS],
        "results": [t.result for t in TASKS],
        "keyed": [t.keyed for t in TASKS],
        "batched": [t.batched for t in TASKS],
        "cron_keys": [t.cron_key for t in TASKS],
        "cron_tasks": [i + 1 for i, t in enumerate(TASKS) if t.cron_key],
        # about one cron run an hour in the history
        "cron_every": max(2, mix.history // (HISTORY_DAYS * 24)),
        "buckets": buckets,
        "discard_errors": [text for text, _ in DISCARD_ERRORS],
        "discard_buckets": discard_buckets,
        "transient_errors": list(TRANSIENT_ERRORS),
        "rare_label": RARE_LABEL,
        "backtrace": BACKTRACE,
        "batch_ids": batch_ids,
        "past": past,
        "live": past[-LIVE_PROCESSES:],
        "live_count": LIVE_PROCESSES,
    }


def seed(url: str, rows: int, progress: Callable[[str], None]) -> Seeded:
    """Fill the (migrated, empty) database at ``url`` with ``rows`` jobs and their executions,
    then vacuum and analyze it; ``progress`` hears about every chunk."""
    mix = Mix(rows)
    mix.check()
    now = scalar(url, "SELECT now()")
    started = time.perf_counter()
    past = _process_ids(url)
    batch_rows = sql(
        url,
        BATCHES,
        {**_timeline(mix, now), "batches": mix.batches, "callback": BATCH_CALLBACK},
    )
    batch_ids = [str(row[0]) for row in sorted(batch_rows, key=lambda row: row[1])]
    params = _params(mix, now, batch_ids, past)
    # Autovacuum would scan the growing tables again and again while they are loaded (its
    # insert threshold); the settle below vacuums them once, and the setting is put back.
    for table in TABLES:
        sql(url, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    # The executions of one chunk go in on a second connection while the next chunk's jobs do:
    # the server is CPU-bound in each statement, and both tables still fill in id order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="goodjob-bench-seed") as pool:
        pending: Future[Any] | None = None
        for lo in range(1, rows + 1, CHUNK):
            hi = min(lo + CHUNK - 1, rows)
            sql(url, JOBS, {**params, "lo": lo, "hi": hi})
            if pending is not None:
                pending.result()
            pending = pool.submit(sql, url, EXECUTIONS, {**params, "lo": lo, "hi": hi})
            seconds = time.perf_counter() - started
            progress(f"dashboard: seeded {hi:,}/{rows:,} jobs ({hi / seconds:,.0f} jobs/s)")
        if pending is not None:
            pending.result()
    for table in TABLES:
        sql(url, f"ALTER TABLE {table} RESET (autovacuum_enabled)")
    cron_keys = [t.cron_key for t in TASKS if t.cron_key]
    for statement in AFTER:
        sql(url, statement, {"cron_keys": cron_keys, "pauses": list(PAUSES)})
    live = past[-LIVE_PROCESSES:]
    sql(url, PROCESSES, {"ids": live, "states": [_process_state(i) for i in range(len(live))]})
    seeded = time.perf_counter() - started
    progress("dashboard: VACUUM (ANALYZE) and CHECKPOINT ...")
    settle(url)
    sql(url, "ANALYZE goodjob_batches, goodjob_processes, goodjob_settings, goodjob_concurrency")
    executions = int(scalar(url, "SELECT count(*) FROM goodjob_executions"))
    return Seeded(rows, executions, seeded, time.perf_counter() - started - seeded)


def heartbeat(url: str) -> None:
    """Make the live process rows fresh again (measuring may start long after the seed)."""
    sql(url, "UPDATE goodjob_processes SET updated_at = now()")
