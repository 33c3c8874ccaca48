"""The history scenario's table: finished and future jobs seeded once, drained on top of rounds.

The seed is one ``INSERT … SELECT generate_series``: ``finished`` jobs that ran one at a time
100 ms apart (each with its execution row), then ``future`` jobs scheduled a day ahead, all
created before the drain's jobs (ids time-ordered: :func:`goodjob.bench.seeding.uuid7`).
Before every drain round, the first included, :func:`goodjob.bench.seeding.settle` vacuums and
checkpoints, so each round starts from an established table: not one just bulk-loaded, nor one
just drained.
"""

from __future__ import annotations

import time

from goodjob.bench.environment import sql
from goodjob.bench.seeding import uuid7

# Rows are 100 ms apart, so no two share a millisecond of their time-ordered id.
SEED = f"""
INSERT INTO goodjob_jobs
    (id, queue_name, task_name, arguments, scheduled_at, performed_at, finished_at,
     executions_count, result, created_at, updated_at)
SELECT {uuid7("s.t - interval '1 hour'")},
       'default', 'bench.history', '{{"args": [], "kwargs": {{}}}}',
       CASE WHEN g <= %(finished)s THEN s.t - interval '1 hour' ELSE s.t + interval '1 day' END,
       CASE WHEN g <= %(finished)s THEN s.t END,
       CASE WHEN g <= %(finished)s THEN s.t + interval '1 ms' END,
       CASE WHEN g <= %(finished)s THEN 1 ELSE 0 END,
       CASE WHEN g <= %(finished)s THEN 'null'::jsonb END,
       s.t - interval '1 hour', s.t - interval '1 hour'
FROM generate_series(1, %(finished)s + %(future)s) AS g,
     LATERAL (SELECT now() - interval '2 days' + g * interval '100 ms' AS t) AS s
"""


# Each finished job ran once: its execution row too, as goodjob records it. Claims write to
# goodjob_executions as well, so a history without them would leave half the history out.
SEED_EXECUTIONS = """
INSERT INTO goodjob_executions
    (job_id, attempt, task_name, queue_name, scheduled_at, performed_at, finished_at, duration,
     created_at, updated_at)
SELECT id, 1, task_name, queue_name, scheduled_at, performed_at, finished_at,
       finished_at - performed_at, performed_at, finished_at
FROM goodjob_jobs
WHERE finished_at IS NOT NULL
ORDER BY id
"""


def seed(url: str, finished: int, future: int) -> float:
    """Insert ``finished`` finished jobs with their executions and ``future`` future-scheduled
    jobs; returns seconds.

    The caller settles the table before draining on it (:func:`goodjob.bench.seeding.settle`).
    """
    started = time.perf_counter()
    sql(url, SEED, {"finished": finished, "future": future})
    sql(url, SEED_EXECUTIONS)
    return time.perf_counter() - started
