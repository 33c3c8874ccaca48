"""Chaos (issue 13): worker processes killed in a storm, hung mid-job, cut off from the
database, and their sessions ended under them. Nothing is lost and nothing is recorded finished
twice; each scenario adds a row to the chaos report (tests/chaos.py).

The tasks log each attempt's start and end (one short line each: appends are atomic); the
database says how each job ended and how many attempts it took.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from goodjob import GoodJob, embedded
from goodjob.embedded.server import DATABASE, PORT, SERVER_SETTINGS
from tests.acceptance.conftest import Workers
from tests.chaos import FULL, record
from tests.helpers import sql, wait_until
from tests.tcp_proxy import Proxy

CHAOS_TASKS = textwrap.dedent(
    '''
    """Tasks for the chaos tests (written by tests/acceptance/test_chaos.py)."""
    import os
    import pathlib
    import time

    from goodjob import GoodJob, current_job

    gj = GoodJob()
    OUT = pathlib.Path(os.environ["GJ_TEST_OUT"])


    def _log(event: str) -> None:
        job = current_job()
        with open(OUT / "work.log", "a") as log:
            log.write(f"{job.id} {job.attempt} {os.getpid()} {event} {time.time()}\\n")


    @gj.task(name="work")
    def work(n: int, seconds: float) -> None:
        _log("start")
        time.sleep(seconds)
        _log("done")


    @gj.task(name="spin")
    def spin(seconds: float) -> None:
        """Busy on the CPU, holding the GIL as much as Python lets one thread."""
        end = time.time() + seconds
        while time.time() < end:
            pass
    '''
)
# The liveness settings of the short form: a hung process is dead 4 s after its last heartbeat.
SHORT_LIVENESS = {"GOODJOB_PROCESS_STALE_SECONDS": "1", "GOODJOB_PROCESS_EXPIRED_SECONDS": "4"}


def client(url: str) -> GoodJob:
    gj = GoodJob(url)

    @gj.task(name="work")
    def work(n: int, seconds: float) -> None: ...

    @gj.task(name="spin")
    def spin(seconds: float) -> None: ...

    return gj


def enqueue(url: str, task: str, calls: list[tuple[Any, ...]]) -> None:
    gj = client(url)
    try:
        gj.enqueue_all([gj.tasks[task].prepare(*args) for args in calls])
    finally:
        gj.close()


def start(workers: Workers, threads: int, env: dict[str, str] | None = None) -> Any:
    (workers.root / "gjchaos.py").write_text(CHAOS_TASKS)
    return workers.start("--max-threads", str(threads), app="gjchaos:gj", env=env)


def log(workers: Workers) -> list[tuple[str, int, int, str, float]]:
    """(job id, attempt, pid, event, time) for every line the tasks wrote."""
    path = workers.out / "work.log"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        job, attempt, pid, event, at = line.split()
        lines.append((job, int(attempt), int(pid), event, float(at)))
    return lines


def outcome(url: str, task: str) -> dict[str, int]:
    """How the jobs of ``task`` ended, from the database."""
    row = sql(
        url,
        """
        SELECT count(*),
               count(*) FILTER (WHERE j.finished_at IS NULL OR j.error IS NOT NULL),
               count(*) FILTER (WHERE s.succeeded > 1),
               coalesce(sum(s.executions - 1), 0)
        FROM goodjob_jobs j
        CROSS JOIN LATERAL (
            SELECT count(*) AS executions,
                   count(*) FILTER (WHERE e.finished_at IS NOT NULL AND e.error IS NULL)
                       AS succeeded
            FROM goodjob_executions e WHERE e.job_id = j.id) AS s
        WHERE j.task_name = %s
        """,
        (task,),
    )[0]
    return {"jobs": row[0], "lost": row[1], "double": row[2], "reruns": int(row[3])}


def start_latency(workers: Workers, url: str) -> float:
    """Seconds from enqueueing one more job to its start in a worker."""
    enqueued = time.time()
    enqueue(url, "work", [(-1, 0.0)])
    started = wait_until(
        lambda: [at for _, _, _, e, at in log(workers) if e == "start" and at > enqueued],
        timeout=20,
        message="a job enqueued now to start",
    )
    return started[0] - enqueued


def registered(url: str, count: int) -> None:
    """Wait for ``count`` workers to have started (a worker that cannot reach the database
    while it starts exits, as it should: the chaos is for workers that run)."""
    wait_until(
        lambda: sql(url, "SELECT count(*) FROM goodjob_processes")[0][0] >= count,
        timeout=30,
        message=f"{count} workers to start",
    )


def finished(url: str, task: str) -> bool:
    return not sql(
        url,
        "SELECT 1 FROM goodjob_jobs WHERE task_name = %s AND finished_at IS NULL LIMIT 1",
        (task,),
    )


def test_kill_storm_loses_nothing_and_finishes_nothing_twice(
    workers: Workers, database_url: str
) -> None:
    """Every 1-2 s a random worker of 3 gets SIGKILL and a new one starts; then all finish."""
    jobs, storm = (10_000, 30.0) if FULL else (1_500, 5.0)
    rng = random.Random(13)
    enqueue(database_url, "work", [(n, rng.uniform(0.01, 0.05)) for n in range(jobs)])
    live = [start(workers, 5) for _ in range(3)]
    killed: dict[int, float] = {}
    ends = time.monotonic() + storm
    while time.monotonic() < ends:
        time.sleep(rng.uniform(1.0, 2.0))
        victim = rng.choice(live)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed[victim.pid] = time.time()
        live.remove(victim)
        live.append(start(workers, 5))
    wait_until(lambda: finished(database_url, "work"), timeout=180, interval=0.25)
    figures = outcome(database_url, "work")
    # Recovery: from a kill to the next start of each attempt the kill cut short.
    lines = log(workers)
    done = {(job, attempt) for job, attempt, _, event, _ in lines if event == "done"}
    starts = {
        (job, attempt): (pid, at) for job, attempt, pid, event, at in lines if event == "start"
    }
    recoveries = [
        starts[(job, attempt + 1)][1] - killed[pid]
        for (job, attempt), (pid, _) in starts.items()
        if pid in killed and (job, attempt) not in done and (job, attempt + 1) in starts
    ]
    record(
        "kill storm",
        **figures,
        recovery_s=round(max(recoveries), 2) if recoveries else None,
        note=f"{len(killed)} workers SIGKILLed over {storm:.0f} s",
    )
    assert figures["jobs"] == jobs
    assert figures["lost"] == 0
    assert figures["double"] == 0
    assert len({job for job, *_ in lines}) == jobs  # every job's task ran
    assert figures["reruns"] > 0  # the storm did cut attempts short: the test bites
    assert recoveries
    assert max(recoveries) < 5.0


def test_a_hung_worker_is_fenced_its_job_runs_again_and_its_late_completion_is_rejected(
    workers: Workers, database_url: str
) -> None:
    """SIGSTOP mid-job: another worker runs the job again once the hung one's heartbeat
    expires; SIGCONT: the hung one finishes its copy, whose completion is rejected, and goes
    on working."""
    env = {} if FULL else SHORT_LIVENESS
    bound = 60.0 if FULL else 10.0
    hung = start(workers, 1, env)
    enqueue(database_url, "work", [(0, 2.0)])
    wait_until(lambda: log(workers), timeout=20, message="the job to start")
    (job, _, pid, _, _), *_ = log(workers)
    assert pid == hung.pid
    other = start(workers, 1, env)
    hung.send_signal(signal.SIGSTOP)
    stopped = time.time()
    try:
        again = wait_until(
            lambda: [at for j, attempt, _, event, at in log(workers) if attempt == 2],
            timeout=bound + 10,
            interval=0.1,
            message="the job to run again",
        )[0]
        recovery = again - stopped
        wait_until(lambda: finished(database_url, "work"), timeout=10, message="its second run")
    finally:
        hung.send_signal(signal.SIGCONT)
    # The hung attempt ends (its sleep is long over) and its completion is refused.
    wait_until(
        lambda: (job, 1, hung.pid) in {(j, a, p) for j, a, p, e, _ in log(workers) if e == "done"},
        timeout=20,
        message="the hung attempt to end",
    )
    wait_until(lambda: "outcome rejected" in workers.log(hung), timeout=20)
    figures = outcome(database_url, "work")
    assert figures == {"jobs": 1, "lost": 0, "double": 0, "reruns": 1}
    # The woken process re-registers and goes on working.
    enqueue(database_url, "work", [(n, 0.2) for n in range(1, 21)])
    wait_until(lambda: finished(database_url, "work"), timeout=30)
    assert hung.poll() is None
    assert hung.pid in {pid for _, _, pid, _, _ in log(workers)[2:]}
    assert other.poll() is None
    figures = outcome(database_url, "work")
    record(
        "hang (SIGSTOP)",
        **figures,
        recovery_s=round(recovery, 2),
        note=f"bound {bound:.0f} s ({'default' if FULL else 'test'} liveness settings)",
    )
    assert recovery < bound
    assert figures["lost"] == figures["double"] == 0


def test_every_goodjob_session_ended_during_a_drain_loses_nothing(
    workers: Workers, database_url: str
) -> None:
    """pg_terminate_backend of every goodjob backend, again and again, while 3 workers drain."""
    jobs, rounds = (10_000, 10) if FULL else (2_000, 4)
    enqueue(database_url, "work", [(n, 0.002) for n in range(jobs)])
    procs = [start(workers, 5) for _ in range(3)]
    registered(database_url, 3)
    ended = 0
    for _ in range(rounds):
        time.sleep(0.5)
        ended += sql(
            database_url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'goodjob%%' AND pid <> pg_backend_pid()",
        )[0][0]
    wait_until(lambda: finished(database_url, "work"), timeout=120, interval=0.25)
    figures = outcome(database_url, "work")
    record("sessions terminated", **figures, note=f"{ended} sessions ended in {rounds} rounds")
    assert ended > 0
    assert figures["jobs"] == jobs
    assert figures["lost"] == 0
    assert figures["double"] == 0
    assert all(proc.poll() is None for proc in procs)  # every worker survived


def test_the_heartbeat_keeps_time_under_cpu_bound_jobs(workers: Workers, database_url: str) -> None:
    """10 threads busy on the CPU in one process (on 2 cores): its heartbeat thread waits for
    the GIL at every step, so its heartbeats come late, but far from late enough for the process
    to be judged dead (none of its jobs runs twice). The longest gap is reported: measured at
    2-3 s with a period of 1 s, against an expiry of 40 s by default."""
    start(workers, 10, {**SHORT_LIVENESS, "GOODJOB_PROCESS_EXPIRED_SECONDS": "10"})
    enqueue(database_url, "spin", [(8.0,) for _ in range(10)])
    wait_until(
        lambda: (
            sql(database_url, "SELECT count(*) FROM goodjob_jobs WHERE locked_by_id IS NOT NULL")[
                0
            ][0]
            == 10
        ),
        timeout=20,
        message="10 busy jobs",
    )
    beats: list[float] = []
    ends = time.monotonic() + 6.0
    while time.monotonic() < ends:
        (at,) = sql(
            database_url, "SELECT extract(epoch FROM max(updated_at)) FROM goodjob_processes"
        )[0]
        if not beats or float(at) != beats[-1]:
            beats.append(float(at))
        time.sleep(0.05)
    wait_until(lambda: finished(database_url, "spin"), timeout=30)
    gap = max(b - a for a, b in itertools.pairwise(beats))
    figures = outcome(database_url, "spin")
    record(
        "heartbeat, 10 CPU-bound threads",
        **figures,
        note=f"longest heartbeat gap {gap:.2f} s (period 1 s, expiry 10 s)",
    )
    assert len(beats) >= 3
    assert gap < 5.0
    assert figures == {"jobs": 10, "lost": 0, "double": 0, "reruns": 0}


@contextlib.contextmanager
def private_server() -> Iterator[embedded.Server]:
    """A Postgres server of the test's own, migrated (the suite's is shared: it cannot be
    restarted, and listens on no TCP address). In a folder of /tmp rather than pytest's, whose
    parents other tests may close to other users meanwhile."""
    data_dir = Path(tempfile.mkdtemp(prefix="goodjob-chaos-")) / "pg"
    server = embedded.ensure_running(data_dir)
    try:
        migrating = GoodJob(server.url())
        migrating.migrate()
        migrating.close()
        yield server
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_connections_reset_and_stalled_by_a_proxy_lose_nothing(
    workers: Workers, database_url: str
) -> None:
    """Workers reach Postgres through a TCP proxy that resets every connection, then holds
    every byte for 2 s, again and again, during a drain: each part of each worker (notifier,
    claimer, completer, sweeper) comes back by itself. The poll is 30 s, so the job enqueued
    afterwards starting at once shows the notifier listening again."""
    jobs, rounds = (10_000, 6) if FULL else (2_000, 2)
    info = conninfo_to_dict(database_url)
    proxy = Proxy(f"{info['host']}/.s.PGSQL.{info['port']}")
    passfile = quote(str(info["passfile"]), safe="/")
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{info['dbname']}?passfile={passfile}"
    try:
        enqueue(database_url, "work", [(n, 0.002) for n in range(jobs)])
        env = {"GOODJOB_DATABASE_URL": url, "GOODJOB_POLL_INTERVAL": "30"}
        procs = [start(workers, 5, env) for _ in range(3)]
        registered(database_url, 3)
        reset = 0
        for _ in range(rounds):
            time.sleep(0.5)
            reset += proxy.drop()
            time.sleep(0.5)
            proxy.stall(2.0)
        wait_until(lambda: finished(database_url, "work"), timeout=120, interval=0.25)
        time.sleep(2.0)  # the notifiers' reconnection back-off, at most
        latency = start_latency(workers, database_url)
    finally:
        proxy.close()
    figures = outcome(database_url, "work")
    record(
        "connections reset and stalled (TCP proxy)",
        **figures,
        note=f"{reset} connections reset, {rounds} stalls of 2 s; a job enqueued afterwards"
        f" started in {latency:.2f} s (poll 30 s)",
    )
    assert reset > 0
    assert figures["lost"] == 0
    assert figures["double"] == 0
    assert all(proc.poll() is None for proc in procs)
    assert latency < 5.0


def test_a_database_restart_during_a_drain_loses_nothing(workers: Workers) -> None:
    jobs = 10_000 if FULL else 2_000
    with private_server() as server:
        url = server.url()
        enqueue(url, "work", [(n, 0.002) for n in range(jobs)])
        procs = [start(workers, 5, {"GOODJOB_DATABASE_URL": url}) for _ in range(3)]
        registered(url, 3)
        wait_until(lambda: len(log(workers)) > jobs // 5, timeout=30, interval=0.05)
        embedded.stop(server.data_dir)
        stopped = time.time()
        time.sleep(1.0)
        embedded.ensure_running(server.data_dir)
        again = wait_until(
            lambda: [at for *_, e, at in log(workers) if e == "start" and at > stopped],
            timeout=60,
            message="jobs to start after the restart",
        )[0]
        wait_until(lambda: finished(url, "work"), timeout=120, interval=0.25)
        figures = outcome(url, "work")
    record(
        "database restart",
        **figures,
        recovery_s=round(again - stopped, 2),
        note="stopped (fast) and started again mid-drain, down 1 s; recovery from the stop",
    )
    assert figures["jobs"] == jobs
    assert figures["lost"] == 0
    assert figures["double"] == 0
    assert all(proc.poll() is None for proc in procs)


def test_a_long_transaction_during_a_drain_holds_nothing_up(
    workers: Workers, database_url: str
) -> None:
    """A transaction left open (holding back vacuum) for the whole drain: dead rows pile up,
    and the drain goes on; a job enqueued meanwhile starts at once."""
    jobs, hold = (10_000, 60.0) if FULL else (2_000, 5.0)
    with psycopg.connect(database_url) as idle:
        idle.execute("SELECT txid_current()")  # an xid: vacuum keeps every row version after it
        opened = time.monotonic()
        enqueue(database_url, "work", [(n, 0.002) for n in range(jobs)])
        began = time.monotonic()
        for _ in range(3):
            start(workers, 5)
        wait_until(lambda: finished(database_url, "work"), timeout=180, interval=0.25)
        drain = time.monotonic() - began
        latency = start_latency(workers, database_url)
        time.sleep(max(0.0, hold - (time.monotonic() - opened)))
        idle.rollback()
    figures = outcome(database_url, "work")
    record(
        "long transaction open",
        **figures,
        note=f"open {max(hold, time.monotonic() - opened):.0f} s: drain {jobs / drain:,.0f}"
        f" jobs/s; a job enqueued then started in {latency * 1000:.0f} ms",
    )
    assert figures["lost"] == 0
    assert figures["double"] == 0
    assert latency < 2.0


class Namespace:
    """A network namespace joined to this host by a veth pair, on addresses of its own."""

    def __init__(self, index: int) -> None:
        self.name = f"gjchaos{index}"
        self.host_link, self.ns_link = f"gjh{index}", f"gjn{index}"
        self.host_ip, self.ns_ip = f"10.213.{index}.1", f"10.213.{index}.2"

    def create(self) -> str | None:
        """Make it; the reason it could not be made, or None."""
        if shutil.which("ip") is None:
            return "the ip command (iproute2) is not installed"
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", self.ns_link],
            ["ip", "link", "set", self.ns_link, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_link],
            ["ip", "link", "set", self.host_link, "up"],
            *(
                ["ip", "netns", "exec", self.name, *step]
                for step in (
                    ["ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_link],
                    ["ip", "link", "set", self.ns_link, "up"],
                    ["ip", "link", "set", "lo", "up"],
                )
            ),
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return f"`{' '.join(step)}` failed: {done.stderr.strip()}"
        return None

    def link(self, up: bool) -> None:
        subprocess.run(["ip", "link", "set", self.host_link, "up" if up else "down"], check=True)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, check=False)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    ns = Namespace(os.getpid() % 200 + 20)
    ns.delete()  # a leftover of an earlier run
    reason = ns.create()
    if reason is not None:
        ns.delete()
        pytest.skip(f"network namespaces cannot be made here ({reason}): partition not tested")
    yield ns
    ns.delete()


def test_a_partitioned_worker_loses_its_claims_within_seconds_and_completes_nothing_twice(
    workers: Workers, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker in its own network namespace reaches a Postgres that listens on the host's end
    of a veth pair. The link is cut mid-job: the server ends the silent sessions by its TCP
    keepalives (set by goodjob on each session), the worker's lock goes, and a worker on the
    host runs the job again, sooner than the heartbeat's expiry; the link comes back and the
    cut-off worker's completion is rejected."""
    monkeypatch.setitem(SERVER_SETTINGS, "listen_addresses", namespace.host_ip)
    with private_server() as server:
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            hba = admin.execute("SHOW hba_file").fetchone()
            assert hba is not None
            with open(hba[0], "a") as rules:
                rules.write(f"host all all {namespace.host_ip}/30 scram-sha-256\n")
            admin.execute("SELECT pg_reload_conf()")
        local_url = server.url()
        passfile = quote(str(server.passfile), safe="/")
        tcp_url = f"postgresql://postgres@{namespace.host_ip}:{PORT}/{DATABASE}?passfile={passfile}"
        (workers.root / "gjchaos.py").write_text(CHAOS_TASKS)
        log_file = open(workers.root / "worker-partitioned.log", "wb")  # noqa: SIM115
        cut_off = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                namespace.name,
                sys.executable,
                "-m",
                "goodjob",
                "start",
                "--app",
                "gjchaos:gj",
                "--max-threads",
                "1",
            ],
            cwd=workers.root,
            env={**workers.env, "GOODJOB_DATABASE_URL": tcp_url},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        workers.procs.append(cut_off)
        enqueue(local_url, "work", [(0, 25.0)])
        wait_until(lambda: log(workers), timeout=30, message="the job to start")
        assert log(workers)[0][2] == cut_off.pid
        local = {"GOODJOB_DATABASE_URL": local_url}
        workers.start("--max-threads", "1", app="gjchaos:gj", env=local)
        namespace.link(up=False)
        cut = time.time()
        again = wait_until(
            lambda: [at for _, attempt, _, _, at in log(workers) if attempt == 2],
            timeout=60,
            interval=0.1,
            message="the job to run again on the host",
        )[0]
        recovery = again - cut
        namespace.link(up=True)
        wait_until(lambda: finished(local_url, "work"), timeout=60, message="the second run")
        # The cut-off attempt ends (25 s after it began) and is not recorded.
        wait_until(
            lambda: any(p == cut_off.pid and e == "done" for _, _, p, e, _ in log(workers)),
            timeout=60,
            message="the cut-off attempt to end",
        )
        wait_until(
            lambda: (
                sql(
                    local_url,
                    "SELECT count(*) FROM goodjob_executions WHERE finished_at IS NULL",
                )[0][0]
                == 0
            ),
            timeout=30,
            message="the cut-off attempt to be closed",
        )
        figures = outcome(local_url, "work")
        record(
            "partition (veth cut)",
            **figures,
            recovery_s=round(recovery, 2),
            note="ended by the server's TCP keepalives, before the 40 s heartbeat expiry",
        )
        assert figures == {"jobs": 1, "lost": 0, "double": 0, "reruns": 1}
        assert recovery < 30.0  # keepalives: ~11 s; the heartbeat's expiry would take 40 s
        workers.kill_all()
