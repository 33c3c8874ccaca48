"""What the seeded scenarios share: time-ordered ids built in SQL, and settling a seeded table.

The history scenario (:mod:`goodjob.bench.history`) and the dashboard scenario
(:mod:`goodjob.bench.dashboard_seed`) both fill ``goodjob_jobs`` with one set-based
``INSERT … SELECT generate_series`` rather than through goodjob's enqueue, which would take an
hour for ten million rows. What makes such rows look like goodjob's own is here.
"""

from __future__ import annotations

import contextlib

import psycopg

from goodjob.bench.environment import sql


def uuid7(at: str) -> str:
    """A SQL expression for a UUIDv7 whose time is the ``timestamptz`` expression ``at``.

    goodjob only ever stores the v7 ids it mints (goodjob.ids): ordered by time, so a new job
    lands at the right edge of the primary key. Random v4 ids (gen_random_uuid()) would spread
    a seeded history over the whole key range and put every job enqueued after it in the middle
    of the index, a cost no real goodjob table pays; and the dashboard lists jobs newest first by
    walking that key. Spelled out rather than PostgreSQL 18's uuidv7(shift) so that the bench
    runs on older servers: 48 bits of Unix milliseconds, then version 7, then the random bits
    (and the RFC 9562 variant) of a v4 uuid. Rows seeded in the same millisecond are ordered at
    random among themselves, as ids minted in one millisecond by different processes are.
    """
    # One hex rendering of the milliseconds (date_part is a float: extract's numeric costs a
    # microsecond a row), then a v4 uuid's hex from its version nibble on, the version made 7.
    ms = f"lpad(to_hex(floor(date_part('epoch', {at}) * 1000)::bigint), 12, '0')"
    return f"({ms} || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid"


def uuid7_bound(at: str, *, upper: bool) -> str:
    """A SQL expression for the smallest (or largest) UUIDv7 of the millisecond of ``at``: with
    two of them, a range of the primary key holds the rows of a span of time."""
    ms = f"lpad(to_hex(floor(date_part('epoch', {at}) * 1000)::bigint), 12, '0')"
    fill = ("f" if upper else "0") * 20
    return f"({ms} || '{fill}')::uuid"


def settle(url: str) -> None:
    """Vacuum, analyze and checkpoint the jobs and executions tables.

    Before a drain round: an established table, not one just bulk-loaded or just drained:
    vacuumed (so autovacuum does not start in the middle of a drain, and a round does not walk
    the dead versions the previous round's claims and completions left in the indexes) and
    checkpointed (so the drain does not pay for flushing the seed's or the previous round's
    dirty pages). After the dashboard's seed: the visibility map set, so that the index-only
    scans a production table (vacuumed by autovacuum) would get are possible, and statistics in
    place for the planner.
    """
    sql(url, "VACUUM (ANALYZE) goodjob_jobs, goodjob_executions")
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        sql(url, "CHECKPOINT")
