"""Connections: a small pool per process, dedicated connections, and one error translation.

Only this package imports psycopg. Every statement is named (see ``queries.sql``); callers pass
the name and parameters and get rows back as dicts. Jobs never hold a connection while they run,
so the pool stays small whatever the thread count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, cast

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
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


class _IdleCheck:
    """The pool's ``check`` callback: ping only connections that sat idle.

    The return time is stamped by ``Database._pooled`` as a connection goes back, not by a pool
    ``reset`` callback: with one, psycopg_pool hands every returned connection to a worker thread,
    and the next checkout can wait on that thread (issue 5: a thread switch per enqueue).
    """

    def __init__(self) -> None:
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def returned(self, conn: Any) -> None:
        self._returned[conn] = time.monotonic()

    def check(self, conn: Any) -> None:
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned >= CHECK_IDLE_SECONDS:
            ConnectionPool.check_connection(conn)


def json(value: Any) -> Jsonb:
    """Wrap an already-JSON-safe value for a jsonb parameter."""
    return Jsonb(value)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn psycopg's exceptions into goodjob's, once, here."""
    try:
        yield
    except (
        psycopg.errors.UndefinedTable,
        psycopg.errors.UndefinedFunction,
        psycopg.errors.UndefinedColumn,
        psycopg.errors.InvalidSchemaName,
    ) as exc:
        raise SchemaNotMigrated(str(exc).splitlines()[0]) from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(str(exc)) from exc


def is_connection(value: object) -> bool:
    """Whether ``value`` is a caller's psycopg connection (sync or async)."""
    return isinstance(value, psycopg.Connection | psycopg.AsyncConnection)


def is_async_connection(value: object) -> bool:
    return isinstance(value, psycopg.AsyncConnection)


class Database:
    """The pool and the statements of one goodjob app."""

    def __init__(self, settings: Settings, *, application_name: str = "goodjob") -> None:
        self.settings = settings
        self.schema = settings.schema
        self.application_name = application_name
        self._url: str | None = settings.database_url
        self._pool: ConnectionPool[Any] | None = None
        self._idle_check = _IdleCheck()
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
        return {
            "application_name": f"{self.application_name}:{part}",
            "connect_timeout": CONNECT_TIMEOUT,
            **KEEPALIVES,
        }

    @property
    def pool(self) -> ConnectionPool[Any]:
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
                        check=self._idle_check.check,
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

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection[Row]]:
        pool = self.pool
        with pool.connection() as conn:
            try:
                yield cast("psycopg.Connection[Row]", conn)
            except BaseException:
                if conn.broken:
                    # A server restart or a network cut kills every idle connection at once:
                    # check them all now, so that this statement is the only one it fails.
                    with contextlib.suppress(Exception):
                        pool.check()
                raise
            finally:
                self._idle_check.returned(conn)

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

    def dedicated(self, part: str) -> DedicatedConnection:
        """A connection of its own, outside the pool (LISTEN, session advisory locks)."""
        with translate_errors():
            conn = psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, **self._connect_kwargs(part)
            )
        return DedicatedConnection(self, conn)

    # -- statements -------------------------------------------------------------------------

    def sql(self, name: str, fragments: Mapping[str, str] | None = None) -> str:
        text = query(name, self.schema)
        for key, fragment in (fragments or {}).items():
            text = text.replace("{" + key + "}", fragment)
        return text

    def execute(
        self,
        name: str,
        params: Params = None,
        *,
        conn: Any = None,
        fragments: Mapping[str, str] | None = None,
        prepare: bool | None = None,
    ) -> list[Row]:
        """Run statement ``name``; on ``conn`` (a caller's connection) or a pooled one.

        ``prepare=False`` plans the statement afresh each time: for statements over arrays of
        varying length, whose generic (prepared) plan is costed for a handful of rows.
        """
        sql = self.sql(name, fragments)
        with translate_errors():
            if conn is not None:
                cur = conn.cursor(row_factory=dict_row)
                cur.execute(sql, params, prepare=prepare)
                return cur.fetchall() if cur.description else []
            with self._pooled() as pooled:
                pooled_cur = pooled.cursor(row_factory=dict_row)
                pooled_cur.execute(sql, params, prepare=prepare)
                return pooled_cur.fetchall() if pooled_cur.description else []

    async def aexecute(self, name: str, params: Params, conn: Any) -> list[Row]:
        """Run statement ``name`` on a caller's async connection."""
        sql = self.sql(name)
        with translate_errors():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    def fetchone(self, name: str, params: Params = None, **kwargs: Any) -> Row | None:
        rows = self.execute(name, params, **kwargs)
        return rows[0] if rows else None

    def execute_script(self, sql: str, conn: psycopg.Connection[Row]) -> None:
        """Run raw SQL text (migrations) on ``conn``."""
        with translate_errors():
            conn.execute(sql.encode())  # bytes: no parameter parsing of literal % signs


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
