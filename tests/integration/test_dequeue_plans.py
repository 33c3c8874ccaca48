"""Dequeue cost is flat as history grows: the claim statement's plan, proven with EXPLAIN.

With many finished jobs and many future-scheduled jobs in the table (inserted by SQL, then
ANALYZE), the ``jobs_claim`` statement must find due jobs through the partial dequeue indexes
(``finished_at IS NULL AND locked_by_id IS NULL``), whose size is the backlog of unfinished,
unclaimed jobs, never the history. A Seq Scan of ``goodjob_jobs`` anywhere in the statement
would make every claim read the whole history; this test fails if the planner ever picks one
(issue 5: "history" drain at least 0.9x the empty-table drain). No timing is asserted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from goodjob import GoodJob, embedded
from goodjob.queues import parse_selection
from goodjob.records.claims import ClaimSpec

FINISHED = 100_000
FUTURE = 10_000
DUE_DEFAULT = 2_000  # due jobs in the busy queue
DUE_MAIL = 20  # due jobs in a small named queue


SEED = [
    # History: finished jobs, outside every dequeue index.
    f"""
    INSERT INTO goodjob_jobs
        (id, queue_name, task_name, scheduled_at, performed_at, finished_at, executions_count)
    SELECT gen_random_uuid(), 'default', 'history', now() - interval '1 day' + g * interval '1 ms',
           now() - interval '1 day' + g * interval '1 ms',
           now() - interval '1 day' + g * interval '2 ms', 1
    FROM generate_series(1, {FINISHED}) AS g
    """,
    # Their executions: the claim statement also writes and reads goodjob_executions.
    """
    INSERT INTO goodjob_executions
        (job_id, attempt, task_name, queue_name, scheduled_at, performed_at, finished_at)
    SELECT id, 1, task_name, queue_name, scheduled_at, performed_at, finished_at
    FROM goodjob_jobs
    """,
    # Future jobs: in the dequeue indexes, but not due.
    f"""
    INSERT INTO goodjob_jobs (id, queue_name, task_name, scheduled_at)
    SELECT gen_random_uuid(), CASE WHEN g % 2 = 0 THEN 'default' ELSE 'mail' END, 'future',
           now() + interval '1 day' + g * interval '1 s'
    FROM generate_series(1, {FUTURE}) AS g
    """,
    # Due jobs: a busy queue, older, and a small one behind it.
    f"""
    INSERT INTO goodjob_jobs (id, queue_name, task_name, scheduled_at)
    SELECT gen_random_uuid(), CASE WHEN g <= {DUE_MAIL} THEN 'mail' ELSE 'default' END, 'due',
           CASE WHEN g <= {DUE_MAIL} THEN now() - interval '1 minute'
                ELSE now() - interval '1 hour' END
    FROM generate_series(1, {DUE_DEFAULT + DUE_MAIL}) AS g
    """,
    "ANALYZE goodjob_jobs",
    "ANALYZE goodjob_executions",
]


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED:
            conn.execute(statement.encode())  # bytes: the % signs are SQL, not placeholders


@pytest.fixture(scope="module")
def history_url(pg_server: embedded.Server, template_db: str) -> Iterator[str]:
    """One seeded database for the module: its tests only EXPLAIN and read (seeding takes
    seconds, and there are dozens of plans to check)."""
    name = f"gj_history_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.url(name)
    _seed(url)
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


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _claim_plan(
    gj: GoodJob, url: str, queues: str, limit: int, *, every_key: bool = False, **spec: bool
) -> list[dict[str, Any]]:
    claim = ClaimSpec(parse_selection(queues), **spec)
    statement = claim.statement(gj.database, limit, every_key=every_key)
    params = claim.params(uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()])
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchone()
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


def _describe(nodes: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{n['Node Type']} {n.get('Index Name') or n.get('Relation Name') or ''}".strip()
        for n in nodes
    )


SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Index Scan", "Bitmap Heap Scan"}


def _unfinished_only_indexes(url: str) -> set[str]:
    """Indexes of goodjob_jobs whose predicate leaves finished jobs out (their size is the
    backlog, not the history)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index"
            " WHERE indrelid = 'goodjob_jobs'::regclass"
            " AND pg_get_expr(indpred, indrelid) LIKE '%%finished_at IS NULL%%'"
        ).fetchall()
    names = {row[0] for row in rows}
    assert {"goodjob_jobs_dequeue_any", "goodjob_jobs_dequeue_queue"} <= names
    return names


def _jobs_scan(node: dict[str, Any]) -> bool:
    """A read of goodjob_jobs: through an index, the table, or a row's ctid (the gated claim's
    walked jobs)."""
    return node["Node Type"] in SCANS | {"Tid Scan"} and (
        node.get("Relation Name") == "goodjob_jobs" or "goodjob_jobs" in node.get("Index Name", "")
    )


def _candidate_scans(nodes: list[dict[str, Any]], locks: int = 1) -> list[dict[str, Any]]:
    """The scans of goodjob_jobs that find due jobs: below the claim's LockRows of jobs (two in
    the gated form: jobs without a key, and each key's next ones; its third locks keys)."""
    lock_rows = [
        n for n in nodes if n["Node Type"] == "LockRows" and any(map(_jobs_scan, _nodes(n)))
    ]
    assert len(lock_rows) == locks, f"expected {locks} SKIP LOCKED scans: {_describe(nodes)}"
    return [n for lock in lock_rows for n in _nodes(lock) if _jobs_scan(n)]


@pytest.mark.parametrize(
    "queues", ["*", "mail", "default", "-mail", "+mail,default", "mail,default"]
)
@pytest.mark.parametrize("limit", [1, 10])
@pytest.mark.parametrize("advisory", [False, True], ids=["skiplocked", "advisory"])
@pytest.mark.parametrize("paused", [False, True], ids=["nothing-paused", "paused"])
@pytest.mark.parametrize("form", ["no-keys", "gated", "every-key"])
def test_claim_never_reads_history(
    history: GoodJob,
    database_url: str,
    queues: str,
    limit: int,
    advisory: bool,
    paused: bool,
    form: str,
) -> None:
    """Every variant of the claim (each queue selection's shape, each lock strategy, both forms
    of the pause check and the three of the concurrency gate) finds due jobs through an index
    that leaves finished jobs out, and so does the gated forms' search for keys."""
    gated = form != "no-keys"
    nodes = _claim_plan(
        history,
        database_url,
        queues,
        limit,
        every_key=form == "every-key",
        advisory=advisory,
        paused=paused,
        gated=gated,
    )
    seq_scans = [
        n
        for n in nodes
        if n["Node Type"] == "Seq Scan"
        and n.get("Relation Name") in ("goodjob_jobs", "goodjob_executions")
    ]
    assert not seq_scans, f"the claim reads a whole table: {_describe(nodes)}"
    candidates = _candidate_scans(nodes, locks=2 if gated else 1)
    indexes = {n["Index Name"] for n in candidates if "Index Name" in n}
    assert indexes, f"due jobs are not found through an index: {_describe(nodes)}"
    if form == "gated":  # the walked keyed jobs, found through their index, locked by ctid
        assert "Tid Scan" in {n["Node Type"] for n in candidates}, _describe(nodes)
    if form == "every-key":  # each key's next jobs through the index of queued keyed jobs
        assert "goodjob_jobs_keyed_queued" in indexes, _describe(nodes)
    read = {n["Index Name"] for n in nodes if _jobs_scan(n) and "Index Name" in n}
    unfinished_only = _unfinished_only_indexes(database_url)
    assert read <= unfinished_only, (
        f"jobs are read through {read - unfinished_only}, which holds finished rows:"
        f" {_describe(nodes)}"
    )


@pytest.mark.parametrize("queues", ["*", "mail", "-mail", "+mail,default"])
@pytest.mark.parametrize("advisory", [False, True], ids=["skiplocked", "advisory"])
def test_a_claim_of_given_ids_reads_them_by_primary_key(
    history: GoodJob, database_url: str, queues: str, advisory: bool
) -> None:
    """The inline variant (only the jobs an enqueue made) looks its ids up, whatever the
    queue selection: no scan of the backlog or of the history."""
    nodes = _claim_plan(history, database_url, queues, 2, advisory=advisory, only_ids=True)
    seq_scans = [
        n
        for n in nodes
        if n["Node Type"] == "Seq Scan"
        and n.get("Relation Name") in ("goodjob_jobs", "goodjob_executions")
    ]
    assert not seq_scans, _describe(nodes)
    candidates = _candidate_scans(nodes)
    indexes = {n.get("Index Name") for n in candidates if n["Node Type"] != "Bitmap Heap Scan"}
    assert indexes == {"goodjob_jobs_pkey"}, _describe(nodes)


@pytest.mark.parametrize("queues", ["*", "mail", "-mail"])
def test_with_pauses_the_claim_still_reads_the_dequeue_index(
    history: GoodJob, database_url: str, queues: str
) -> None:
    """Pauses are read once per claim from goodjob_settings and filter the candidates as the
    dequeue index yields them: the claim keeps its plan (issue 14)."""
    claim = ClaimSpec(parse_selection(queues), paused=True)
    with psycopg.connect(database_url) as conn:  # a transaction, rolled back: the pauses vanish
        for key in ("pause:queue:default", "pause:task:history", "pause:label:x"):
            conn.execute("INSERT INTO goodjob_settings (key, value) VALUES (%s, '{}')", (key,))
        row = conn.execute(
            ("EXPLAIN (FORMAT JSON) " + claim.statement(history.database, 10)).encode(),
            claim.params(uuid.uuid4()),
        ).fetchone()
        conn.rollback()
    assert row is not None
    nodes = list(_nodes(row[0][0]["Plan"]))
    candidates = _candidate_scans(nodes)
    indexes = {n.get("Index Name") for n in candidates if n["Node Type"] != "Bitmap Heap Scan"}
    assert indexes, _describe(nodes)
    assert indexes <= _unfinished_only_indexes(database_url), _describe(nodes)


@pytest.mark.parametrize("limit", [1, 10])
@pytest.mark.parametrize("paused", [False, True], ids=["nothing-paused", "paused"])
@pytest.mark.parametrize("gated", [False, True], ids=["no-keys", "gated"])
def test_claim_from_every_queue_walks_the_dequeue_index_in_order(
    history: GoodJob, database_url: str, limit: int, paused: bool, gated: bool
) -> None:
    """For '*' the index order is the claim order: no sort of the backlog, LIMIT stops early.
    With limits (gated), too, beside the walked keyed jobs, locked by ctid (issue 15)."""
    nodes = _claim_plan(history, database_url, "*", limit, paused=paused, gated=gated)
    candidates = _candidate_scans(nodes, locks=2 if gated else 1)
    expected = [("Index Scan", "goodjob_jobs_dequeue_any")]
    if gated:
        expected.append(("Tid Scan", None))
    assert [(n["Node Type"], n.get("Index Name")) for n in candidates] == expected, _describe(nodes)


@pytest.mark.parametrize("queues", ["mail", "+mail"])
@pytest.mark.parametrize("limit", [1, 10])
@pytest.mark.parametrize("paused", [False, True], ids=["nothing-paused", "paused"])
@pytest.mark.parametrize("gated", [False, True], ids=["no-keys", "gated"])
def test_claim_from_one_named_queue_uses_the_queue_index(
    history: GoodJob, database_url: str, queues: str, limit: int, paused: bool, gated: bool
) -> None:
    """A small named queue is read through goodjob_jobs_dequeue_queue, so its claim never walks
    the backlog of the other queues ('default' holds 100 times more due jobs, all older)."""
    nodes = _claim_plan(history, database_url, queues, limit, paused=paused, gated=gated)
    candidates = _candidate_scans(nodes, locks=2 if gated else 1)
    names = [n.get("Index Name") or n["Node Type"] for n in candidates]
    expected = ["goodjob_jobs_dequeue_queue"] + (["Tid Scan"] if gated else [])
    assert names == expected, _describe(nodes)


@pytest.mark.parametrize("walk", [True, False], ids=["walk", "every-key"])
@pytest.mark.parametrize("queues", ["*", "mail", "-mail"])
def test_the_gated_claims_key_lookup_reads_only_keyed_indexes(
    history: GoodJob, database_url: str, queues: str, walk: bool
) -> None:
    """The gated claim's key lookup reads the keyed partial indexes only, never the backlog of
    unkeyed jobs nor history: its walk reads the first due keyed jobs in claim order, its full
    form each key's next job; both count each key's running jobs."""
    claim = ClaimSpec(parse_selection(queues), gated=True)
    with psycopg.connect(database_url) as conn:  # rolled back: the keys vanish
        conn.execute(
            "INSERT INTO goodjob_concurrency (key, perform_limit)"
            " SELECT 'k' || g, 2 FROM generate_series(1, 100) AS g"
        )
        conn.execute("ANALYZE goodjob_concurrency")
        row = conn.execute(
            (
                "EXPLAIN (FORMAT JSON) " + claim.statement(history.database, 10, every_key=not walk)
            ).encode(),
            claim.params(uuid.uuid4()),
        ).fetchone()
        conn.rollback()
    assert row is not None
    nodes = list(_nodes(row[0][0]["Plan"]))
    lookups = [n for n in nodes if n.get("Subplan Name") in ("CTE walk", "CTE due")]
    assert len(lookups) == 2, _describe(nodes)
    jobs_scans = [n for lookup in lookups for n in _nodes(lookup) if _jobs_scan(n)]
    assert jobs_scans, _describe(nodes)
    lookup = "goodjob_jobs_keyed_due" if walk else "goodjob_jobs_keyed_queued"
    read = {n.get("Index Name") for n in jobs_scans if n["Node Type"] != "Bitmap Heap Scan"}
    assert lookup in read, _describe(nodes)
    assert read <= {lookup, "goodjob_jobs_keyed_running"}, _describe(nodes)


def test_the_plain_claims_key_gate_is_one_probe_of_the_keyed_index(
    history: GoodJob, database_url: str
) -> None:
    """Without limits in use, the claim's only addition is the gate: one probe of the (empty)
    index of queued keyed jobs, besides the dequeue index walk it always made."""
    nodes = _claim_plan(history, database_url, "*", 10)
    gate = [n for n in nodes if n.get("Index Name") == "goodjob_jobs_keyed_queued"]
    assert [n["Node Type"] for n in gate] in (["Index Scan"], ["Index Only Scan"]), _describe(nodes)
    walked = [n for n in nodes if n.get("Index Name") == "goodjob_jobs_dequeue_any"]
    assert walked, _describe(nodes)


def _numbered(statement: str) -> tuple[str, list[str]]:
    """``statement`` with its named placeholders as $1, $2, ... (as PREPARE takes them), and the
    names in that order."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)[sb]", placeholder, statement), names


@pytest.mark.parametrize("queues", ["*", "default"])
def test_a_claim_is_planned_once_and_its_reused_plan_reads_the_dequeue_index(
    history: GoodJob, database_url: str, queues: str
) -> None:
    """Postgres' plan cache plans a prepared statement's first five executions for their
    parameters, then keeps one plan for all if it costs no more. The claim, as goodjob sends it,
    must get there (it was planned afresh on every execution while the limit was a parameter:
    issue 5), and the plan it keeps must find due jobs through a dequeue index."""
    claim = ClaimSpec(parse_selection(queues))
    prepared, names = _numbered(claim.statement(history.database, 16))
    process_id = uuid.uuid4()
    params = claim.params(process_id)
    args = [params[name] for name in names]
    execute = f"EXECUTE claim({', '.join(['%s'] * len(args))})"
    with psycopg.connect(database_url, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("INSERT INTO goodjob_processes (id) VALUES (%s)", (process_id,))
        conn.execute(f"PREPARE claim AS {prepared}".encode())
        for _ in range(6):
            conn.execute(execute, args)
        plan = [row[0] for row in conn.execute("EXPLAIN " + execute, args)]
        conn.rollback()
    assert any("$1" in line for line in plan), "\n".join(plan)  # the kept, generic plan
    assert any("goodjob_jobs_dequeue_" in line for line in plan), "\n".join(plan)


@pytest.mark.parametrize("outcomes", [None, 2, 500])
def test_a_completion_reaches_each_job_by_its_primary_key_whatever_the_batch_size(
    history: GoodJob, database_url: str, outcomes: int | None
) -> None:
    """jobs_complete looks each outcome's job up by primary key, in the plan Postgres keeps for
    every batch size (None: EXPLAIN (GENERIC_PLAN)) and in plans made for a given batch: a plan
    through goodjob_jobs_locked_by reads every job the process holds for each batch (issue 5:
    0.5-5 s per 500 outcomes), and a join plan for a large batch scanned the whole table."""
    statement = history.database.sql("jobs_complete")
    with psycopg.connect(database_url, autocommit=True) as conn:
        if outcomes is None:
            generic, _ = _numbered(statement)
            row = conn.execute("EXPLAIN (GENERIC_PLAN, FORMAT JSON) " + generic).fetchone()
        else:
            ids = [r[0] for r in conn.execute(f"SELECT id FROM goodjob_jobs LIMIT {outcomes}")]
            params = {
                "process_id": uuid.uuid4(),
                "ids": ids,
                "attempts": [1] * outcomes,
                "kinds": ["succeeded"] * outcomes,
                "results": [None] * outcomes,
                "errors": [None] * outcomes,
                "error_events": [None] * outcomes,
                "backtraces": [None] * outcomes,
                "waits": [0.0] * outcomes,
                "durations": [0.001] * outcomes,
                "preserve": [True] * outcomes,
                "channel": "goodjob",
                "wake_queues": [],
                "wake_waits": [],
            }
            row = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchone()
    assert row is not None
    nodes = list(_nodes(row[0][0]["Plan"]))
    jobs_scans = [
        n for n in nodes if n.get("Relation Name") == "goodjob_jobs" and n["Node Type"] in SCANS
    ]
    assert jobs_scans, _describe(nodes)
    assert {n.get("Index Name") for n in jobs_scans} == {"goodjob_jobs_pkey"}, _describe(nodes)
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], _describe(nodes)


def test_the_seed_is_what_the_plans_were_judged_on(history: GoodJob, database_url: str) -> None:
    """The planner saw the history: the statistics count it (else the test proves nothing)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT reltuples FROM pg_class WHERE relname = 'goodjob_jobs'"
        ).fetchone()
    assert row is not None
    assert row[0] >= FINISHED


@pytest.mark.parametrize("horizon", [None, 60.0])
def test_future_job_warm_up_reads_only_the_future_index(
    history: GoodJob, database_url: str, horizon: float | None
) -> None:
    """The future-job cache's query finds scheduled jobs through goodjob_jobs_scheduled, whose
    predicate (scheduled_at > created_at) holds every future job and no job due at once."""
    statement = history.database.sql("runtime_future_jobs")
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "EXPLAIN (FORMAT JSON) " + statement, {"limit": 10_000, "horizon": horizon}
        ).fetchone()
        assert row is not None
        nodes = list(_nodes(row[0][0]["Plan"]))
        found = conn.execute(statement, {"limit": 100_000, "horizon": None}).fetchall()
    scans = [n for n in nodes if n["Node Type"] in SCANS]
    assert [n.get("Index Name") for n in scans] == ["goodjob_jobs_scheduled"], _describe(nodes)
    assert len(found) == FUTURE


def test_the_metrics_count_of_unfinished_jobs_never_reads_history(
    history: GoodJob, database_url: str
) -> None:
    """The Prometheus figures of unfinished jobs read each kind (running, waiting with and
    without a key) through its partial index: never the finished history."""
    statement = history.database.sql("metrics_jobs")
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            ("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).encode(), {"cap": 100_000}
        ).fetchone()
    assert row is not None
    nodes = list(_nodes(row[0][0]["Plan"]))
    jobs_scans = [
        n
        for n in nodes
        if n["Node Type"] in SCANS
        and (n.get("Relation Name") == "goodjob_jobs" or "goodjob_jobs" in n.get("Index Name", ""))
    ]
    assert jobs_scans, _describe(nodes)
    assert not [n for n in jobs_scans if n["Node Type"] == "Seq Scan"], _describe(nodes)
    read = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in jobs_scans)
    with psycopg.connect(database_url) as conn:
        unfinished = conn.execute("SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL")
        count = unfinished.fetchone()
    assert count is not None
    assert read <= 3 * count[0] + 10, _describe(nodes)
