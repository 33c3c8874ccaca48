"""The folders of an embedded server, and who may enter them (issue 11).

Run as root, the server runs as ``goodjob-postgres``: it is let through the folders on the way to
its data only when they are root's own, and only by o+x; no owner or mode is ever changed through
a symbolic link, and only folders goodjob just made change owner. The socket sits in a folder only
the server's user may enter, found through the running server and checked before use."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from goodjob.embedded.server import MAX_SOCKET_DIR, SOCKET_DIR_PREFIX, SYSTEM_USER
from goodjob.errors import EmbeddedPostgresError

logger = logging.getLogger("goodjob.embedded")


def run_as() -> str | None:
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


def open_way_for(user: str, path: Path) -> None:
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


def private_dir(user: str | None, prefix: str) -> Path:
    """A new folder in /tmp, unguessably named, 0700, given to the server's user.

    Issue 11: never a folder that exists already (whoever made it could have filled it with
    links, and a chown of its contents would follow them): mkdtemp makes a new one, and only
    that folder itself changes owner.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if user is not None:
        os.chown(folder, *_server_ids(user), follow_symlinks=False)
    return folder


def write_private(path: Path, text: str, user: str | None) -> None:
    """Create ``path`` holding ``text``: a new file (never an existing one, never through a
    link: issue 11), mode 0600, the server's user's."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        if user is not None:
            os.fchown(fd, *_server_ids(user))
        handle.write(text)


@contextlib.contextmanager
def folder_lock(data_dir: Path) -> Iterator[None]:
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


def take_data_dir(user: str | None, data_dir: Path) -> None:
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


def new_socket_dir(user: str | None, data_dir: Path) -> Path:
    """Where a starting server puts its socket: the data folder (0700, the server's) when its
    path leaves room for the socket's name, else a new private folder in /tmp (issue 11: never
    a predictable one, which another user could make first)."""
    if len(str(data_dir)) <= MAX_SOCKET_DIR:
        return data_dir
    return private_dir(user, SOCKET_DIR_PREFIX)


def recorded_socket_dir(data_dir: Path) -> Path | None:
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
    recorded = recorded_socket_dir(data_dir)
    if recorded is None:
        raise EmbeddedPostgresError(f"the server on {data_dir} records no socket folder")
    return _checked_socket_dir(recorded, _server_ids(run_as())[0])


def remove_socket_dir(data_dir: Path, socket_dir: Path) -> None:
    """Remove a stopped server's own socket folder in /tmp, never the data folder, and only
    one that passes the checks for using it (issue 11): not a link, nor someone else's."""
    if socket_dir == data_dir or not socket_dir.name.startswith(SOCKET_DIR_PREFIX):
        return
    try:
        _checked_socket_dir(socket_dir, _server_ids(run_as())[0])
    except EmbeddedPostgresError:
        logger.warning("left %s in place: not a private socket folder of goodjob's", socket_dir)
        return
    shutil.rmtree(socket_dir, ignore_errors=True)
