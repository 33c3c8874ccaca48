"""``goodjob start`` through a real PgBouncer in transaction mode (issue 19): after kill -9, the
dead worker's job is re-run once its heartbeat expires (no advisory lock survives transaction
pooling, so the heartbeat is the only liveness there is)."""

from __future__ import annotations

import signal
import time

from goodjob import GoodJob
from tests.acceptance.conftest import Workers
from tests.acceptance.test_worker import executions, process_pids
from tests.helpers import wait_until
from tests.pgbouncer import PgBouncer, database_of

EXPIRED = 2.0  # --process-expired-seconds


def test_kill_9_is_recovered_through_heartbeat_expiry(
    workers: Workers, client: GoodJob, database_url: str, pgbouncer: PgBouncer
) -> None:
    env = {
        "GOODJOB_DATABASE_URL": pgbouncer.url(database_of(database_url)),
        "GOODJOB_NOTIFY_DATABASE_URL": database_url,
        "GOODJOB_DATABASE_POOLER": "true",
        "GOODJOB_ADVISORY_LOCK_HEARTBEAT": "false",
        "GOODJOB_PREPARE_THRESHOLD": "-1",
        "GOODJOB_PROCESS_STALE_SECONDS": "0.5",
        "GOODJOB_PROCESS_EXPIRED_SECONDS": str(EXPIRED),
    }
    first = workers.start(env=env)
    wait_until(lambda: first.pid in process_pids(database_url), timeout=15, message="worker 1")
    job = client.tasks["crashy"].enqueue("bounced")
    wait_until(lambda: workers.marker("bounced") == ["bounced.1.started"], timeout=10)
    second = workers.start(env=env)
    wait_until(lambda: second.pid in process_pids(database_url), timeout=15, message="worker 2")

    killed_at = time.time()
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    wait_until(lambda: "bounced.2.started" in workers.marker("bounced"), timeout=15)
    pid, restarted_at = workers.marker_data("bounced.2.started")
    assert pid == second.pid
    # Dead once the heartbeat is EXPIRED old, found by the next sweep (loaded machine: slack).
    assert restarted_at - killed_at < EXPIRED + 3.0, f"after {restarted_at - killed_at:.2f}s"
    wait_until(lambda: client.job(job.id).status == "succeeded", timeout=10)
    runs = executions(database_url, job.id)
    assert [(a, e, f) for a, e, f, _ in runs] == [(1, "interrupted", True), (2, None, True)]
    assert first.pid not in process_pids(database_url)
    workers.kill_all()  # before PgBouncer stops under the live worker
