"""Where the benchmark runs: the server, a fresh database per scenario, and worker processes.

Every scenario gets a database of its own, created on the same server and dropped afterwards, so
no scenario sees another's rows or dead tuples. Workers are separate processes (``goodjob start``
or the baseline worker), each in its own process group, stopped with SIGTERM and, after a grace
period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goodjob.app import GoodJob

T = TypeVar("T")
APP = "goodjob.bench.workload:gj"
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when stopping a worker


class BenchError(RuntimeError):
    """A scenario could not run (a worker died, a wait timed out)."""


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    params: dict[str, Any] = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)


def server_facts(url: str) -> dict[str, Any]:
    """Postgres version and the durability settings the figures depend on."""
    with psycopg.connect(url, autocommit=True) as conn:
        facts: dict[str, Any] = {}
        for setting in (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
        ):
            row = conn.execute(f"SHOW {setting}").fetchone()
            facts[setting] = row[0] if row else None
    facts["cores"] = os.cpu_count()
    return facts


@contextlib.contextmanager
def fresh_database(url: str, label: str, *, keep: bool = False) -> Iterator[str]:
    """A new, empty database on ``url``'s server for one scenario; dropped afterwards unless
    ``keep``."""
    name = f"gj_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = with_database(url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(url, name)
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_app(url: str, **settings: Any) -> GoodJob:
    """A client app on ``url`` with goodjob's schema in place and the benchmark's tasks."""
    from goodjob.bench.workload import register

    app = GoodJob(url, **settings)
    app.migrate()
    register(app)
    return app


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """One statement on its own connection; returns its rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def scalar(url: str, statement: str, params: Any = None) -> Any:
    rows = sql(url, statement, params)
    return rows[0][0] if rows else None


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    workers: Sequence[WorkerProcess] = (),
) -> T:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` or when a worker died."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """One worker process started by the benchmark."""

    argv: list[str]
    env: dict[str, str]
    label: str
    log: Path = field(init=False)
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        handle, path = tempfile.mkstemp(prefix=f"goodjob-bench-{self.label}-", suffix=".log")
        self.log = Path(path)
        with os.fdopen(handle, "wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: children stop with it
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"worker {self.label} exited with {code}:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Children of a supervisor that outlived it (killed leader) share its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.log.unlink()


@dataclass(frozen=True)
class WorkerConfig:
    """How many worker processes and threads a scenario runs, and how they poll."""

    threads: int | None = None  # None: goodjob's default
    processes: int = 1
    poll_interval: float | None = None  # None: goodjob's default
    pool_size: int | None = None  # None: goodjob's default (database_pool_size)
    # A transaction-mode pooler (PgBouncer) in front of the server: the workers' connections go
    # through it, their LISTEN stays on the direct URL (README, "PgBouncer").
    pooler_url: str | None = None

    def describe(self) -> str:
        threads = "default" if self.threads is None else str(self.threads)
        pool = "" if self.pool_size is None else f", pool {self.pool_size}"
        pooler = "" if self.pooler_url is None else ", through the pooler"
        return f"{self.processes}x{threads} threads{pool}{pooler}"


def pooled(url: str, pooler_url: str) -> str:
    """``pooler_url`` naming the database of ``url`` (the pooler serves any name)."""
    return with_database(pooler_url, str(conninfo_to_dict(url)["dbname"]))


def goodjob_workers(url: str, config: WorkerConfig, label: str) -> list[WorkerProcess]:
    """Start ``goodjob start`` on ``url`` (one process; a supervisor when ``processes > 1``)."""
    env = {**os.environ, "GOODJOB_DATABASE_URL": url}
    env.pop("GOODJOB_APP", None)
    argv = [sys.executable, "-m", "goodjob", "start", "--app", APP]
    if config.threads is not None:
        argv += ["--max-threads", str(config.threads)]
    if config.poll_interval is not None:
        argv += ["--poll-interval", str(config.poll_interval)]
    if config.processes > 1:
        argv += ["--processes", str(config.processes)]
    if config.pool_size is not None:
        argv += ["--database-pool-size", str(config.pool_size)]
    if config.pooler_url is not None:
        env.update(
            GOODJOB_DATABASE_URL=pooled(url, config.pooler_url),
            GOODJOB_NOTIFY_DATABASE_URL=url,
            GOODJOB_DATABASE_POOLER="true",
            GOODJOB_ADVISORY_LOCK_HEARTBEAT="false",
            GOODJOB_LOCK_STRATEGY="skiplocked",
            GOODJOB_PREPARE_THRESHOLD="-1",  # any PgBouncer: 1.21's prepared statements need setup
        )
    return [WorkerProcess(argv, env, label)]


def baseline_worker(url: str, label: str, pooler_url: str | None = None) -> WorkerProcess:
    argv = [sys.executable, "-m", "goodjob.bench.baseline", url]
    if pooler_url is not None:
        argv += ["--pooler-url", pooled(url, pooler_url)]
    return WorkerProcess(argv, dict(os.environ), label)


@contextlib.contextmanager
def running(workers: Sequence[WorkerProcess]) -> Iterator[Sequence[WorkerProcess]]:
    """Stop ``workers`` when the block ends, whatever happens in it."""
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
