"""The history scenario's table: finished and future jobs seeded once, drained on top of rounds.

The seed is one ``INSERT … SELECT generate_series``: ``finished`` jobs that ran one at a time
100 ms apart (each with its execution row), then ``future`` jobs scheduled a day ahead, all
created before the drain's jobs.
Before every drain round, the first included, :func:`settle` vacuums and checkpoints, so each
round starts from an established table: not one just bulk-loaded, nor one just drained.
"""

from __future__ import annotations

import contextlib
import time

import psycopg

from goodjob.bench.environment import sql

# The ids are UUIDv7 built from each row's created_at, because goodjob only ever stores the v7
# ids it mints (goodjob.ids): ordered by time, so a new job lands at the right edge of the
# primary key. Random v4 ids (gen_random_uuid()) would spread the history over the whole key
# range and put every job the drain enqueues in the middle of the index, a cost no real
# goodjob table pays. Spelled out rather than PostgreSQL 18's uuidv7(shift) so that the bench
# runs on older servers: 48 bits of Unix milliseconds, then version 7, then the random bits
# (and the RFC 9562 variant) of a v4 uuid. Rows are 100 ms apart, so no two share a millisecond.
SEED = """
INSERT INTO goodjob_jobs
    (id, queue_name, task_name, arguments, scheduled_at, performed_at, finished_at,
     executions_count, result, created_at, updated_at)
SELECT (substr(v.ms, 1, 8) || '-' || substr(v.ms, 9, 4) || '-7' || substr(v.v4, 16))::uuid,
       'default', 'bench.history', '{"args": [], "kwargs": {}}',
       CASE WHEN g <= %(finished)s THEN s.t - interval '1 hour' ELSE s.t + interval '1 day' END,
       CASE WHEN g <= %(finished)s THEN s.t END,
       CASE WHEN g <= %(finished)s THEN s.t + interval '1 ms' END,
       CASE WHEN g <= %(finished)s THEN 1 ELSE 0 END,
       CASE WHEN g <= %(finished)s THEN 'null'::jsonb END,
       s.t - interval '1 hour', s.t - interval '1 hour'
FROM generate_series(1, %(finished)s + %(future)s) AS g,
     LATERAL (SELECT now() - interval '2 days' + g * interval '100 ms' AS t) AS s,
     LATERAL (
         SELECT lpad(to_hex(floor(extract(epoch FROM s.t - interval '1 hour') * 1000)::bigint),
                     12, '0') AS ms,
                gen_random_uuid()::text AS v4
     ) AS v
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

    The caller settles the table before draining on it (:func:`settle`).
    """
    started = time.perf_counter()
    sql(url, SEED, {"finished": finished, "future": future})
    sql(url, SEED_EXECUTIONS)
    return time.perf_counter() - started


def settle(url: str) -> None:
    """Vacuum, analyze and checkpoint the jobs and executions tables before a drain round."""
    # An established table, not one just bulk-loaded or just drained: vacuumed (so autovacuum
    # does not start in the middle of a drain, and a round does not walk the dead versions the
    # previous round's claims and completions left in the indexes) and checkpointed (so the
    # drain does not pay for flushing the seed's or the previous round's dirty pages).
    sql(url, "VACUUM (ANALYZE) goodjob_jobs, goodjob_executions")
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        sql(url, "CHECKPOINT")
