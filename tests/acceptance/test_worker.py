"""``goodjob start`` as users run it: crash recovery, graceful shutdown, the supervisor."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from goodjob import GoodJob
from tests.acceptance.conftest import Workers
from tests.helpers import sql, wait_until


def process_pids(url: str) -> dict[int, str]:
    rows = sql(url, "SELECT (state->>'pid')::int, id::text FROM goodjob_processes")
    return {pid: pid_id for pid, pid_id in rows}


def executions(url: str, job_id: Any) -> list[tuple[Any, ...]]:
    return sql(
        url,
        "SELECT attempt, error_event, finished_at IS NOT NULL, process_id::text"
        " FROM goodjob_executions WHERE job_id = %s ORDER BY attempt",
        (job_id,),
    )


@pytest.mark.parametrize(
    ("flags", "bound"),
    [
        pytest.param((), 5.0, id="advisory-lock-on-listen-connection"),
        pytest.param(
            ("--no-enable-listen-notify", "--poll-interval", "0.5"), 5.0, id="polling-only"
        ),
        # Heartbeat-only (PgBouncer): dead once the heartbeat expires, plus one sweep.
        pytest.param(
            (
                "--no-advisory-lock-heartbeat",
                "--process-stale-seconds",
                "0.5",
                "--process-expired-seconds",
                "2",
            ),
            2.0 + 2.0,
            id="heartbeat-only",
        ),
    ],
)
def test_kill_9_mid_job_is_rerun_by_another_worker_within_5s(
    workers: Workers, client: GoodJob, database_url: str, flags: tuple[str, ...], bound: float
) -> None:
    first = workers.start(*flags)
    wait_until(lambda: first.pid in process_pids(database_url), timeout=15, message="worker 1")
    job = client.tasks["crashy"].enqueue("k9")
    wait_until(lambda: workers.marker("k9") == ["k9.1.started"], timeout=10)
    assert workers.marker_data("k9.1.started")[0] == first.pid
    second = workers.start(*flags)
    wait_until(lambda: second.pid in process_pids(database_url), timeout=15, message="worker 2")
    dead_id = process_pids(database_url)[first.pid]

    killed_at = time.time()
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    wait_until(lambda: "k9.2.started" in workers.marker("k9"), timeout=10)
    pid, restarted_at = workers.marker_data("k9.2.started")
    assert pid == second.pid
    assert restarted_at - killed_at < bound, f"re-run after {restarted_at - killed_at:.2f}s"

    wait_until(lambda: client.job(job.id).status == "succeeded", timeout=5)
    assert client.job(job.id).result == second.pid
    runs = executions(database_url, job.id)
    assert [(a, e, f) for a, e, f, _ in runs] == [(1, "interrupted", True), (2, None, True)]
    assert runs[0][3] == dead_id
    assert workers.marker("k9") == ["k9.1.started", "k9.2.done", "k9.2.started"]
    assert first.pid not in process_pids(database_url)  # the dead row is gone


def test_sigterm_lets_the_running_job_finish_and_exits_0(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    worker = workers.start()
    wait_until(lambda: worker.pid in process_pids(database_url), timeout=15)
    job = client.tasks["sleepy"].enqueue("term", 1.0)
    wait_until(lambda: workers.marker("term") == ["term.1.started"], timeout=10)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0, workers.log(worker)
    assert client.job(job.id).status == "succeeded"
    assert workers.marker("term") == ["term.1.done", "term.1.started"]
    assert process_pids(database_url) == {}


def test_shutdown_timeout_interrupts_and_another_worker_reruns(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    first = workers.start("--shutdown-timeout", "0.5")
    wait_until(lambda: first.pid in process_pids(database_url), timeout=15)
    job = client.tasks["crashy"].enqueue("st")
    wait_until(lambda: workers.marker("st") == ["st.1.started"], timeout=10)
    first.send_signal(signal.SIGTERM)
    assert first.wait(15) == 0, workers.log(first)
    assert sql(database_url, "SELECT locked_by_id FROM goodjob_jobs")[0][0] is None

    second = workers.start()
    wait_until(lambda: client.job(job.id).status == "succeeded", timeout=15)
    assert client.job(job.id).result == second.pid
    runs = executions(database_url, job.id)
    assert [(a, e, f) for a, e, f, _ in runs] == [(1, "interrupted", True), (2, None, True)]


def test_second_signal_exits_at_once(workers: Workers, client: GoodJob, database_url: str) -> None:
    first = workers.start()
    wait_until(lambda: first.pid in process_pids(database_url), timeout=15)
    client.tasks["crashy"].enqueue("twice")
    wait_until(lambda: workers.marker("twice") == ["twice.1.started"], timeout=10)
    first.send_signal(signal.SIGTERM)
    # Two SIGTERMs sent before the first is handled merge into one pending signal: wait until
    # the worker says it handled the first, not for a guessed time.
    wait_until(
        lambda: "received SIGTERM" in workers.log(first), timeout=5, message="the first SIGTERM"
    )
    first.send_signal(signal.SIGTERM)
    assert first.wait(5) != 0


def test_idle_timeout_exits_0(workers: Workers, database_url: str) -> None:
    worker = workers.start("--idle-timeout", "1")
    t0 = time.monotonic()
    assert worker.wait(20) == 0, workers.log(worker)
    assert time.monotonic() - t0 < 15
    assert process_pids(database_url) == {}


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("mail:two", '"mail:two": thread count must be a whole number'),
        ("mail;;b", "empty pool"),
        ("a,,b", "empty queue name"),
        ("*,mail", "cannot be combined"),
        ("mail:0", "at least 1"),
        (":3", 'no queue before ":"'),
        ("ma il", "may only hold"),
    ],
)
def test_malformed_queue_strings_are_rejected_clearly(
    workers: Workers, queues: str, message: str
) -> None:
    result = workers.run("start", "--app", "gjtasks:gj", "--queues", queues)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_supervisor_restarts_a_killed_child_and_its_job_is_rerun(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    supervisor = workers.start("--processes", "2")
    wait_until(lambda: len(process_pids(database_url)) == 2, timeout=20, message="2 children")
    job = client.tasks["crashy"].enqueue("child")
    wait_until(lambda: workers.marker("child") == ["child.1.started"], timeout=10)
    victim, _ = workers.marker_data("child.1.started")
    assert victim != supervisor.pid
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: "child.2.started" in workers.marker("child"), timeout=10)
    pid, restarted_at = workers.marker_data("child.2.started")
    assert pid != victim
    assert restarted_at - killed_at < 5
    wait_until(lambda: client.job(job.id).status == "succeeded", timeout=5)
    assert [e for _, e, _, _ in executions(database_url, job.id)] == ["interrupted", None]
    # The supervisor replaced the dead child: two live rows again, none of them the victim's.
    wait_until(lambda: len(process_pids(database_url)) == 2, timeout=15)
    assert victim not in process_pids(database_url)

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, workers.log(supervisor)
    assert process_pids(database_url) == {}


def test_ctrl_c_in_a_terminal_stops_supervisor_and_children_gracefully(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    supervisor = workers.start("--processes", "2", new_session=True)
    wait_until(lambda: len(process_pids(database_url)) == 2, timeout=20)
    job = client.tasks["sleepy"].enqueue("ctrl-c", 1.0)
    wait_until(lambda: workers.marker("ctrl-c") == ["ctrl-c.1.started"], timeout=10)
    os.killpg(supervisor.pid, signal.SIGINT)  # what a terminal does: the foreground group
    assert supervisor.wait(20) == 0, workers.log(supervisor)
    assert client.job(job.id).status == "succeeded"  # a single, graceful signal per child
    assert process_pids(database_url) == {}


def test_children_stop_when_the_supervisor_is_killed(workers: Workers, database_url: str) -> None:
    supervisor = workers.start("--processes", "2")
    wait_until(lambda: len(process_pids(database_url)) == 2, timeout=20)
    children = list(process_pids(database_url))
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(5)
    wait_until(lambda: process_pids(database_url) == {}, timeout=10, message="children gone")
    for pid in children:
        wait_until(lambda pid=pid: not _alive(pid), timeout=5)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for whichever process adopted it to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_processes_by_threads_drain_5000_jobs_exactly_once(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    count = client.tasks["count"]
    client.enqueue_all(count.prepare(n) for n in range(5000))
    supervisor = workers.start("--processes", "3", "--max-threads", "4")
    wait_until(
        lambda: (
            sql(database_url, "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL")
            == [(0,)]
        ),
        timeout=90,
        interval=0.2,
        message="5000 jobs finished",
    )
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0
    lines = (workers.out / "count.log").read_text().split()
    assert sorted(map(int, lines)) == list(range(5000))  # each ran exactly once
    assert sql(database_url, "SELECT count(*), max(executions_count) FROM goodjob_jobs") == [
        (5000, 1)
    ]
    assert sql(database_url, "SELECT count(DISTINCT process_id) FROM goodjob_executions")[0][0] >= 2


def test_a_started_worker_starts_each_job_on_its_notify_not_at_a_poll(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    """With polls 30 s apart, every job starting within a few seconds was woken by its NOTIFY.
    (The latency itself is measured by `goodjob bench`, not asserted by a timing test.)"""
    worker = workers.start("--poll-interval", "30")
    wait_until(lambda: worker.pid in process_pids(database_url), timeout=15)
    for n in range(15):
        client.tasks["mark"].enqueue(f"lat{n}")
        wait_until(lambda n=n: workers.marker(f"lat{n}"), timeout=10, interval=0.002)


def test_a_worker_started_before_its_database_waits_for_it(
    workers: Workers, client: GoodJob, database_url: str
) -> None:
    """`goodjob start` retries a database it cannot reach for up to startup_wait seconds: the
    worker below starts while its only way to the server (a proxy) refuses every connection,
    and runs the queued job once the way opens."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.tcp_proxy import Proxy

    info = conninfo_to_dict(database_url)
    proxy = Proxy(f"{info['host']}/no-server-here")  # accepts, then closes: unreachable
    passfile = info["passfile"]
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{info['dbname']}?passfile={passfile}"
    try:
        job = client.tasks["mark"].enqueue("waited")
        worker = workers.start(env={"GOODJOB_DATABASE_URL": url, "GOODJOB_STARTUP_WAIT": "60"})
        wait_until(
            lambda: "trying again" in workers.log(worker), timeout=15, message="a retry logged"
        )
        assert worker.poll() is None  # still trying
        proxy.target = f"{info['host']}/.s.PGSQL.{info['port']}"  # the way opens
        wait_until(
            lambda: client.job(job.id).status == "succeeded", timeout=20, message="the job to run"
        )
        assert workers.marker("waited") == ["waited.1.started"]
    finally:
        proxy.close()


def test_a_worker_gives_up_on_an_unreachable_database_after_startup_wait(
    workers: Workers, tmp_path: Any
) -> None:
    url = f"postgresql://postgres@/goodjob?host={tmp_path}"  # no server has a socket there
    started = time.monotonic()
    env = {"GOODJOB_DATABASE_URL": url, "GOODJOB_STARTUP_WAIT": "2"}
    result = workers.run("start", "--app", "gjtasks:gj", env=env)
    assert 2 <= time.monotonic() - started < 15
    assert result.returncode == 1
    assert "trying again" in result.stderr
    assert "error: the database cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr
