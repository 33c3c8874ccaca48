"""CapsuleTracker against a real Postgres: GoodJob's spec behaviours, and goodjob's fixes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goodjob import CapsuleTracker, DatabaseUnavailable, GoodJob, SchemaNotMigrated, embedded
from goodjob.records import processes
from tests.helpers import sql, wait_until

MakeApp = Callable[..., GoodJob]


@pytest.fixture
def own_server_dir() -> Iterator[Path]:
    """A data folder for a server of this test's own (stopped and removed afterwards)."""
    base = Path(tempfile.mkdtemp(prefix="goodjob-tracker-", dir="/tmp"))
    yield base / "pg"
    if embedded.is_running(base / "pg"):
        embedded.stop(base / "pg")
    shutil.rmtree(base, ignore_errors=True)


def process_rows(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT id, lock_type, updated_at FROM goodjob_processes ORDER BY created_at")


def advisory_locks(url: str, process_id: uuid.UUID | None = None) -> int:
    """Granted session advisory locks in this database (on ``process_id``'s key if given)."""
    statement = (
        "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    if process_id is not None:
        statement += " AND ((l.classid::bigint << 32) | l.objid::bigint) = goodjob_lock_key(%(id)s)"
    return int(sql(url, statement, {"id": process_id})[0][0])


def insert_locked_job(url: str, locked_by: uuid.UUID) -> uuid.UUID:
    job_id = uuid.uuid4()
    sql(
        url,
        "INSERT INTO goodjob_jobs (id, task_name, locked_by_id, locked_at, executions_count)"
        " VALUES (%(id)s, 'tests.t', %(by)s, now(), 1)",
        {"id": job_id, "by": locked_by},
    )
    return job_id


def locked_by(url: str, job_id: uuid.UUID) -> uuid.UUID | None:
    value: uuid.UUID | None = sql(
        url, "SELECT locked_by_id FROM goodjob_jobs WHERE id = %(id)s", {"id": job_id}
    )[0][0]
    return value


def alive(gj: GoodJob, process_id: uuid.UUID) -> bool | None:
    for record in processes.all_processes(gj.database):
        if record.id == process_id:
            return record.alive
    return None


# -- registration (GoodJob's spec) --------------------------------------------------------------


def test_register_without_advisory_lock_creates_no_row(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    tracker.register()
    assert tracker.locks == 1
    assert process_rows(database_url) == []
    tracker.unregister()
    assert tracker.locks == 0
    assert process_rows(database_url) == []


def test_id_for_lock_creates_the_row_lazily_and_is_stable(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    assert tracker.id_for_lock() is None
    with tracker.register():
        lock_id = tracker.id_for_lock()
        assert lock_id == tracker.process_id
        assert [row[0] for row in process_rows(database_url)] == [lock_id]
        assert process_rows(database_url)[0][1] is None  # heartbeat-only
        assert tracker.id_for_lock() == lock_id
        assert tracker.record is not None
        assert tracker.record.id == lock_id
    assert tracker.id_for_lock() is None
    assert tracker.record is None
    assert process_rows(database_url) == []


def test_process_id_is_a_uuid_before_registration(gj: GoodJob) -> None:
    tracker = CapsuleTracker(gj)
    assert isinstance(tracker.process_id, uuid.UUID)
    assert tracker in CapsuleTracker.instances


def test_nested_registrations_keep_the_row_until_the_last(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    with tracker.register():
        lock_id = tracker.id_for_lock()
        with tracker.register():
            assert tracker.locks == 2
            assert tracker.id_for_lock() == lock_id
            assert len(process_rows(database_url)) == 1
        assert tracker.locks == 1
        assert len(process_rows(database_url)) == 1
        assert tracker.id_for_lock() == lock_id
    assert tracker.locks == 0
    assert process_rows(database_url) == []


def test_advisory_registration_creates_a_locked_row(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    tracker.register(with_advisory_lock=True)
    assert [(row[0], row[1]) for row in process_rows(database_url)] == [
        (tracker.process_id, "advisory")
    ]
    assert advisory_locks(database_url, tracker.process_id) == 1
    assert tracker.advisory_locked()
    assert tracker.advisory_locks == 1
    assert alive(gj, tracker.process_id) is True
    tracker.unregister(with_advisory_lock=True)
    assert process_rows(database_url) == []
    assert advisory_locks(database_url) == 0
    assert not tracker.advisory_locked()


def test_advisory_lock_is_taken_on_an_existing_heartbeat_row(
    gj: GoodJob, database_url: str
) -> None:
    tracker = CapsuleTracker(gj)
    with tracker.register():
        tracker.id_for_lock()
        assert process_rows(database_url)[0][1] is None
        assert advisory_locks(database_url) == 0
        with tracker.register(with_advisory_lock=True):
            assert process_rows(database_url)[0][1] == "advisory"
            assert advisory_locks(database_url, tracker.process_id) == 1
        assert process_rows(database_url)[0][1] is None
        assert advisory_locks(database_url) == 0
        assert tracker.id_for_lock() == tracker.process_id
    assert process_rows(database_url) == []


def test_mixed_registrations_count_and_drop_the_lock(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    tracker.register(with_advisory_lock=True)
    tracker.register()
    tracker.register(with_advisory_lock=True)
    tracker.register(with_advisory_lock=True)
    assert tracker.locks == 4
    assert tracker.advisory_locks == 3
    assert len(process_rows(database_url)) == 1
    assert tracker.record is not None
    assert tracker.record.lock_type == "advisory"
    assert advisory_locks(database_url, tracker.process_id) == 1  # one lock, however many users

    tracker.unregister(with_advisory_lock=True)
    assert tracker.locks == 3
    assert len(process_rows(database_url)) == 1
    assert process_rows(database_url)[0][1] is None
    assert tracker.record is not None
    assert tracker.record.lock_type is None
    assert advisory_locks(database_url) == 0
    assert not tracker.advisory_locked()

    tracker.unregister(with_advisory_lock=True)
    tracker.unregister()
    tracker.unregister(with_advisory_lock=True)
    assert tracker.locks == 0
    assert process_rows(database_url) == []
    assert not tracker.advisory_locked()
    tracker.unregister()  # a no-op at zero
    assert tracker.locks == 0


def test_context_manager_unregisters_on_exception(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    seen: list[int] = []

    def fail_inside() -> None:
        with tracker.register(with_advisory_lock=True):
            seen.append(tracker.locks)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert seen == [1]
    assert tracker.locks == 0
    assert process_rows(database_url) == []
    assert advisory_locks(database_url) == 0


def test_last_unregister_releases_this_process_jobs(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    with tracker.register():
        lock_id = tracker.id_for_lock()
        assert lock_id is not None
        job_id = insert_locked_job(database_url, lock_id)
    assert locked_by(database_url, job_id) is None


# -- the heartbeat ------------------------------------------------------------------------------


@pytest.mark.parametrize("advisory", [False, True], ids=["heartbeat", "advisory"])
def test_refresh_task_advances_updated_at_by_itself(
    make_app: MakeApp, database_url: str, advisory: bool
) -> None:
    gj = make_app(process_stale_seconds=0.1, process_expired_seconds=5.0)
    tracker = CapsuleTracker(gj)
    with tracker.register(with_advisory_lock=advisory):
        tracker.id_for_lock()
        first = process_rows(database_url)[0][2]
        wait_until(
            lambda: process_rows(database_url)[0][2] > first,
            timeout=3,
            message="the refresh task to write a newer heartbeat",
        )


def test_refresh_runs_on_the_given_executor(make_app: MakeApp, database_url: str) -> None:
    gj = make_app(process_stale_seconds=0.1, process_expired_seconds=5.0)
    ran_on: list[str] = []
    original = processes.upsert

    def spy(*args: Any, **kwargs: Any) -> Any:
        ran_on.append(threading.current_thread().name)
        return original(*args, **kwargs)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-executor") as executor:
        tracker = CapsuleTracker(gj, executor=executor)
        with tracker.register(), pytest.MonkeyPatch.context() as patch:
            patch.setattr(processes, "upsert", spy)
            tracker.id_for_lock()
            wait_until(
                lambda: any(name.startswith("test-executor") for name in ran_on),
                timeout=3,
                message="a heartbeat on the executor's thread",
            )
            # The executor's only worker is not held between heartbeats.
            assert executor.submit(lambda: "free").result(timeout=2) == "free"
    assert not [t for t in threading.enumerate() if t.name == "goodjob-capsule-tracker"]


def test_row_deleted_elsewhere_is_recreated_with_the_same_id(
    make_app: MakeApp, database_url: str
) -> None:
    gj = make_app(process_stale_seconds=0.1, process_expired_seconds=5.0)
    tracker = CapsuleTracker(gj)
    with tracker.register():
        lock_id = tracker.id_for_lock()
        sql(database_url, "DELETE FROM goodjob_processes")
        rows = wait_until(
            lambda: process_rows(database_url), timeout=3, message="the row to come back"
        )
        assert rows[0][0] == lock_id
        assert rows[0][2] is not None
        assert tracker.id_for_lock() == lock_id


def test_heartbeat_failing_past_expiry_makes_id_for_lock_raise(
    make_app: MakeApp, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    gj = make_app(process_stale_seconds=0.1, process_expired_seconds=0.5)
    tracker = CapsuleTracker(gj)
    with tracker.register():
        lock_id = tracker.id_for_lock()
        # A real failure of the heartbeat statement: its table is gone.
        sql(database_url, "ALTER TABLE goodjob_processes RENAME TO gone")
        try:

            def raises() -> bool:
                try:
                    assert tracker.id_for_lock() == lock_id  # failing, but not expired yet
                except SchemaNotMigrated:
                    return True
                return False

            with caplog.at_level(logging.WARNING, logger="goodjob.capsule_tracker"):
                wait_until(raises, timeout=5, message="id_for_lock to raise after expiry")
            assert any("heartbeat expired" in r.getMessage() for r in caplog.records)
        finally:
            sql(database_url, "ALTER TABLE gone RENAME TO goodjob_processes")
        assert tracker.id_for_lock() == lock_id  # back once a heartbeat succeeds


# -- liveness, death and the sweep --------------------------------------------------------------


def test_advisory_process_is_dead_at_once_when_its_connection_dies(
    make_app: MakeApp, database_url: str
) -> None:
    gj = make_app(process_stale_seconds=30.0, process_expired_seconds=300.0)
    victim = CapsuleTracker(gj)
    victim.register(with_advisory_lock=True)
    job_id = insert_locked_job(database_url, victim.process_id)
    pid = sql(
        database_url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'goodjob:capsule-tracker'"
        " AND datname = current_database()",
    )[0][0]
    sql(database_url, "SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
    wait_until(lambda: alive(gj, victim.process_id) is False, timeout=5, message="death")
    result = processes.sweep(gj.database)
    assert result.swept
    assert result.dead_processes == 1
    assert result.released_jobs == 1
    assert locked_by(database_url, job_id) is None
    assert process_rows(database_url) == []
    # The victim notices on its next refresh and takes its lock again, under the same id.
    assert not victim.advisory_locked()
    victim.renew()
    assert [(r[0], r[1]) for r in process_rows(database_url)] == [(victim.process_id, "advisory")]
    assert advisory_locks(database_url, victim.process_id) == 1
    victim.unregister(with_advisory_lock=True)


def test_heartbeat_only_process_is_dead_only_after_expiry(
    make_app: MakeApp, database_url: str
) -> None:
    gj = make_app(process_stale_seconds=30.0, process_expired_seconds=60.0)
    other = CapsuleTracker(gj)
    other.register()
    lock_id = other.id_for_lock()
    assert lock_id is not None
    job_id = insert_locked_job(database_url, lock_id)
    # Its heartbeat stopped 59 s ago (database time): still alive, nothing swept.
    sql(database_url, "UPDATE goodjob_processes SET updated_at = now() - interval '59 seconds'")
    assert alive(gj, lock_id) is True
    assert processes.sweep(gj.database).dead_processes == 0
    assert locked_by(database_url, job_id) == lock_id
    # 61 s ago: expired, so dead; the sweep deletes it and releases its job.
    sql(database_url, "UPDATE goodjob_processes SET updated_at = now() - interval '61 seconds'")
    assert alive(gj, lock_id) is False
    result = processes.sweep(gj.database)
    assert (result.dead_processes, result.released_jobs) == (1, 1)
    assert locked_by(database_url, job_id) is None
    assert process_rows(database_url) == []
    other.unregister()


CHILD = textwrap.dedent(
    """
    import sys, goodjob
    gj = goodjob.GoodJob(sys.argv[1], process_stale_seconds=30, process_expired_seconds=300)
    tracker = goodjob.CapsuleTracker(gj)
    tracker.register(with_advisory_lock=sys.argv[2] == "advisory")
    print(tracker.id_for_lock(), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("kind", ["advisory", "heartbeat"])
def test_a_sigkilled_process_is_swept(make_app: MakeApp, database_url: str, kind: str) -> None:
    # The sweeper (this test) expires heartbeat-only rows after 2 s; for the advisory case the
    # expiry is 5 minutes, so only the lost lock can tell it the process died.
    expiry = 300.0 if kind == "advisory" else 2.0
    gj = make_app(process_stale_seconds=1.0, process_expired_seconds=expiry)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        child_id = uuid.UUID(child.stdout.readline().strip())
        job_id = insert_locked_job(database_url, child_id)
        assert alive(gj, child_id) is True
        assert processes.sweep(gj.database).dead_processes == 0
        assert locked_by(database_url, job_id) == child_id
        orphan_id = insert_locked_job(database_url, uuid.uuid4())  # names no process at all
    finally:
        child.kill()
        child.wait(timeout=10)
        assert child.stdin is not None
        child.stdin.close()
        child.stdout.close()  # type: ignore[union-attr]
    if kind == "advisory":
        # Postgres dropped the lock with the connection: dead at once, no expiry to wait for.
        wait_until(lambda: alive(gj, child_id) is False, timeout=5, message="the lock to go")
    else:
        # Nothing tells the database; the row stays alive until its heartbeat expires.
        assert alive(gj, child_id) is True
        assert processes.sweep(gj.database).dead_processes == 0
        assert locked_by(database_url, job_id) == child_id
        wait_until(lambda: alive(gj, child_id) is False, timeout=5, message="expiry")
    result = processes.sweep(gj.database)
    assert result.dead_processes == 1
    assert result.released_jobs == (2 if kind == "advisory" else 1)  # the orphan went earlier
    assert locked_by(database_url, job_id) is None
    assert locked_by(database_url, orphan_id) is None
    assert process_rows(database_url) == []


def test_sweep_keeps_live_processes_and_their_jobs(gj: GoodJob, database_url: str) -> None:
    tracker = CapsuleTracker(gj)
    with tracker.register(), tracker.register(with_advisory_lock=True):
        job_id = insert_locked_job(database_url, tracker.process_id)
        result = processes.sweep(gj.database)
        assert result.swept
        assert (result.dead_processes, result.released_jobs) == (0, 0)
        assert locked_by(database_url, job_id) == tracker.process_id


# -- threads, fork, connections -----------------------------------------------------------------


def test_twenty_threads_register_and_unregister_concurrently(
    gj: GoodJob, database_url: str
) -> None:
    tracker = CapsuleTracker(gj)
    start = threading.Barrier(20)
    ids: list[uuid.UUID | None] = []
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(5):
                advisory = index % 4 == 0
                with tracker.register(with_advisory_lock=advisory):
                    ids.append(tracker.id_for_lock())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(ids) == 100
    assert None not in ids
    assert tracker.locks == 0
    assert tracker.advisory_locks == 0
    assert process_rows(database_url) == []
    assert advisory_locks(database_url) == 0


def test_after_fork_the_child_starts_clean_and_the_parent_keeps_its_lock(
    gj: GoodJob, database_url: str
) -> None:
    tracker = CapsuleTracker(gj)
    tracker.register(with_advisory_lock=True)
    parent_id = tracker.process_id
    parent_pool = gj.database.pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any cleanup of the parent's
        try:
            os.close(read_end)
            report = (
                f"{tracker.process_id} {tracker.locks} {tracker.advisory_locks}"
                f" {tracker.record is None} {tracker.id_for_lock()}"
            )
            # The child works on its own: a fresh pool (the parent's sockets are not shared),
            # its own lock connection and its own row.
            report += f" {gj.database.pool is not parent_pool}"
            with tracker.register(), tracker.register(with_advisory_lock=True):
                tracker.id_for_lock()
                report += f" {len(process_rows(database_url))} {tracker.advisory_locked()}"
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read().split()
        child_id, locks, advisory, no_record, id_for_lock, new_pool, rows, locked = report
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert uuid.UUID(child_id) != parent_id
    assert (locks, advisory, no_record, id_for_lock) == ("0", "0", "True", "None")
    assert (new_pool, rows, locked) == ("True", "2", "True")  # the parent's row and its own
    assert [row[0] for row in process_rows(database_url)] == [parent_id]
    # The child's exit closed nothing of the parent's: its lock and row are intact.
    assert tracker.advisory_locked()
    assert advisory_locks(database_url, parent_id) == 1
    assert alive(gj, parent_id) is True
    tracker.unregister(with_advisory_lock=True)


def test_register_uses_the_given_connection(gj: GoodJob, database_url: str) -> None:
    conn = gj.database.dedicated("notifier")
    try:
        backend = conn.raw.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]  # type: ignore[index]
        tracker = CapsuleTracker(gj)
        with tracker.register(with_advisory_lock=True, connection=conn):
            holder = sql(
                database_url,
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory'"
                " AND ((classid::bigint << 32) | objid::bigint) = goodjob_lock_key(%(id)s)",
                {"id": tracker.process_id},
            )
            assert holder == [(backend,)]
        # Unregistering released the lock but left the caller's connection open.
        assert advisory_locks(database_url) == 0
        assert not conn.closed
    finally:
        conn.close()


def test_plain_last_unregister_still_releases_a_lock_on_a_given_connection(
    gj: GoodJob, database_url: str
) -> None:
    conn = gj.database.dedicated("notifier")
    try:
        tracker = CapsuleTracker(gj)
        tracker.register(with_advisory_lock=True, connection=conn)
        tracker.unregister()  # the caller forgot the flag; the lock must not outlive the row
        assert advisory_locks(database_url) == 0
        assert process_rows(database_url) == []
    finally:
        conn.close()


def test_a_tracker_takes_its_lock_again_after_the_server_restarts(own_server_dir: Path) -> None:
    # A server of its own: restarting the suite's shared one would cut every other test.
    url = embedded.ensure_running(own_server_dir).url()
    gj = GoodJob(url, process_stale_seconds=0.2, process_expired_seconds=10.0)
    gj.migrate()
    tracker = CapsuleTracker(gj)
    tracker.register(with_advisory_lock=True)
    try:
        embedded.stop(own_server_dir)  # every session, and with them every advisory lock, is gone
        assert embedded.ensure_running(own_server_dir).url() == url

        def relocked() -> bool:
            try:
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND ((classid::bigint << 32) | objid::bigint) = goodjob_lock_key(%s)",
                        (tracker.process_id,),
                    ).fetchone()
            except psycopg.OperationalError:
                return False
            return row == (1,)

        wait_until(relocked, timeout=15, message="the tracker to lock its row again")

        def liveness() -> dict[uuid.UUID, bool | None] | None:
            try:
                return {p.id: p.alive for p in processes.all_processes(gj.database)}
            except DatabaseUnavailable:
                return None  # a pooled connection from before the restart; the pool drops it

        assert wait_until(liveness, timeout=5) == {tracker.process_id: True}
    finally:
        tracker.unregister(with_advisory_lock=True)
        gj.close()


def test_a_stale_session_holding_the_processs_lock_is_ended_and_the_lock_taken(
    gj: GoodJob, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After a network cut the server keeps the process's old session, and its lock, until its
    keepalive gives up: the process ends that session rather than wait for it."""
    tracker = gj.tracker
    with psycopg.connect(database_url, autocommit=True) as stale:
        stale.execute("SELECT pg_advisory_lock(goodjob_lock_key(%s))", (tracker.process_id,))
        with tracker.register(with_advisory_lock=True):
            assert tracker.advisory_locked()
            with pytest.raises(psycopg.OperationalError):
                stale.execute("SELECT 1")
    assert [r for r in caplog.records if getattr(r, "action", None) == "relock"]
