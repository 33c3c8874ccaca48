"""A real PgBouncer in transaction mode in front of the suite's Postgres (issue 19).

Debian's ``pgbouncer`` package (``.ci/run`` installs it). The suite's Postgres listens on a Unix
socket only, in a folder only its user may enter, and asks for a scram password: PgBouncer runs
as that user (it refuses to run as root), reaches the socket folder, and logs in with the
password from the server's password file, which its ``auth_file`` also holds for its clients.
It listens on a free TCP port of 127.0.0.1; each test gets its own, stopped after the test so
no server connection outlives the test's database.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import urllib.parse

from goodjob import embedded
from goodjob.embedded.folders import private_dir, run_as, write_private
from goodjob.embedded.server import PORT
from tests.helpers import wait_until

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One PgBouncer process in transaction mode; :meth:`url` names a database through it."""

    def __init__(self, server: embedded.Server) -> None:
        user = run_as()
        self.password = server.passfile.read_text().strip().rsplit(":", 1)[1]
        self.port = _free_port()
        self.folder = private_dir(user, "goodjob-pgbouncer-")
        config = self.folder / "pgbouncer.ini"
        write_private(self.folder / "users.txt", f'"postgres" "{self.password}"\n', user)
        write_private(
            config,
            "\n".join(
                [
                    "[databases]",
                    # Any database name, on the suite's server, as the client's user.
                    f"* = host={server.socket_dir} port={PORT}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "pool_mode = transaction",
                    "auth_type = scram-sha-256",
                    f"auth_file = {self.folder / 'users.txt'}",
                    "admin_users = postgres",
                    "max_client_conn = 500",
                    "default_pool_size = 20",
                    "stats_period = 1",  # SHOW STATS is refreshed this often (seconds)
                    f"logfile = {self.folder / 'pgbouncer.log'}",
                    "",
                ]
            ),
            user,
        )
        command = [BINARY, *(["-u", user] if user else []), str(config)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._accepting, timeout=10, message="pgbouncer listening")

    def _accepting(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def url(self, database: str) -> str:
        password = urllib.parse.quote(self.password, safe="")
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def stats(self, database: str) -> dict[str, int]:
        """PgBouncer's own counters for ``database``."""
        return self.all_stats().get(database, {})

    def all_stats(self) -> dict[str, dict[str, int]]:
        """PgBouncer's own counters by database (SHOW STATS on its admin console)."""
        import psycopg

        # The admin console speaks the simple query protocol only: a client-side cursor.
        with psycopg.connect(self.url("pgbouncer"), autocommit=True) as conn:
            cur = psycopg.ClientCursor(conn)
            cur.execute("SHOW STATS")
            names = [c.name for c in cur.description or ()]
            records = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return {
            r["database"]: {k: int(v) for k, v in r.items() if k != "database"} for r in records
        }

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        # SIGINT waits for clients; SIGTERM closes every connection at once, server ones too.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def database_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


__all__ = ["PgBouncer", "database_of"]
