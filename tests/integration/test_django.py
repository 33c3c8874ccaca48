"""The Django Tasks backend, in a small real Django project (``examples/django_project``, the
README's example) on the suite's Postgres: enqueue inside ``atomic()`` (a rollback leaves no
job; a commit wakes a ``manage.py goodjob_worker``), results, priorities, signals, context."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from goodjob import ConfigurationError, embedded
from goodjob.testing import drain
from tests.conftest import _admin
from tests.helpers import EXAMPLES, sql, wait_until

PROJECT = EXAMPLES / "django_project"
LIBPQ_VARIABLES = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "passfile": "PGPASSFILE"}


@pytest.fixture(scope="module")
def project(pg_server: embedded.Server, template_db: str) -> Iterator[dict[str, str]]:
    """Django set up with the example's settings, on a migrated database of this module's;
    the environment a ``manage.py`` process needs."""
    name = f"gj_django_{uuid.uuid4().hex[:12]}"
    with _admin(pg_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    params = conninfo_to_dict(pg_server.url(name))
    env = {var: str(params[key]) for key, var in LIBPQ_VARIABLES.items()}
    env["PGDATABASE"] = name
    with pytest.MonkeyPatch.context() as patch:
        for var, value in env.items():
            patch.setenv(var, value)
        patch.setenv("DJANGO_SETTINGS_MODULE", "shop.settings")
        patch.syspath_prepend(str(PROJECT))
        import django

        django.setup()
        yield env
        from django.db import connections

        connections.close_all()
    with _admin(pg_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backend(project: dict[str, str]) -> Iterator[Any]:
    from django.db import connections

    from goodjob.contrib.django.tasks_api import task_backends

    backend = task_backends["default"]
    yield backend
    backend.goodjob.close()
    connections.close_all()


def url(project: dict[str, str]) -> str:
    return (
        f"host={project['PGHOST']} port={project['PGPORT']} user={project['PGUSER']}"
        f" passfile={project['PGPASSFILE']} dbname={project['PGDATABASE']}"
    )


@pytest.fixture
def worker(project: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOODJOB_", "DJANGO_"))}
    env.update(project, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "goodjob_worker", "--poll-interval", "60"],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_atomic_rollback_leaves_no_job_and_a_commit_wakes_manage_py_goodjob_worker(
    project: dict[str, str], backend: Any, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    from django.db import transaction
    from shop.tasks import send_welcome, signup

    from goodjob.contrib.django.tasks_api import TaskResultDoesNotExist, TaskResultStatus

    class Undone(Exception):
        pass

    def enqueue_then_fail() -> str:
        with transaction.atomic():
            lost = send_welcome.enqueue("lost@example.com")
            # Inside the transaction the job is there, on Django's own connection.
            assert send_welcome.get_result(lost.id).status == TaskResultStatus.READY
            lost_ids.append(lost.id)
            raise Undone

    lost_ids: list[str] = []
    with pytest.raises(Undone):
        enqueue_then_fail()
    [lost_id] = lost_ids
    with pytest.raises(TaskResultDoesNotExist):
        send_welcome.get_result(lost_id)
    assert sql(url(project), "SELECT count(*) FROM goodjob_jobs") == [(0,)]

    # The worker is up and listening (its process row) before the commit, and polls only every
    # minute: the commit's NOTIFY is what wakes it.
    wait_until(
        lambda: sql(url(project), "SELECT count(*) FROM goodjob_processes")[0][0] == 1,
        timeout=30,
        message=f"the worker to start: {(tmp_path / 'worker.log').read_text()}",
    )
    result_id = signup("ada@example.com")
    result = wait_until(
        lambda: (r := send_welcome.get_result(result_id)).is_finished and r,
        timeout=20,
        message="the job to finish",
    )
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "welcome sent to ada@example.com"
    assert result.args == ["ada@example.com"]
    assert len(result.worker_ids) == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert (result.task.priority, result.task.queue_name) == (10, "mail")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_results_errors_priorities_context_and_signals(backend: Any) -> None:
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from shop.tasks import send_welcome

    from goodjob.contrib.django.tasks_api import TaskResultStatus
    from tests.djangotasks import fails, in_async, with_context

    flags = ("supports_defer", "supports_async_task", "supports_get_result", "supports_priority")
    assert all(getattr(backend, flag) is True for flag in flags)
    heard: list[tuple[str, str, str]] = []

    def hear(signal_name: str) -> Any:
        def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
            heard.append((signal_name, task_result.task.name, task_result.status))

        return receiver

    receivers = {name: hear(name) for name in ("enqueued", "started", "finished")}
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    try:
        low = send_welcome.using(priority=-5).enqueue("low@example.com")
        high = send_welcome.using(priority=50, queue_name="default").enqueue("high@example.com")
        failing = fails.enqueue(3)
        context = with_context.enqueue()
        coroutine = asyncio.run(in_async.aenqueue(2))
        # Django's larger priority runs first: goodjob's order is the other way round.
        assert [backend.goodjob.job(r.id).priority for r in (low, high)] == [5, -50]
        ran = drain(backend.goodjob)
    finally:
        for name, receiver in receivers.items():
            {"enqueued": task_enqueued, "started": task_started, "finished": task_finished}[
                name
            ].disconnect(receiver)

    assert [job.id.hex for job in ran][:2] == [uuid.UUID(high.id).hex, uuid.UUID(failing.id).hex]
    assert uuid.UUID(low.id) == ran[-1].id  # -5: after everything at 0

    result = fails.get_result(failing.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "ValueError: no 3" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018

    assert with_context.get_result(context.id).return_value == [1, context.id]
    assert asyncio.run(in_async.aget_result(coroutine.id)).return_value == 4
    assert send_welcome.get_result(high.id).task.priority == 50

    assert ("enqueued", "fails", TaskResultStatus.READY) in heard
    assert ("started", "fails", TaskResultStatus.RUNNING) in heard
    assert ("finished", "fails", TaskResultStatus.FAILED) in heard
    assert ("finished", "send_welcome", TaskResultStatus.SUCCESSFUL) in heard
    assert len([h for h in heard if h[0] == "finished"]) == 5


def test_run_after_is_a_scheduled_job_and_time_travel_runs_it(backend: Any) -> None:
    from django.utils import timezone
    from shop.tasks import send_welcome

    from goodjob.contrib.django.tasks_api import TaskResultStatus

    tomorrow = timezone.now() + dt.timedelta(days=1)
    result = send_welcome.using(run_after=tomorrow).enqueue("later@example.com")
    assert backend.goodjob.job(result.id).status == "scheduled"
    assert drain(backend.goodjob) == []
    [job] = drain(backend.goodjob, now=dt.timedelta(days=1, minutes=1))
    assert send_welcome.get_result(result.id).status == TaskResultStatus.SUCCESSFUL
    assert job.result == "welcome sent to later@example.com"


def test_management_commands_and_bad_configuration(
    backend: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import CommandError, call_command

    from goodjob.contrib.django import GoodJobBackend

    call_command("goodjob_migrate")
    assert "up to date" in capsys.readouterr().out
    with pytest.raises(ConfigurationError, match="database_url"):
        GoodJobBackend("other", {"OPTIONS": {"database_url": "postgresql://elsewhere"}})
    with pytest.raises(CommandError, match="exited with status 2"):
        call_command("goodjob_worker", "--no-such-option")
    assert "goodjob_worker --help" in capsys.readouterr().err


def test_a_database_other_than_postgres_with_psycopg_3_is_refused(backend: Any) -> None:
    from django.db import connections

    from goodjob.contrib.django import GoodJobBackend
    from tests.djangotasks import fails

    connections.settings["legacy"] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
    }
    try:
        other = GoodJobBackend("legacy_tasks", {"OPTIONS": {"database": "legacy"}})
        with pytest.raises(ConfigurationError, match=r"'legacy'.*postgresql with psycopg 3"):
            other.enqueue(fails, (1,), {})
        other.goodjob.close()
    finally:
        connections["legacy"].close()
        del connections.settings["legacy"]


def test_inline_mode_runs_the_job_at_commit(backend: Any) -> None:
    from django.db import transaction
    from shop.tasks import send_welcome

    from goodjob.contrib.django import GoodJobBackend

    inline = GoodJobBackend(
        "default", {"QUEUES": ["mail"], "OPTIONS": {"execution_mode": "inline"}}
    )
    try:
        with transaction.atomic():
            result = inline.enqueue(send_welcome, ("inline@example.com",), {})
            assert inline.get_result(result.id).is_finished is False  # waits for the commit
        assert inline.get_result(result.id).return_value == "welcome sent to inline@example.com"
    finally:
        inline.goodjob.close()


def test_drain_inside_atomic_keeps_the_transaction(backend: Any) -> None:
    from django.db import transaction
    from shop.tasks import send_welcome

    committed = send_welcome.enqueue("committed@example.com")
    with transaction.atomic():
        held = send_welcome.enqueue("held@example.com")
        # The drain runs the committed job here, in this thread: Django's transaction survives
        # it (no connection closed under it), and its own job is not visible to goodjob yet.
        [job] = drain(backend.goodjob)
        assert job.id == uuid.UUID(committed.id)
        assert send_welcome.get_result(held.id).is_finished is False
    [job] = drain(backend.goodjob)
    assert job.result == "welcome sent to held@example.com"
