"""Connections goodjob did not open: the caller's, for transactional enqueue.

A caller hands goodjob what it holds: a psycopg connection, a SQLAlchemy ``Session``,
``scoped_session`` or ``Connection`` (or their asyncio forms) on the psycopg 3 driver, or, from
the Django backend, Django's own connection. :func:`unwrap` and :func:`aunwrap` find the psycopg
connection underneath, so the job's statements run in the caller's transaction: they commit or
roll back with it, and the NOTIFY that wakes workers is sent on commit.

SQLAlchemy is imported only when the caller passed one of its objects (it is then loaded
already): goodjob itself needs only psycopg.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from goodjob.errors import ConfigurationError

_WHAT = (
    "pass a psycopg Connection or AsyncConnection, or a SQLAlchemy Session, scoped_session or"
    " Connection (or their asyncio forms) on psycopg 3"
)


def unwrap(value: Any) -> Any:
    """The psycopg connection of ``value`` (None stays None); a ConfigurationError naming what
    is wrong when there is none. A SQLAlchemy session begins its transaction here, if it had
    not, so the job commits or rolls back with it."""
    if value is None or _is_psycopg(value):
        return value
    if _sqlalchemy_async(value):
        raise ConfigurationError(
            f"connection={value!r}: a SQLAlchemy asyncio object needs aenqueue()"
        )
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session, scoped_session

        session = value() if isinstance(value, scoped_session) else value
        connection = session.connection() if isinstance(session, Session) else session
        if isinstance(connection, Connection):
            if not connection.in_transaction():
                # As SQLAlchemy's own statements would (autobegin): its commit() and
                # rollback() then end the transaction the job's statements open.
                connection.begin()
            return _driver_connection(value, connection.connection.driver_connection)
    raise ConfigurationError(f"connection={value!r}: {_WHAT}")


async def aunwrap(value: Any) -> Any:
    """:func:`unwrap` for async code: SQLAlchemy's ``AsyncSession`` and ``AsyncConnection``
    give up their psycopg ``AsyncConnection`` only when awaited."""
    if _sqlalchemy_async(value):
        from sqlalchemy.ext.asyncio import AsyncSession

        connection = await value.connection() if isinstance(value, AsyncSession) else value
        if not connection.in_transaction():
            await connection.begin()  # see unwrap()
        raw = await connection.get_raw_connection()
        return _driver_connection(value, raw.driver_connection)
    return unwrap(value)


def _sqlalchemy_async(value: Any) -> bool:
    """Whether ``value`` is a SQLAlchemy AsyncSession or AsyncConnection. Their module is
    imported only when loaded already (importing it needs greenlet, which not every
    installation of SQLAlchemy has)."""
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        return False
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    return isinstance(value, AsyncSession | AsyncConnection)


def _is_psycopg(value: Any) -> bool:
    return isinstance(value, psycopg.Connection | psycopg.AsyncConnection)


def _driver_connection(given: Any, raw: Any) -> Any:
    if _is_psycopg(raw):
        return raw
    driver = type(raw).__module__.partition(".")[0]
    raise ConfigurationError(
        f"connection={given!r}: its engine uses the {driver} driver; goodjob's transactional"
        " enqueue needs psycopg 3: create the engine with a postgresql+psycopg:// URL"
    )


def conninfo(params: Mapping[str, Any]) -> str:
    """A libpq connection string from connection parameters, keeping those libpq knows (Django's
    ``get_connection_params()`` holds Python objects for psycopg too, such as its cursor class).
    """
    known = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}
    return make_conninfo(
        **{k: v for k, v in params.items() if k in known and v is not None and v != ""}
    )
