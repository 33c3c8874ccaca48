"""Connections: a small pool per process, dedicated connections, and one error translation.

Only this package imports psycopg. Every statement is named (see ``queries.sql``); callers pass
the name and parameters and get rows back as dicts. Jobs never hold a connection while they run,
so the pool stays small whatever the thread count.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json as jsonlib
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row, tuple_row
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from goodjob import embedded
from goodjob.config import Settings
from goodjob.db.queries import query
from goodjob.errors import DatabaseError, DatabaseUnavailable, SchemaNotMigrated

logger = logging.getLogger("goodjob.db")

Row = dict[str, Any]
Params = Mapping[str, Any] | None

CHANNEL = "goodjob"  # the LISTEN/NOTIFY channel
POOL_TIMEOUT = 30.0  # seconds to wait for a pooled connection
CONNECT_TIMEOUT = 10  # seconds
# Detect a dead peer within about half a minute even when the network drops packets silently.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


# Objects a forked child inherited from its parent (pools, connections). They stay referenced
# and are never closed in the child: closing one would send a Terminate message on the parent's
# socket and end the parent's session (and with it the parent's advisory lock).
inherited: list[Any] = []
_databases: weakref.WeakSet[Database] = weakref.WeakSet()


# A pooled connection idle for longer than this is checked (an empty query) before it is handed
# out: after a database restart or a network cut, every idle connection is dead, and without the
# check each one would fail a statement first. Connections back from use within this time are
# trusted, so a busy worker does not pay a round trip per statement.
CHECK_IDLE_SECONDS = 1.0


class OwnConnection(psycopg.Connection[Row]):
    """A connection goodjob opened (pooled or dedicated), configured by ``_configure``: its
    statements need none of :func:`caller_cursor`'s care."""


class PooledConnection(OwnConnection):
    """A connection of goodjob's pool: it knows when it was last returned, and keeps two cursors.

    The cursors are reused by every statement run on the connection: a new cursor starts with
    empty adapter caches, about 15 µs of each enqueue's client time (issue 5). One returns rows
    as dicts; the other, for statements whose rows are not read, returns tuples, which spares
    building the column names each time (3 µs of an enqueue).
    """

    returned_at: float | None = None
    _dicts: psycopg.Cursor[Row] | None = None
    _tuples: psycopg.Cursor[Any] | None = None

    def statements(self) -> psycopg.Cursor[Row]:
        """The cursor returning rows as dicts."""
        cur = self._dicts
        if cur is None or cur.closed:
            cur = self._dicts = self.cursor()
        return cur

    def commands(self) -> psycopg.Cursor[Any]:
        """The cursor for statements run for their effect (rows as tuples, never read)."""
        cur = self._tuples
        if cur is None or cur.closed:
            cur = self._tuples = self.cursor(row_factory=tuple_row)
        return cur


def _check_if_idle(conn: PooledConnection) -> None:
    """The pool's ``check`` callback: ping only connections that sat idle.

    The return time is stamped by ``Database._checkin``, not by a pool ``reset`` callback: with
    one, psycopg_pool hands every returned connection to a worker thread, and the next checkout
    can wait on that thread (issue 5: a thread switch per enqueue).
    """
    if conn.returned_at is None or time.monotonic() - conn.returned_at >= CHECK_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


def _loads(text: str | bytes) -> Any:
    """json.loads for goodjob's connections: a document nested too deep for Python comes back as
    a tagged value that goodjob's decoder refuses with a clear error, instead of a RecursionError
    that fails the whole read (issue 11: one such job made ``gj.job(id)`` unusable)."""
    try:
        return jsonlib.loads(text)
    except RecursionError:
        return {"__goodjob__": "undecodable", "value": "nested too deep to decode"}


# The server's side of every goodjob session over TCP: a client host that loses power or its
# network sends no FIN, and without these the server keeps the session, and the process's
# advisory lock, until the kernel's keepalive gives up (over two hours by default). With them it
# ends the session within about 11 s of silence (keepalive probes: 5 s idle, then 3 probes 2 s
# apart), or 10 s after data it sent went unacknowledged (tcp_user_timeout). Each is set on its
# own: a server whose platform lacks one refuses a non-zero value, and the others still apply.
# (Unix-socket sessions ignore them.)
SESSION_KEEPALIVES = """
DO $$
DECLARE
    setting text[];
BEGIN
    FOREACH setting SLICE 1 IN ARRAY ARRAY[['tcp_keepalives_idle', '5'],
                                           ['tcp_keepalives_interval', '2'],
                                           ['tcp_keepalives_count', '3'],
                                           ['tcp_user_timeout', '10000']]
    LOOP
        BEGIN
            PERFORM set_config(setting[1], setting[2], false);
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END LOOP;
END
$$"""


def _configure(conn: psycopg.Connection[Any], *, session_settings: bool = True) -> None:
    set_json_loads(_loads, conn)
    if session_settings:
        # Not through a transaction-mode pooler (issue 19): its session SETs would land on
        # whichever server connection it lent for them, then on other clients' work; the
        # pooler's own server_* keepalive settings stand in for them there.
        conn.execute(SESSION_KEEPALIVES)
    # goodjob's transactions (limited enqueues) count what other transactions committed between
    # their statements, which needs READ COMMITTED: under a server or role default of REPEATABLE
    # READ, an enqueue's second statement would count with its first's snapshot, and a
    # concurrency limit could be exceeded. psycopg names it in each BEGIN.
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED


def caller_cursor(conn: Any) -> Any:
    """A cursor on a caller's connection (sync or async) that reads and writes as goodjob's own
    do, whatever the caller's framework configured: Django's client-side binding cursors cannot
    send the binary parameters of a batch insert, and Django loads jsonb as text and timestamps
    in its own time zone."""
    kind = psycopg.AsyncCursor if isinstance(conn, psycopg.AsyncConnection) else psycopg.Cursor
    cur = kind(conn, row_factory=dict_row)
    set_json_loads(_loads, cur)
    cur.adapters.register_loader("timestamptz", TimestamptzLoader)
    return cur


def json(value: Any) -> Jsonb:
    """Wrap an already-JSON-safe value for a jsonb parameter."""
    return Jsonb(value)


def _as_is(text: Any) -> str:
    return str(text)


def json_text(text: str) -> Jsonb:
    """Wrap JSON text (already dumped) for a jsonb parameter, without dumping it again."""
    return Jsonb(text, dumps=_as_is)


class translate_errors:
    """Turn psycopg's exceptions into goodjob's, once, here.

    A class rather than a generator context manager: it wraps every statement, and entering
    and leaving a generator costs several times more (issue 5: one enqueue is ~400 µs).
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or not isinstance(exc, psycopg.Error | PoolTimeout):
            return
        if isinstance(
            exc,
            psycopg.errors.UndefinedTable
            | psycopg.errors.UndefinedFunction
            | psycopg.errors.UndefinedColumn
            | psycopg.errors.InvalidSchemaName,
        ):
            raise SchemaNotMigrated(str(exc).splitlines()[0]) from exc
        if isinstance(exc, psycopg.OperationalError | PoolTimeout):
            raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
        raise DatabaseError(str(exc)) from exc


def is_connection(value: object) -> bool:
    """Whether ``value`` is a caller's psycopg connection (sync or async)."""
    return isinstance(value, psycopg.Connection | psycopg.AsyncConnection)


def _owns_transaction(conn: Any) -> bool:
    """Whether a block on the caller's ``conn`` needs a transaction() of its own: in
    autocommit mode (its statements must go in together), or inside the caller's open
    transaction (a savepoint, so a failure undoes only the block). With no transaction open
    on a connection that is not autocommit, psycopg's transaction() would begin one and commit
    it at the end of the block, committing the caller's work early; the block's statements
    then simply open the caller's transaction, and the caller commits or rolls back."""
    return (
        bool(conn.autocommit) or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    )


@contextlib.contextmanager
def caller_transaction(conn: Any) -> Iterator[Any]:
    """The caller's connection, the block's statements in the caller's transaction."""
    with translate_errors(), conn.transaction() if _owns_transaction(conn) else _nothing():
        yield conn


@contextlib.asynccontextmanager
async def acaller_transaction(conn: Any) -> AsyncIterator[Any]:
    """:func:`caller_transaction` for an AsyncConnection."""
    with translate_errors():
        if _owns_transaction(conn):
            async with conn.transaction():
                yield conn
        else:
            yield conn


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def is_async_connection(value: object) -> bool:
    return isinstance(value, psycopg.AsyncConnection)


class Database:
    """The pool and the statements of one goodjob app."""

    # Whether pipeline() can be used: libpq's pipeline mode needs libpq 14 or newer, which
    # psycopg[binary] bundles but a system libpq under psycopg[c] or pure psycopg may predate.
    pipelines: bool = psycopg.Pipeline.is_supported()

    def __init__(self, settings: Settings, *, application_name: str = "goodjob") -> None:
        self.settings = settings
        self.schema = settings.schema
        self.application_name = application_name
        self._url: str | None = settings.database_url
        self._pool: ConnectionPool[PooledConnection] | None = None
        self._lock = threading.RLock()
        _databases.add(self)

    # -- connecting -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL; starts the embedded server when none is configured."""
        if self._url is None:
            with self._lock:
                if self._url is None:
                    server = embedded.ensure_running(self.settings.embedded_data_dir)
                    self._url = server.url()
        return self._url

    def _connect_kwargs(self, part: str) -> dict[str, Any]:
        threshold = self.settings.prepare_threshold
        return {
            "application_name": f"{self.application_name}:{part}",
            "connect_timeout": CONNECT_TIMEOUT,
            "prepare_threshold": None if threshold == -1 else threshold,
            **KEEPALIVES,
        }

    @property
    def listen_url(self) -> str | None:
        """Where LISTEN can work: ``notify_database_url``, else ``url`` unless that is a
        transaction-mode pooler (which lends each transaction any server connection, so a
        LISTEN would hear nothing): None then, and workers poll."""
        if self.settings.notify_database_url:
            return self.settings.notify_database_url
        return None if self.settings.database_pooler else self.url

    @property
    def pool(self) -> ConnectionPool[PooledConnection]:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    # One direct attempt first: an unreachable database then fails at once with
                    # libpq's own reason, instead of after POOL_TIMEOUT of silent pool retries.
                    psycopg.connect(self.url, **self._connect_kwargs("probe")).close()
                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.settings.database_pool_size,
                        kwargs={
                            "autocommit": True,
                            "row_factory": dict_row,
                            **self._connect_kwargs("pool"),
                        },
                        timeout=POOL_TIMEOUT,
                        open=False,
                        name="goodjob",
                        check=_check_if_idle,
                        configure=functools.partial(
                            _configure, session_settings=not self.settings.database_pooler
                        ),
                        connection_class=PooledConnection,
                    )
                    self._pool.open(wait=False)
        return self._pool

    def pool_stats(self) -> dict[str, int]:
        """The pool's size and connections in use (for the process record), as GoodJob shows.

        ``active`` counts connections handed out or being opened (the pool does not tell apart).
        """
        pool = self._pool
        if pool is None:
            return {"size": self.settings.database_pool_size, "active": 0, "waiting": 0}
        stats = pool.get_stats()
        return {
            "size": stats.get("pool_max", self.settings.database_pool_size),
            "active": stats.get("pool_size", 0) - stats.get("pool_available", 0),
            "waiting": stats.get("requests_waiting", 0),
        }

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def reset_after_fork(self) -> None:
        """Forget the parent's pool: its sockets belong to the parent process.

        Called in every forked child (see ``_after_fork_in_child``); the child opens a pool of its
        own on first use. The lock is replaced too: another thread may have held it at the fork.
        """
        if self._pool is not None:
            inherited.append(self._pool)
        self._pool = None
        self._lock = threading.RLock()

    def _checkout(self) -> PooledConnection:
        return self.pool.getconn()

    def _checkin(self, conn: PooledConnection, failed: bool = False) -> None:
        pool = self.pool
        if failed and conn.broken:
            # A server restart or a network cut kills every idle connection at once: check
            # them all now, so that this statement is the only one it fails.
            with contextlib.suppress(Exception):
                pool.check()
        conn.returned_at = time.monotonic()
        pool.putconn(conn)

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[PooledConnection]:
        conn = self._checkout()
        failed = False
        try:
            yield conn
        except BaseException:
            failed = True
            raise
        finally:
            self._checkin(conn, failed)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        """A pooled connection in autocommit mode."""
        with translate_errors(), self._pooled() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Row]]:
        """A pooled connection inside one transaction, committed on success."""
        with translate_errors(), self._pooled() as conn, conn.transaction():
            yield conn

    def dedicated(self, part: str, *, url: str | None = None) -> DedicatedConnection:
        """A connection of its own, outside the pool (LISTEN, session advisory locks), to
        ``url`` when given (the notifier's :attr:`listen_url`), else to :attr:`url`."""
        pooled = url is None and self.settings.database_pooler
        with translate_errors():
            conn = OwnConnection.connect(
                url or self.url,
                autocommit=True,
                row_factory=dict_row,
                **self._connect_kwargs(part),
            )
        _configure(conn, session_settings=not pooled)
        return DedicatedConnection(self, conn)

    # -- statements -------------------------------------------------------------------------

    def sql(self, name: str) -> str:
        """The text of statement ``name``, qualified with the schema and tagged."""
        return query(name, self.schema)

    def execute(self, name: str, params: Params = None, *, conn: Any = None) -> list[Row]:
        """Run statement ``name`` and return its rows; on ``conn`` (a caller's connection) or a
        pooled one."""
        return self._execute(self.sql(name), params, conn, fetch=True)

    def execute_text(self, text: str, params: Params = None, *, conn: Any = None) -> list[Row]:
        """Run a statement rendered from a named one (the claim variants of records/claims.py)
        and return its rows; on ``conn`` or a pooled connection."""
        return self._execute(text, params, conn, fetch=True)

    def run(self, name: str, params: Params = None, *, conn: Any = None) -> None:
        """Run statement ``name`` for its effect, without reading the rows it returns (on the
        enqueue path: building a row costs a few µs of each enqueue, issue 5)."""
        self._execute(self.sql(name), params, conn, fetch=False)

    def _execute(self, sql: str, params: Params, conn: Any, fetch: bool) -> list[Row]:
        with translate_errors():
            if conn is not None:
                cur = (
                    conn.cursor(row_factory=dict_row)
                    if isinstance(conn, OwnConnection)
                    else caller_cursor(conn)
                )
                return _run(cur, sql, params, fetch)
            # Checked out and in by hand rather than with _pooled(): this is every enqueue's
            # path, and each generator context manager costs microseconds (issue 5).
            pooled = self._checkout()
            failed = False
            try:
                cur = pooled.statements() if fetch else pooled.commands()
                return _run(cur, sql, params, fetch)
            except BaseException:
                failed = True
                raise
            finally:
                self._checkin(pooled, failed)

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Callable[[str, Params], None]]:
        """A function that sends statements, by name and parameters, for their effect: on one
        pooled connection, in one transaction committed when the block ends, each sent without
        waiting for the results of the ones before (libpq's pipeline mode).

        The client's work between statements, and after the last one, overlaps the server's; a
        statement's error is raised when the block ends at the latest, and rolls back all of them.
        """
        with translate_errors(), self._pooled() as pooled, pooled.pipeline(), pooled.transaction():
            cur = pooled.commands()

            def send(name: str, params: Params) -> None:
                cur.execute(self.sql(name), params)

            yield send

    async def aexecute(self, name: str, params: Params, conn: Any) -> list[Row]:
        """Run statement ``name`` on a caller's async connection."""
        sql = self.sql(name)
        with translate_errors():
            cur = caller_cursor(conn)
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    def now(self) -> dt.datetime:
        """The database's clock (goodjob compares times with it, never with this host's)."""
        now: dt.datetime = self.execute("jobs_now")[0]["now"]
        return now

    def fetchone(self, name: str, params: Params = None, **kwargs: Any) -> Row | None:
        rows = self.execute(name, params, **kwargs)
        return rows[0] if rows else None

    def execute_script(self, sql: str, conn: psycopg.Connection[Row]) -> None:
        """Run raw SQL text (migrations) on ``conn``."""
        with translate_errors():
            conn.execute(sql.encode())  # bytes: no parameter parsing of literal % signs


def _run(cur: psycopg.Cursor[Any], sql: str, params: Params, fetch: bool) -> list[Row]:
    cur.execute(sql, params)
    # The result's status says whether rows came back; ``cur.description`` would build the
    # column list first.
    result = cur.pgresult
    if not fetch or result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        return []
    return cur.fetchall()


class DedicatedConnection:
    """One connection of a part of the runtime (notifier, tracker), with its own lifetime."""

    def __init__(self, database: Database, conn: psycopg.Connection[Row]) -> None:
        self.database = database
        self.raw = conn

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def execute(self, name: str, params: Params = None) -> list[Row]:
        return self.database.execute(name, params, conn=self.raw)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block's statements in one transaction on this connection."""
        with translate_errors(), self.raw.transaction():
            yield

    def listen(self, channel: str = CHANNEL) -> None:
        with translate_errors():
            self.raw.execute(f'LISTEN "{channel}"')

    def notifies(self, timeout: float) -> list[str]:
        """Payloads received within ``timeout`` seconds (returns early on the first batch)."""
        with translate_errors():
            gen = self.raw.notifies(timeout=timeout, stop_after=1)
            payloads = [n.payload for n in gen]
            # Drain what already arrived without waiting again.
            payloads += [n.payload for n in self.raw.notifies(timeout=0)]
            return payloads

    def ping(self) -> bool:
        try:
            with translate_errors():
                self.raw.execute("SELECT 1")
            return True
        except DatabaseError:
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def _after_fork_in_child() -> None:
    for database in list(_databases):
        database.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
