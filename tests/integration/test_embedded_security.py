"""The embedded Postgres against another local user (issue 11).

What a second account on the machine (``nobody`` here) must not get: a connection to the
server (it used to get a superuser: a world-enterable socket folder and ``trust``
authentication), a chown redirected through a symlink it planted at the socket folder's once
predictable path, a folder of its opened up for the server, or a file clobbered through a
symlink at the lock file's path. Most of these need root: to act as ``nobody`` and to see
goodjob run the server as its own system user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from goodjob import EmbeddedPostgresError, embedded
from tests.helpers import wait_until
from tests.integration import test_embedded as shared

data_dir = shared.data_dir  # the fixture: a fresh folder under /tmp, its servers stopped after

NOBODY = "nobody"
root_only = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: to act as a second local user (runuser -u nobody) and to hand folders"
    " to other users; CI runs as root",
)


def server_uid() -> int:
    """The uid the server runs as: goodjob's system user under root, else ourselves."""
    return pwd.getpwnam(embedded.SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid()


def psql(
    socket_dir: Path, *, as_user: str | None = None, passfile: str = os.devnull
) -> subprocess.CompletedProcess[str]:
    """``select 1`` with the server's own psql, over the socket in ``socket_dir``, never
    prompting for a password; ``passfile`` is the only password it can find."""
    command = [
        str(embedded.find_bin_dir() / "psql"),
        *("-X", "-w", "-h", str(socket_dir), "-p", str(embedded.PORT)),
        *("-U", "postgres", "-d", "postgres", "-c", "select 1"),
    ]
    if as_user is not None:
        command = ["runuser", "-u", as_user, "--", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        command,
        env={**env, "PGPASSFILE": passfile},
        cwd="/",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def asked_for_a_password(attempt: subprocess.CompletedProcess[str]) -> bool:
    """Whether a psql attempt failed because the server wanted a password it did not have."""
    return attempt.returncode != 0 and "no password supplied" in attempt.stderr


def deep_folder(data_dir: Path) -> Path:
    """A data folder too deep for a socket path (107 bytes): its socket goes to /tmp."""
    deep = data_dir / ("d" * 60)
    assert len(str(deep)) > embedded.MAX_SOCKET_DIR
    return deep


def old_socket_dir(data_dir: Path) -> Path:
    """Where goodjob used to put the socket of a deep folder: a name anyone could compute."""
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"goodjob-pg-{digest}"


@pytest.fixture
def root_file() -> Iterator[Path]:
    """A root-only file (0600) in a folder of its own: what an attacker would aim a link at."""
    folder = Path(tempfile.mkdtemp(prefix="goodjob-target-"))
    target = folder / "secret"
    target.write_text("precious")
    target.chmod(0o600)
    yield target
    shutil.rmtree(folder)


@root_only
def test_another_local_user_cannot_connect(data_dir: Path) -> None:
    """Finding 4: the socket of a deep folder sat in a 0755 folder in /tmp, and initdb used
    trust, so ``nobody`` could connect as the superuser."""
    # The attempt below fails for want of access, not because nobody cannot run psql at all.
    version = [str(embedded.find_bin_dir() / "psql"), "--version"]
    assert subprocess.run(["runuser", "-u", NOBODY, "--", *version], check=False).returncode == 0
    server = embedded.ensure_running(deep_folder(data_dir))
    try:
        attempt = psql(server.socket_dir, as_user=NOBODY, passfile="/nonexistent")
        assert attempt.returncode != 0, attempt.stdout
    finally:
        embedded.stop(server.data_dir)


def test_a_connection_without_the_password_is_refused(data_dir: Path) -> None:
    """Finding 4: even a user who reaches the socket needs the password (scram-sha-256)."""
    server = embedded.ensure_running(data_dir)
    refused = psql(server.socket_dir)
    assert asked_for_a_password(refused), refused.stdout + refused.stderr
    # goodjob's own URL authenticates through a password file, without showing the password.
    url = server.url()
    password = (data_dir / embedded.PASSWORD_FILE).read_text().split(":")[-1].strip()
    assert password not in url
    assert "passfile=" in url
    with psycopg.connect(url) as conn:  # the database ensure_running made with createdb
        assert conn.execute("SELECT current_database()").fetchone() == ("goodjob",)
    assert psql(server.socket_dir, passfile=str(data_dir / embedded.PASSWORD_FILE)).returncode == 0


def test_the_password_file_is_private(data_dir: Path) -> None:
    embedded.ensure_running(data_dir)
    status = os.lstat(data_dir / embedded.PASSWORD_FILE)
    assert stat.S_ISREG(status.st_mode)
    assert stat.S_IMODE(status.st_mode) == 0o600  # libpq ignores a passfile others can read
    assert status.st_uid == server_uid()


def test_the_socket_folder_is_private_fresh_and_removed_on_stop(data_dir: Path) -> None:
    """Findings 4 and 5: a deep folder's socket folder is made fresh, unguessable, 0700 and the
    server's; goodjob removes it when it stops the server."""
    deep = deep_folder(data_dir)
    server = embedded.ensure_running(deep)
    socket_dir = server.socket_dir
    assert socket_dir.parent == Path(tempfile.gettempdir())
    assert socket_dir != old_socket_dir(deep)
    status = os.lstat(socket_dir)
    assert stat.S_ISDIR(status.st_mode)
    assert stat.S_IMODE(status.st_mode) == 0o700
    assert status.st_uid == server_uid()
    assert embedded.server_for(deep) == server  # found again from the running server
    assert embedded.stop(deep) is True
    assert not socket_dir.exists()


@root_only
def test_a_planted_symlink_does_not_redirect_a_chown(data_dir: Path, root_file: Path) -> None:
    """Finding 5: a nobody-owned folder at the old predictable socket path, holding a link to a
    root-only file, made ``goodjob db start`` (as root) hand that file to the server's user."""
    deep = deep_folder(data_dir)
    planted = old_socket_dir(deep)
    planted.mkdir(mode=0o755)
    try:
        os.chown(planted, pwd.getpwnam(NOBODY).pw_uid, pwd.getpwnam(NOBODY).pw_gid)
        (planted / "link").symlink_to(root_file)
        started = shared.goodjob_db("start", data_dir=deep)
        assert started.returncode == 0, started.stderr
        status = os.stat(root_file)
        assert (status.st_uid, status.st_gid) == (0, 0)
        assert stat.S_IMODE(status.st_mode) == 0o600
        assert root_file.read_text() == "precious"
        assert os.lstat(planted).st_uid == pwd.getpwnam(NOBODY).pw_uid  # not taken over
        assert f"host={planted}" not in started.stdout
        assert shared.goodjob_db("stop", data_dir=deep).returncode == 0
    finally:
        shutil.rmtree(planted)


@root_only
def test_an_empty_data_folder_of_another_user_is_refused(data_dir: Path) -> None:
    """Finding 5: goodjob takes over (chowns) only folders it made or the server's own."""
    data_dir.mkdir(parents=True)
    os.chown(data_dir, pwd.getpwnam(NOBODY).pw_uid, pwd.getpwnam(NOBODY).pw_gid)
    with pytest.raises(EmbeddedPostgresError, match="belongs to nobody"):
        embedded.ensure_running(data_dir)
    assert os.lstat(data_dir).st_uid == pwd.getpwnam(NOBODY).pw_uid
    assert list(data_dir.iterdir()) == []


@root_only
def test_a_folder_of_another_user_on_the_way_is_not_opened(data_dir: Path) -> None:
    """Finding 6: every folder up to / got o+x, whoever owned it."""
    theirs = data_dir.parent / "theirs"
    theirs.mkdir(mode=0o750)
    theirs.chmod(0o750)
    os.chown(theirs, pwd.getpwnam(NOBODY).pw_uid, pwd.getpwnam(NOBODY).pw_gid)
    with pytest.raises(EmbeddedPostgresError, match="cannot enter") as raised:
        embedded.ensure_running(theirs / "pg")
    assert str(theirs) in str(raised.value)
    assert stat.S_IMODE(os.lstat(theirs).st_mode) == 0o750
    assert not (theirs / "pg").exists()


@root_only
def test_a_folder_of_ours_on_the_way_gets_only_o_x_and_a_warning(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mine = data_dir.parent / "mine"
    mine.mkdir(mode=0o700)
    mine.chmod(0o700)
    with caplog.at_level(logging.WARNING, logger="goodjob.embedded"):
        server = embedded.ensure_running(mine / "pg")
    assert stat.S_IMODE(os.lstat(mine).st_mode) == 0o701
    assert any(str(mine) in record.getMessage() for record in caplog.records)
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_lock_file_is_not_followed_through_a_symlink(data_dir: Path, root_file: Path) -> None:
    """Finding 6: the lock file was opened with "w": through a planted link, it truncated the
    file the link named."""
    data_dir.parent.joinpath(f".{data_dir.name}.lock").symlink_to(root_file)
    with pytest.raises(EmbeddedPostgresError, match="lock"):
        embedded.ensure_running(data_dir)
    assert root_file.read_text() == "precious"
    assert stat.S_IMODE(os.stat(root_file).st_mode) == 0o600
    assert not data_dir.exists()


def test_an_existing_lock_file_is_not_truncated(data_dir: Path) -> None:
    lock = data_dir.parent / f".{data_dir.name}.lock"
    lock.write_text("kept")
    embedded.ensure_running(data_dir)
    assert lock.read_text() == "kept"


def test_a_folder_made_before_passwords_is_upgraded(data_dir: Path) -> None:
    """The old code made folders with trust and no password: starting one sets a password,
    writes the password file and makes the server ask for it."""
    user = embedded.SYSTEM_USER if os.geteuid() == 0 else None
    data_dir.mkdir(parents=True, mode=0o700)
    data_dir.chmod(0o700)
    if user is not None:
        data_dir.parent.chmod(0o701)  # the old code opened the way for the server's user
        os.chown(data_dir, server_uid(), pwd.getpwnam(user).pw_gid)
    bin_dir = embedded.find_bin_dir()
    embedded.binaries.pg(
        bin_dir, user, "initdb", "-D", str(data_dir), "-U", "postgres", "--auth=trust"
    )
    assert not (data_dir / embedded.PASSWORD_FILE).exists()

    server = embedded.ensure_running(data_dir)
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("goodjob",)
    status = os.lstat(data_dir / embedded.PASSWORD_FILE)
    assert stat.S_IMODE(status.st_mode) == 0o600
    rules = [line.split() for line in (data_dir / "pg_hba.conf").read_text().splitlines()]
    methods = {fields[-1] for fields in rules if fields and not fields[0].startswith("#")}
    assert methods == {"scram-sha-256"}
    # pg_ctl reload only signals the server: it applies the new rules a moment later.
    wait_until(
        lambda: asked_for_a_password(psql(server.socket_dir)),
        message="the server to ask for a password",
    )
    assert embedded.ensure_running(data_dir) == server  # upgraded once; later starts reuse it
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_socket_folder_is_checked_before_use(tmp_path: Path) -> None:
    """Other processes find the socket folder in postmaster.pid; they use it only when it is a
    real folder, the server's, and closed to everyone else."""
    folder = tmp_path / "data"
    socket_dir = tmp_path / "socket"
    link = tmp_path / "link"
    for made in (folder, socket_dir):
        made.mkdir(mode=0o700)
        os.chown(made, server_uid(), -1)
    link.symlink_to(socket_dir)

    def recording(path: Path) -> Path:
        (folder / "postmaster.pid").write_text(f"1\n{folder}\n0\n5432\n{path}\n\n")
        return folder

    assert embedded.socket_dir_of(recording(socket_dir)) == socket_dir
    with pytest.raises(EmbeddedPostgresError, match="not a folder"):
        embedded.socket_dir_of(recording(link))
    socket_dir.chmod(0o755)
    with pytest.raises(EmbeddedPostgresError, match="0o755"):
        embedded.socket_dir_of(recording(socket_dir))
    socket_dir.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(socket_dir, pwd.getpwnam(NOBODY).pw_uid, -1)
        with pytest.raises(EmbeddedPostgresError, match="belongs to nobody"):
            embedded.socket_dir_of(recording(socket_dir))
    (folder / "postmaster.pid").write_text("1\n")
    with pytest.raises(EmbeddedPostgresError, match="no socket folder"):
        embedded.socket_dir_of(folder)
