"""The process record: what it holds, liveness by the database clock, and the sweep."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from goodjob import CapsuleTracker, GoodJob
from goodjob.db import CHANNEL
from goodjob.records import processes
from tests.helpers import sql, wait_until


def insert_process(
    url: str, *, lock_type: str | None = None, updated_at: str = "now()"
) -> uuid.UUID:
    process_id = uuid.uuid4()
    sql(
        url,
        "INSERT INTO goodjob_processes (id, state, lock_type, updated_at)"
        f" VALUES (%(id)s, '{{}}', %(lock_type)s, {updated_at})",
        {"id": process_id, "lock_type": lock_type},
    )
    return process_id


def insert_job(url: str, locked_by: uuid.UUID | None, *, queue: str = "default") -> uuid.UUID:
    job_id = uuid.uuid4()
    sql(
        url,
        "INSERT INTO goodjob_jobs (id, task_name, queue_name, locked_by_id, locked_at)"
        " VALUES (%(id)s, 't', %(queue)s, %(by)s,"
        " CASE WHEN %(by)s::uuid IS NOT NULL THEN now() END)",
        {"id": job_id, "by": locked_by, "queue": queue},
    )
    return job_id


def locked_by(url: str, job_id: uuid.UUID) -> Any:
    return sql(url, "SELECT locked_by_id FROM goodjob_jobs WHERE id = %(id)s", {"id": job_id})[0][0]


def liveness(gj: GoodJob) -> dict[uuid.UUID, bool | None]:
    return {p.id: p.alive for p in processes.all_processes(gj.database)}


def test_the_row_describes_the_process(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    tracker.add_state(lambda: {"schedulers": [{"queues": "*", "max_threads": 5}]})
    with tracker.register():
        tracker.id_for_lock()
        state = sql(database_url, "SELECT state FROM goodjob_processes")[0][0]
    assert state["hostname"] == socket.gethostname()
    assert state["pid"] == os.getpid()
    assert state["proctitle"]
    assert isinstance(state["memory"], int)
    assert state["memory"] > 0
    assert state["version"] == "0.1.0"
    assert state["schedulers"] == [{"queues": "*", "max_threads": 5}]
    pool = state["database_connection_pool"]
    assert pool["size"] == gj.settings.database_pool_size
    assert 0 <= pool["active"] <= pool["size"]


def test_timestamps_come_from_the_database_clock(
    gj: GoodJob, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This host's clock is a day fast: nothing it writes or judges may depend on it.
    skewed = time.time() + 86_400
    monkeypatch.setattr(time, "time", lambda: skewed)
    tracker = CapsuleTracker(gj)
    with tracker.register():
        tracker.id_for_lock()
        lag = sql(
            database_url,
            "SELECT now() - updated_at < interval '5 seconds', now() >= updated_at,"
            " created_at IS NOT NULL FROM goodjob_processes",
        )
        assert lag == [(True, True, True)]
        assert liveness(gj) == {tracker.process_id: True}


def test_heartbeat_only_liveness_follows_the_expiry_interval(
    make_app: Any, database_url: str
) -> None:
    gj = make_app(process_stale_seconds=1.0, process_expired_seconds=120.0)
    fresh = insert_process(database_url, updated_at="now() - interval '119 seconds'")
    expired = insert_process(database_url, updated_at="now() - interval '121 seconds'")
    assert liveness(gj) == {fresh: True, expired: False}


def test_advisory_liveness_needs_the_lock_and_a_fresh_heartbeat(
    gj: GoodJob, database_url: str
) -> None:
    """A process that hangs (or whose host vanished) keeps its session and its lock: its
    heartbeat's expiry makes it dead all the same, and the session holding its lock is ended."""
    held = insert_process(database_url, lock_type="advisory")
    hung = insert_process(database_url, lock_type="advisory", updated_at="now() - interval '6 s'")
    lost = insert_process(database_url, lock_type="advisory")
    lock = "SELECT pg_advisory_lock(goodjob_lock_key(%s))"
    with (
        psycopg.connect(database_url, autocommit=True) as holder,
        psycopg.connect(database_url, autocommit=True) as hung_holder,
    ):
        holder.execute(lock, (held,))
        hung_holder.execute(lock, (hung,))
        assert liveness(gj) == {held: True, hung: False, lost: False}
        result = processes.sweep(gj.database)
        assert (result.dead_processes, result.terminated_sessions) == (2, 1)
        assert liveness(gj) == {held: True}
        with pytest.raises(psycopg.OperationalError):
            hung_holder.execute("SELECT 1")  # ended by the sweep: its lock went with it
        holder.execute("SELECT pg_advisory_unlock_all()")
    assert liveness(gj) == {held: False}
    assert processes.sweep(gj.database).dead_processes == 1


def test_restart_grace_covers_only_rows_refreshed_before_the_restart(
    make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gj = make_app(process_stale_seconds=0.01, process_expired_seconds=5.0)
    before = insert_process(
        database_url,
        lock_type="advisory",
        updated_at="pg_postmaster_start_time() - interval '1 second'",
    )
    after = insert_process(database_url, lock_type="advisory")
    monkeypatch.setattr(processes, "RESTART_GRACE_SECONDS", 10.0**9)  # "the server just restarted"
    assert liveness(gj) == {before: True, after: False}
    monkeypatch.setattr(processes, "RESTART_GRACE_SECONDS", 0.0)
    assert liveness(gj) == {before: False, after: False}
    # The grace is never shorter than two refresh periods of the judging process.
    slow = make_app(process_stale_seconds=10.0**9, process_expired_seconds=10.0**10)
    assert processes.liveness_params(slow.database)["restart_grace"] == 2.2 * 10.0**9
    assert liveness(slow) == {before: True, after: False}


def test_sweep_releases_dead_and_orphaned_claims_and_deletes_dead_rows(
    make_app: Any, database_url: str
) -> None:
    gj = make_app(process_stale_seconds=1.0, process_expired_seconds=60.0)
    live = insert_process(database_url)
    dead = insert_process(database_url, updated_at="now() - interval '2 minutes'")
    live_job = insert_job(database_url, live)
    dead_job = insert_job(database_url, dead, queue="mail")
    orphan_job = insert_job(database_url, uuid.uuid4(), queue="mail")
    free_job = insert_job(database_url, None)
    finished = insert_job(database_url, dead)
    sql(database_url, "UPDATE goodjob_jobs SET finished_at = now() WHERE id = %s", (finished,))

    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{CHANNEL}"')
        result = processes.sweep(gj.database)
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]

    assert result.swept
    assert (result.dead_processes, result.released_jobs) == (1, 2)
    assert liveness(gj) == {live: True}
    assert locked_by(database_url, live_job) == live
    assert locked_by(database_url, dead_job) is None
    assert locked_by(database_url, orphan_job) is None
    assert locked_by(database_url, free_job) is None
    assert locked_by(database_url, finished) == dead  # finished history is left alone
    assert payloads == ['{"queue" : "mail"}']  # released work wakes its queue, once
    assert processes.sweep(gj.database) == processes.SweepResult(True, 0, 0)


def test_one_sweeper_at_a_time(make_app: Any, database_url: str) -> None:
    gj = make_app(process_stale_seconds=1.0, process_expired_seconds=60.0)
    dead = insert_process(database_url, updated_at="now() - interval '2 minutes'")
    job = insert_job(database_url, dead)
    with psycopg.connect(database_url, autocommit=True) as other, other.transaction():
        # Another process is sweeping right now (it holds the sweep lock).
        other.execute("SELECT pg_advisory_xact_lock(%s)", (processes.SWEEP_LOCK_KEY,))
        assert processes.sweep(gj.database) == processes.SweepResult(False, 0, 0)
        assert locked_by(database_url, job) == dead
    assert processes.sweep(gj.database) == processes.SweepResult(True, 1, 1)


def test_renew_refreshes_a_stale_row_and_sweeps(make_app: Any, database_url: str) -> None:
    gj = make_app(process_stale_seconds=30.0, process_expired_seconds=60.0)
    dead = insert_process(database_url, updated_at="now() - interval '2 minutes'")
    tracker = CapsuleTracker(gj)
    with tracker.register():
        tracker.id_for_lock()
        sql(database_url, "UPDATE goodjob_processes SET updated_at = now() - interval '1 minute'")
        tracker._last_heartbeat -= 31  # as if 31 s had passed since the last heartbeat
        tracker.renew()
        ages = sql(
            database_url,
            "SELECT id, now() - updated_at < interval '5 seconds' FROM goodjob_processes",
        )
    assert ages == [(tracker.process_id, True)]
    assert dead not in liveness(gj)


def test_the_processes_command_lists_live_and_dead(make_app: Any, database_url: str) -> None:
    # A heartbeat no sooner than 30 s: the tracker's own sweep must not delete the dead row
    # before the command lists it.
    gj = make_app(process_stale_seconds=30.0, process_expired_seconds=60.0)
    tracker = CapsuleTracker(gj)
    dead = insert_process(database_url, updated_at="now() - interval '2 minutes'")
    with tracker.register(with_advisory_lock=True):
        result = subprocess.run(
            [sys.executable, "-m", "goodjob", "processes"],
            env={
                **os.environ,
                "GOODJOB_DATABASE_URL": database_url,
                "GOODJOB_PROCESS_EXPIRED_SECONDS": "60",
                "COLUMNS": "200",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    mine = next(line for line in lines if str(tracker.process_id) in line)
    theirs = next(line for line in lines if str(dead) in line)
    assert "advisory" in mine
    assert "yes" in mine
    assert str(os.getpid()) in mine
    assert "no" in theirs.split()


def test_the_sweep_leaves_a_claim_made_by_a_process_that_registered_during_it(
    make_app: Any, database_url: str
) -> None:
    """Issue 11: the sweep's snapshot cannot see a process row committed after it began. A job
    that process claimed meanwhile, re-read by the sweep's update once the claim committed,
    looked orphaned and was released under a live process."""
    gj = make_app(process_stale_seconds=1.0, process_expired_seconds=60.0)
    job = insert_job(database_url, uuid.uuid4())  # an orphan the sweep will want to release
    sql(
        database_url,
        "UPDATE goodjob_jobs SET locked_at = now() - interval '1 minute'"
        " WHERE locked_by_id IS NOT NULL",
    )
    newcomer = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as claimer:
        claimer.execute("BEGIN")
        claimer.execute("SELECT 1 FROM goodjob_jobs WHERE id = %s FOR UPDATE", (job,))
        sweeping = threading.Thread(target=processes.sweep, args=(gj.database,))
        sweeping.start()
        # The sweep took its snapshot and now waits for the job's row lock.
        wait_until(
            lambda: (
                sql(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%goodjob:processes_sweep%%'",
                )[0][0]
                == 1
            ),
            message="the sweep to wait for the row",
        )
        insert_process(database_url)  # someone else's, unrelated
        sql(
            database_url,
            "INSERT INTO goodjob_processes (id, state) VALUES (%s, '{}')",
            (newcomer,),
        )
        claimer.execute(
            "UPDATE goodjob_jobs SET locked_by_id = %s, locked_at = clock_timestamp()"
            " WHERE id = %s",
            (newcomer, job),
        )
        claimer.execute("COMMIT")
        sweeping.join(10)
    assert locked_by(database_url, job) == newcomer
