"""Fixtures: a real Postgres started by the suite, and a fresh migrated database per test.

The server is goodjob's own embedded one (the zero-setup code under test), in
``.goodjob/test-postgres``. Each xdist worker migrates one template database once; every test
gets a clone of it, dropped afterwards. After each test a check fails it if an advisory lock,
a CapsuleTracker registration or a goodjob thread leaked (as GoodJob's specs do).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goodjob import embedded
from goodjob.app import GoodJob
from goodjob.capsule_tracker import CapsuleTracker
from goodjob.config import Settings
from goodjob.db import Database
from goodjob.db.migrate import migrate
from tests import chaos
from tests.pgbouncer import PgBouncer

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = ROOT / ".goodjob" / "test-postgres"
ADVISORY_LOCK_GRACE = 5.0  # seconds a killed worker's session may take to end (see the leak check)

# Settings that keep tests quick; each test may override.
FAST = {
    "process_stale_seconds": 1.0,
    "process_expired_seconds": 5.0,
    "sweep_interval": 0.2,
    "poll_interval": 1.0,
}


@pytest.fixture(scope="session")
def pg_server() -> embedded.Server:
    return embedded.ensure_running(TEST_DATA_DIR)


def _admin(server: embedded.Server) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.url("postgres"), autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_server: embedded.Server, worker_id: str) -> Iterator[str]:
    name = f"gj_template_{worker_id}_{os.getpid()}"
    with _admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(Settings.load(environ={}, database_url=pg_server.url(name)))
    migrate(db)
    db.close()
    yield name
    with _admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server: embedded.Server, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = f"gj_test_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.url(name)
    yield url
    held = _left_after_grace(url, ADVISORY_LOCKS)
    sessions = _left_after_grace(url, OTHER_SESSIONS)
    with _admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert not held, f"{len(held)} advisory locks leaked"
    assert not sessions, f"connections leaked: {sessions}"


def _left_after_grace(url: str, query: str, grace: float = ADVISORY_LOCK_GRACE) -> list[str]:
    """The rows ``query`` finds on the test's database once it finds none, or after ``grace``
    seconds: the session of a worker the test SIGKILLed ends (taking its locks) only once the
    server notices its socket closed, which on a loaded machine can trail the test by a moment.
    What is left after that has leaked."""
    deadline = time.monotonic() + grace
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = [str(row[0]) for row in conn.execute(query).fetchall()]
            if not rows or time.monotonic() > deadline:
                return sorted(rows)
            time.sleep(0.05)


ADVISORY_LOCKS = (
    "SELECT objid FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
OTHER_SESSIONS = (
    "SELECT application_name FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def empty_database_url(pg_server: embedded.Server) -> Iterator[str]:
    """A fresh database with no goodjob tables."""
    name = f"gj_empty_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with _admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_app(database_url: str) -> Iterator[type[GoodJob]]:
    """Build apps on the test database (closed after the test)."""
    apps: list[GoodJob] = []

    def factory(**settings: object) -> GoodJob:
        app = GoodJob(database_url, **{**FAST, **settings})  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield factory  # type: ignore[misc]
    leaked = []
    for app in apps:
        while app.tracker.locks:
            app.tracker.unregister(with_advisory_lock=app.tracker.advisory_locks > 0)
        # A connection checked out of the pool and never given back (returned ones become
        # available; the pool may still be opening one, hence the wait).
        deadline = time.monotonic() + 2
        while (active := app.database.pool_stats()["active"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if active:
            leaked.append(active)
        app.close()
    assert not leaked, f"pooled connections never returned: {leaked}"


@pytest.fixture
def gj(make_app: type[GoodJob]) -> GoodJob:
    return make_app()


def _goodjob_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("goodjob") and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a registration or a goodjob thread behind, or in which a
    background thread died of an exception (locks and connections: database_url)."""
    CapsuleTracker.instances.clear()
    died: list[str] = []
    previous = threading.excepthook

    def record(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        died.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = record
    try:
        yield
    finally:
        threading.excepthook = previous
    assert not died, f"background threads raised: {died}"
    leaked = [t for t in CapsuleTracker.instances if t.locks]
    CapsuleTracker.instances.clear()
    assert not leaked, f"CapsuleTracker registrations leaked: {[t.locks for t in leaked]}"
    deadline = time.monotonic() + 5
    while _goodjob_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _goodjob_threads(), f"goodjob threads leaked: {_goodjob_threads()}"


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:  # the controller: this session's chaos report
        path = ROOT / ".goodjob" / f"chaos-results-{os.getpid()}.jsonl"
        os.environ[chaos.RESULTS_ENV] = str(path)
    else:  # an xdist worker: the controller's (handed over by pytest_configure_node)
        os.environ[chaos.RESULTS_ENV] = workerinput[chaos.RESULTS_ENV]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[chaos.RESULTS_ENV] = os.environ[chaos.RESULTS_ENV]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # the controller prints the report, once every worker has written its rows
    text = chaos.table()
    chaos.results().unlink(missing_ok=True)
    if text:
        mode = "full" if chaos.FULL else "short form; `make chaos` for the full one"
        terminalreporter.write_sep("=", f"chaos ({mode})")
        terminalreporter.write_line(text)


@pytest.fixture
def pgbouncer(pg_server: embedded.Server, database_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of this test's database (tests/pgbouncer.py)."""
    bouncer = PgBouncer(pg_server)
    yield bouncer
    bouncer.stop()
