"""Passwords: every connection to an embedded server authenticates (scram-sha-256) with a
random password kept 0600 in the data folder; folders made by older versions, which trusted
every local connection, are switched to it (issue 11)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from goodjob.embedded.binaries import pg
from goodjob.embedded.folders import write_private
from goodjob.embedded.server import PORT, Server
from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")


HBA_CONNECTION_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}


def pgpass(password: str) -> str:
    # token_urlsafe never makes the ":" or "\" that the pgpass format would need escaped.
    return f"*:*:*:postgres:{password}\n"


def require_password(server: Server, user: str | None) -> None:
    """Make a data folder from before passwords ask for one.

    Issue 11: older goodjob ran initdb with trust, so whoever reached the socket was the
    superuser. Such a folder (no password file) gets a password for postgres, set over the
    private socket while trust still lets goodjob in, then written to the password file; then
    pg_hba.conf asks every connection for it. Each step is repeated on the next start if a
    crash cut the upgrade short.
    """
    if not os.path.lexists(server.passfile):
        _set_password(server, user)
    if _refuse_trust(server.data_dir / "pg_hba.conf", user):
        # Only signals the server: it applies the new rules a moment later.
        pg(server.bin_dir, user, "pg_ctl", "reload", "-D", str(server.data_dir))


def _set_password(server: Server, user: str | None) -> None:
    """A new random password for postgres, set while the server still trusts the private socket,
    then kept in the password file."""
    logger.info("setting a password on embedded Postgres", extra={"data_dir": str(server.data_dir)})
    password = secrets.token_urlsafe(32)
    try:
        with psycopg.connect(
            host=str(server.socket_dir), port=PORT, user="postgres", dbname="postgres"
        ) as conn:
            # Hashed here: the password itself never reaches the server, nor its log.
            verifier = conn.pgconn.encrypt_password(
                password.encode(), b"postgres", b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(verifier.decode()))
            )
    except psycopg.Error as exc:
        raise EmbeddedPostgresError(
            f"cannot set a password on the embedded Postgres in {server.data_dir}: {exc}. If it"
            f" asks for one already, its password file {server.passfile} is missing: put the"
            " password back there (as *:*:*:postgres:PASSWORD, mode 0600)"
        ) from exc
    write_private(server.passfile, pgpass(password), user)


def _refuse_trust(hba_file: Path, user: str | None) -> bool:
    """Rewrite pg_hba.conf so that no line trusts a connection without a password; True when
    it changed. The new file replaces the old one whole (a rename), never half-written."""
    text = hba_file.read_text()
    rewritten = "".join(_without_trust(line) for line in text.splitlines(keepends=True))
    if rewritten == text:
        return False
    new_file = hba_file.with_name(f"{hba_file.name}.goodjob-new")
    with contextlib.suppress(FileNotFoundError):
        new_file.unlink()  # left by a crash; unlink removes a link itself, not its target
    write_private(new_file, rewritten, user)
    os.replace(new_file, hba_file)
    logger.info("embedded Postgres now asks for passwords", extra={"hba_file": str(hba_file)})
    return True


def _without_trust(line: str) -> str:
    """One pg_hba.conf line, with scram-sha-256 as its method where it was trust."""
    fields = line.split("#", 1)[0].split()
    # type, database, user, [address, [mask]], method, [options]: the method follows the three.
    if len(fields) < 4 or fields[0] not in HBA_CONNECTION_TYPES or "trust" not in fields[3:]:
        return line
    methods = ["scram-sha-256" if field == "trust" else field for field in fields[3:]]
    return "\t".join([*fields[:3], *methods]) + "\n"
