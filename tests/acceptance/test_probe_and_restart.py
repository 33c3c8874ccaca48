"""The probe endpoints in each state, and a worker living through a database restart."""

from __future__ import annotations

import shutil
import signal
import socket
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from goodjob import GoodJob, embedded
from tests.acceptance.conftest import Workers, worker_env
from tests.acceptance.conftest import client_app as make_client
from tests.conftest import ROOT
from tests.helpers import sql, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(port: int, path: str) -> int | None:
    """The HTTP status of ``path``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_probe_endpoints_while_starting_running_and_stopping(
    workers: Workers, client: GoodJob
) -> None:
    port = free_port()
    worker = workers.start("--probe-port", str(port))
    wait_until(lambda: probe(port, "/status") == 200, timeout=15, message="probe up")
    wait_until(lambda: probe(port, "/status/started") == 200, timeout=15)
    assert probe(port, "/status/connected") == 200
    assert probe(port, "/nope") == 404

    client.tasks["sleepy"].enqueue("probe", 2.0)
    wait_until(lambda: workers.marker("probe") == ["probe.1.started"], timeout=10)
    worker.send_signal(signal.SIGTERM)
    # Draining the running job: alive, but no longer a started worker.
    wait_until(lambda: probe(port, "/status/started") == 503, timeout=5)
    assert probe(port, "/status") == 200
    assert probe(port, "/status/connected") == 503
    assert worker.wait(15) == 0
    assert probe(port, "/status") is None


def test_supervisor_probe_reports_started_once_every_child_is(
    workers: Workers, database_url: str
) -> None:
    port = free_port()
    supervisor = workers.start("--processes", "2", "--probe-port", str(port))
    wait_until(lambda: probe(port, "/status/connected") == 200, timeout=20)
    assert probe(port, "/status/started") == 200
    assert len(sql(database_url, "SELECT id FROM goodjob_processes")) == 2
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0


def test_worker_survives_a_database_restart(tmp_path: Path) -> None:
    # Its own server: restarting the suite's shared one would break the other xdist workers.
    # Not under tmp_path: the server runs as a system user that must traverse every folder above
    # its data, and pytest keeps resetting its own base folder to mode 0700.
    data_dir = ROOT / ".goodjob" / f"restart-test-{uuid.uuid4().hex[:8]}"
    server = embedded.ensure_running(data_dir)
    url = server.url()
    workers = Workers(tmp_path, worker_env(tmp_path, url))
    port = free_port()
    apps: list[GoodJob] = []  # closed at the end, whatever happens: a left-open pool leaks threads

    def client_app(url: str) -> GoodJob:
        app = make_client(url)
        apps.append(app)
        return app

    try:
        setup = client_app(url)
        setup.migrate()
        setup.close()
        worker = workers.start("--probe-port", str(port), "--poll-interval", "30")
        wait_until(lambda: probe(port, "/status/connected") == 200, timeout=20)
        client = client_app(url)
        client.tasks["sleepy"].enqueue("across", 1.5)
        wait_until(lambda: workers.marker("across") == ["across.1.started"], timeout=10)
        client.close()

        embedded.stop(data_dir)
        wait_until(lambda: probe(port, "/status/connected") == 503, timeout=10)
        assert probe(port, "/status") == 200
        embedded.ensure_running(data_dir)
        wait_until(
            lambda: probe(port, "/status/connected") == 200,
            timeout=15,
            message="notifier reconnected",
        )

        client = client_app(url)
        client.tasks["mark"].enqueue("after")
        # Started long before the next poll (30 s): the NOTIFY was heard, LISTEN is back.
        wait_until(lambda: workers.marker("after") == ["after.1.started"], timeout=10)
        # The job that ran across the restart was recorded once the database was back.
        wait_until(
            lambda: (
                sql(url, "SELECT count(*) FROM goodjob_jobs WHERE finished_at IS NULL") == [(0,)]
            ),
            timeout=10,
        )
        assert workers.marker("across") == ["across.1.done", "across.1.started"]
        assert sql(url, "SELECT lock_type FROM goodjob_processes") == [("advisory",)]
        client.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0, workers.log(worker)
        assert sql(url, "SELECT count(*) FROM goodjob_processes") == [(0,)]
    finally:
        for app in apps:
            app.close()
        workers.kill_all()
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        # the lock file embedded keeps beside the data folder, or one is left per run
        (data_dir.parent / f".{data_dir.name}.lock").unlink(missing_ok=True)
