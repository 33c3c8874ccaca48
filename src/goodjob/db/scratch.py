"""Scratch databases for tests (goodjob's pytest plugin): a migrated template, and a fresh copy
of it for each test, made beside the configured database on the same server.

Copying a template (``CREATE DATABASE ... TEMPLATE``) costs a few tens of milliseconds, far less
than migrating each test's database, and leaves nothing of one test in the next.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goodjob.config import Settings
from goodjob.db.database import Database, translate_errors
from goodjob.db.migrate import migrate

# The database an administrative connection opens to create and drop the others.
MAINTENANCE_DATABASE = "postgres"


def on_server(url: str, database: str) -> str:
    """``url`` with another database on the same server (a libpq connection string)."""
    return make_conninfo("", **{**conninfo_to_dict(url), "dbname": database})


def _run(url: str, statement: str) -> None:
    with (
        translate_errors(),
        psycopg.connect(on_server(url, MAINTENANCE_DATABASE), autocommit=True) as conn,
    ):
        conn.execute(statement.encode())


def create_template(url: str, prefix: str, schema: str = "public") -> str:
    """A new, migrated database named ``<prefix>_template`` on ``url``'s server (replacing one
    left by an earlier run); its name."""
    name = f"{prefix}_template"
    drop(url, name)
    _run(url, f'CREATE DATABASE "{name}"')
    db = Database(Settings.load(environ={}, database_url=on_server(url, name), schema=schema))
    try:
        migrate(db)
    finally:
        db.close()
    return name


def copy(url: str, template: str, prefix: str) -> str:
    """A new database copied from ``template``; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return on_server(url, name)


def drop(url: str, name: str) -> None:
    """Drop database ``name`` on ``url``'s server, ending its sessions first."""
    _run(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def name_of(url: str) -> str:
    """The database ``url`` names."""
    return str(conninfo_to_dict(url).get("dbname", ""))
