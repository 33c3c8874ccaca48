"""goodjob through a real PgBouncer in transaction mode (issue 19): enqueue, drain, retries,
LISTEN on a direct connection or polling without one, and psycopg's prepared statements.

The settings are the README's "PgBouncer" section: ``database_pooler``, heartbeat liveness
(``advisory_lock_heartbeat`` off), ``prepare_threshold=-1`` (Debian's PgBouncer 1.18 predates
prepared-statement support) and, for LISTEN, ``notify_database_url``. Crash recovery through
heartbeat expiry is in tests/acceptance/test_pgbouncer.py. The dashboard's pages and an action
come last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from goodjob import GoodJob, Retry
from goodjob.errors import Error
from tests.conftest import FAST
from tests.helpers import sql, wait_until
from tests.pgbouncer import PgBouncer, database_of

POOLER = {"database_pooler": True, "advisory_lock_heartbeat": False, "prepare_threshold": -1}


@pytest.fixture
def bounced(pgbouncer: PgBouncer, database_url: str) -> Iterator[Callable[..., GoodJob]]:
    """Apps on the test database through PgBouncer, closed before PgBouncer stops."""
    apps: list[GoodJob] = []

    def factory(**settings: Any) -> GoodJob:
        url = pgbouncer.url(database_of(database_url))
        app = GoodJob(url, **{**FAST, **POOLER, **settings})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.shutdown()
        app.close()


def _statuses(url: str) -> dict[str, int]:
    rows = sql(
        url,
        "SELECT CASE WHEN finished_at IS NULL THEN 'unfinished' WHEN error IS NULL"
        " THEN 'succeeded' ELSE 'failed' END AS status, count(*) FROM goodjob_jobs GROUP BY 1",
    )
    return {status: int(n) for status, n in rows}


def test_enqueue_and_drain_with_listen_on_a_direct_connection(
    bounced: Callable[..., GoodJob], pgbouncer: PgBouncer, database_url: str
) -> None:
    gj = bounced(notify_database_url=database_url, poll_interval=30, max_threads=4)
    done: list[int] = []

    @gj.task
    def add(n: int) -> None:
        done.append(n)

    gj.enqueue_all([add.prepare(n) for n in range(100)])
    gj.start()
    capsule = gj._capsule
    assert capsule is not None
    assert capsule.notifier is not None  # LISTEN went to the direct URL
    wait_until(lambda: capsule.connected, timeout=5, message="listening")
    wait_until(lambda: len(done) == 100, timeout=30, message="the first 100 jobs")
    # Woken by NOTIFY (sent through PgBouncer, heard on the direct connection), not the 30 s poll.
    add.enqueue(100)
    wait_until(lambda: 100 in done, timeout=5, message="a job woken by NOTIFY")
    assert sorted(done) == list(range(101))
    # The task ran; its completion is recorded right after.
    wait_until(lambda: _statuses(database_url) == {"succeeded": 101}, timeout=5, message="recorded")
    stats = wait_until(
        lambda: pgbouncer.stats(database_of(database_url)).get("total_xact_count"),
        timeout=5,
        message="PgBouncer's stats",
    )
    assert stats > 5  # the enqueue, claims and completions (batched) went through PgBouncer


def test_polls_without_a_direct_connection(
    bounced: Callable[..., GoodJob], database_url: str
) -> None:
    gj = bounced(poll_interval=0.3)
    done: list[str] = []

    @gj.task
    def mark(name: str) -> None:
        done.append(name)

    gj.start()
    capsule = gj._capsule
    assert capsule is not None
    assert capsule.notifier is None  # no LISTEN through the pooler
    wait_until(lambda: capsule.connected, timeout=5, message="the database answering")
    mark.enqueue("polled")
    wait_until(lambda: done == ["polled"], timeout=5, message="a job found by polling")
    wait_until(lambda: _statuses(database_url) == {"succeeded": 1}, timeout=5, message="recorded")


def test_retries_through_pgbouncer(bounced: Callable[..., GoodJob], database_url: str) -> None:
    gj = bounced(poll_interval=0.3)
    attempts: list[int] = []

    @gj.task(retry=Retry(attempts=3, wait=0))
    def flaky() -> str:
        from goodjob import current_job

        attempt = current_job().attempt
        attempts.append(attempt)
        if attempt < 3:
            raise ConnectionError(f"attempt {attempt}")
        return "third time"

    job = flaky.enqueue()
    gj.start()
    wait_until(lambda: gj.job(job.id).status == "succeeded", timeout=15, message="retried")
    assert attempts == [1, 2, 3]
    assert gj.job(job.id).result == "third time"
    events = sql(
        database_url,
        "SELECT attempt, error_event FROM goodjob_executions WHERE job_id = %s ORDER BY attempt",
        (job.id,),
    )
    assert events == [(1, "retried"), (2, "retried"), (3, None)]


def test_prepare_threshold_reaches_psycopg(
    bounced: Callable[..., GoodJob], database_url: str
) -> None:
    # Through PgBouncer 1.18, psycopg's default (prepare after 5 runs) breaks the sixth run of a
    # statement: the next transaction lands on a server connection without the prepared one.
    never = bounced()
    with never.database.connection() as conn:
        assert conn.prepare_threshold is None
        for _ in range(10):
            conn.execute("SELECT 1")
    default = GoodJob(database_url)
    try:
        with default.database.connection() as conn:
            assert conn.prepare_threshold == 5
    finally:
        default.close()


def test_a_pooler_needs_heartbeat_liveness_and_skiplocked() -> None:
    with pytest.raises(
        Error, match=r"advisory_lock_heartbeat .* must be false with database_pooler"
    ):
        GoodJob("postgresql://unused/none", database_pooler=True)
    with pytest.raises(Error, match=r"lock_strategy .* must be skiplocked with database_pooler"):
        GoodJob(
            "postgresql://unused/none",
            database_pooler=True,
            advisory_lock_heartbeat=False,
            lock_strategy="advisory",
        )


@pytest.mark.timeout(240)
def test_bench_drains_through_the_pooler(pgbouncer: PgBouncer, database_url: str) -> None:
    # `goodjob bench --pooler-url`: the drains (goodjob's and the baseline's) go through it.
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [
            *(sys.executable, "-m", "goodjob", "bench", "--database-url", database_url),
            *("--pooler-url", pgbouncer.url("postgres"), "--scenario", "drain"),
            *("--jobs", "200", "--quick", "--best-processes", "1", "--best-threads", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    by_name = {line["scenario"]: line for line in lines}
    assert by_name["machine"]["pooler"] is True
    for name in ("drain_default", "drain_best"):
        assert by_name[name]["goodjob"]["exactly_once"] is True
        assert by_name[name]["baseline"]["exactly_once"] is True
    through = {  # gj_bench_<label>_<8 hex> -> transactions PgBouncer ran for it
        name[len("gj_bench_") : -9]: stats["total_xact_count"]
        for name, stats in pgbouncer.all_stats().items()
        if name.startswith("gj_bench_")
    }
    drains = ("baseline_drain", "goodjob_drain", "goodjob_limited", "goodjob_batched")
    assert all(through.get(label, 0) > 0 for label in (*drains, "goodjob_drain_best")), through


def test_the_dashboard_through_pgbouncer(bounced: Callable[..., GoodJob]) -> None:
    """Every dashboard page, as HTML and JSON, and an action, with the app on PgBouncer in
    transaction mode (its statements are never prepared there: prepare_threshold -1)."""
    import re

    from starlette.testclient import TestClient

    from goodjob.dashboard import create_app
    from tests.integration.test_dashboard_http import PAGES

    gj = bounced()

    @gj.task(name="fails", retry=Retry(attempts=1))
    def fails() -> None:
        raise ValueError("no")

    @gj.task(name="works")
    def works() -> None: ...

    failed = fails.enqueue()
    gj.perform_inline([failed.id, works.enqueue().id])
    works.using(wait=3600).enqueue()
    with TestClient(create_app(gj), base_url="http://testserver") as client:
        for path in [*PAGES, f"/jobs/{failed.id}"] * 2:  # twice: a second plan of each
            assert client.get(path).status_code == 200, path
            assert "error" not in client.get(path, params={"format": "json"}).json(), path
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/pauses").text)
        assert token is not None
        retried = client.post(
            f"/jobs/{failed.id}/retry",
            data={"csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert retried.status_code == 303
    assert gj.job(failed.id).status == "retried"  # due now, its last error kept
