"""The dashboard's reads stay bounded as history grows, proven with EXPLAIN ANALYZE (issue 17).

A database with a long history (finished jobs and their attempts, inserted by SQL, then
ANALYZE) and a backlog; every statement the dashboard runs, in each of its variants (every
state, both orders, first and later pages, with and without filters), must read a bounded
number of rows of ``goodjob_jobs`` and ``goodjob_executions``: the rows its caps allow, never
the history. What is counted is what the plan's scan nodes actually returned or filtered out.
No timing is asserted (the 10-million-row figures are the bench's, issue 17).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from goodjob import GoodJob, embedded
from goodjob.records import dashboard as records
from goodjob.records.jobs import STATUSES

HISTORY = 150_000
QUEUED = 600
KEYED = 300  # due jobs with a concurrency key (with QUEUED, under the waiting states' cap)
# Every statement's reads stay below this: a tenth of the history, though a whole scan of it
# would read all of it.
BOUND = HISTORY // 10 + 2 * records.COUNT_CAP

SEED = [
    # History over the last week, ids UUIDv7 of their creation; one in a thousand discarded.
    f"""
    INSERT INTO goodjob_jobs (id, queue_name, task_name, scheduled_at, created_at, performed_at,
                              finished_at, executions_count, error)
    SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
           (ARRAY['default', 'mail'])[1 + g % 2], 'task_' || (g % 10), c, c, c, c, 1,
           CASE WHEN g % 1000 = 0 THEN 'app.Error: failed' END
    FROM (SELECT g, now() - interval '7 days' + g * (interval '7 days' / {HISTORY}) AS c
          FROM generate_series(1, {HISTORY}) AS g) AS s
    """,
    """
    INSERT INTO goodjob_executions (job_id, attempt, task_name, queue_name, scheduled_at,
                                    performed_at, finished_at, duration, error)
    SELECT id, 1, task_name, queue_name, scheduled_at, performed_at, finished_at,
           interval '10 ms', error
    FROM goodjob_jobs
    """,
    # A backlog, a few scheduled, retried and running jobs.
    f"""
    INSERT INTO goodjob_jobs (id, queue_name, task_name, scheduled_at)
    SELECT gen_random_uuid(), (ARRAY['default', 'mail', 'rare'])[1 + g % 3], 'due',
           now() - interval '1 minute'
    FROM generate_series(1, {QUEUED}) AS g
    """,
    f"""
    INSERT INTO goodjob_jobs (id, task_name, scheduled_at, concurrency_key)
    SELECT gen_random_uuid(), 'keyed', now() - interval '2 minutes', 'key-' || (g % 50)
    FROM generate_series(1, {KEYED}) AS g
    """,
    """
    INSERT INTO goodjob_jobs (id, task_name, scheduled_at, created_at, error)
    SELECT gen_random_uuid(), 'later', now() + g * interval '1 minute', now(),
           CASE WHEN g % 2 = 0 THEN 'app.Error: try again' END
    FROM generate_series(1, 100) AS g
    """,
    """
    INSERT INTO goodjob_jobs (id, task_name, locked_by_id, locked_at, performed_at)
    SELECT gen_random_uuid(), 'busy', gen_random_uuid(), now(), now()
    FROM generate_series(1, 5) AS g
    """,
    "ANALYZE goodjob_jobs",
    "ANALYZE goodjob_executions",
]


@pytest.fixture(scope="module")
def history_url(pg_server: embedded.Server, template_db: str) -> Iterator[str]:
    name = f"gj_dashboard_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED:
            conn.execute(statement.encode())
    yield url
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(history_url: str) -> str:
    """Every test of this module reads the seeded database (overrides the fresh one)."""
    return history_url


@pytest.fixture
def history(gj: GoodJob) -> GoodJob:
    return gj


def rows_read(url: str, statement: str, params: dict[str, Any]) -> int:
    """How many rows the plan's scans of goodjob's tables returned or filtered out."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params).fetchone()
    assert row is not None
    plan = row["QUERY PLAN"][0]["Plan"]

    def walk(node: dict[str, Any]) -> int:
        read = 0
        if str(node.get("Relation Name", "")).startswith("goodjob_"):
            per_loop = (
                node.get("Actual Rows", 0)
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            read += int(per_loop * node.get("Actual Loops", 1))
        return read + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan)


def _page_params(filters: records.JobFilter) -> dict[str, Any]:
    return {
        "queue": filters.queue,
        "task": filters.task,
        "label": filters.label,
        "text": f"%{filters.text}%" if filters.text else None,
        "limit": records.PAGE_SIZE + 1,
        "scan": records.SCAN_LIMIT,
    }


@pytest.mark.parametrize("state", ["all", *STATUSES])
@pytest.mark.parametrize("order", records.ORDERS)
@pytest.mark.parametrize("narrowed", [False, True], ids=["plain", "filtered"])
def test_every_jobs_list_page_reads_a_bounded_number_of_rows(
    history: GoodJob, history_url: str, state: str, order: str, narrowed: bool
) -> None:
    filters = records.JobFilter(
        state=None if state == "all" else state,
        order=order,
        queue="rare" if narrowed else None,
        text="nowhere" if narrowed else None,
    )
    db = history.database
    first = records.jobs_page(db, records.JobFilter(state=filters.state, order=order), limit=3)
    cursors = [None, first.next_cursor] if first.next_cursor else [None]
    for cursor in cursors:
        params = _page_params(filters)
        if cursor:
            params.update(records.decode_cursor(cursor, state, order))
        if not narrowed:
            # A page without filters reads its rows, and hardly more: each state's index
            # serves its order (100 for the scheduled rows a backward claim-order scan passes).
            statement = records._statement(db, "dashboard_jobs_page", state, order, bool(cursor))
            read = rows_read(history_url, statement, params)
            assert read <= 2 * (records.PAGE_SIZE + 1) + 100, (cursor, read)
            continue
        for name in ("dashboard_jobs_page", "dashboard_jobs_scan_end"):
            statement = records._statement(db, name, state, order, cursor is not None)
            read = rows_read(history_url, statement, params)
            assert read <= 2 * records.SCAN_LIMIT + records.PAGE_SIZE, (name, cursor, read)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        (
            "dashboard_state_counts",
            {"cap": records.COUNT_CAP, "waiting_cap": records.WAITING_COUNT_CAP},
        ),
        ("dashboard_chart_finished", {"cap": records.CHART_CAP}),
        ("dashboard_chart_discarded", {"cap": records.CHART_CAP}),
        ("dashboard_chart_enqueued", {"cap": records.CHART_CAP}),
        ("dashboard_chart_latency", {"cap": records.LATENCY_CAP}),
        ("dashboard_queues", {"cap": records.QUEUE_COUNT_CAP, "limit": records.QUEUES_LIMIT}),
        ("dashboard_concurrency", {"cap": records.QUEUE_COUNT_CAP, "limit": records.KEYS_LIMIT}),
        ("dashboard_performance", {"seconds": 7 * 86_400, "cap": records.PERFORMANCE_CAP}),
        ("dashboard_performance", {"seconds": 3_600, "cap": records.PERFORMANCE_CAP}),
        ("dashboard_errors", {"cap": records.ERRORS_CAP}),
        (
            "dashboard_errors_ids",
            {"cap": records.ERRORS_CAP, "error_class": "app.Error", "limit": 1_000},
        ),
        (
            "dashboard_batches",
            {"after_at": None, "after_id": None, "limit": 51, "cap": records.BATCH_COUNT_CAP},
        ),
    ],
)
def test_every_other_statement_reads_a_bounded_number_of_rows(
    history: GoodJob, history_url: str, name: str, params: dict[str, Any]
) -> None:
    read = rows_read(history_url, history.database.sql(name), params)
    assert read <= BOUND, read


def test_the_counts_and_charts_on_the_history(history: GoodJob) -> None:
    counts = records.state_counts(history.database)
    assert counts["discarded"] == records.Count(HISTORY // 1000)
    assert counts["queued"] == records.Count(QUEUED + KEYED)
    assert counts["running"] == records.Count(5)
    assert (counts["scheduled"], counts["retried"]) == (records.Count(50), records.Count(50))
    assert counts["succeeded"].kind == "estimate"
    assert abs(counts["succeeded"].value - HISTORY) < HISTORY // 10
    charts = records.charts(history.database)
    # About one history job a 4 seconds over the last hour; nothing was capped.
    assert 800 < sum(charts["finished"].values.values()) < 1_000
    assert charts["finished"].complete_since is None
    assert sum(charts["enqueued"].values.values()) >= 800
