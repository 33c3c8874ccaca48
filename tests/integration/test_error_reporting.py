"""``on_thread_error`` (issue 19): the one place every job error and every error of goodjob's own
threads is reported, with the job when there is one."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from goodjob import GoodJob
from goodjob.records.claims import ClaimedJob
from tests.helpers import sql, wait_until


def test_on_thread_error_hears_a_failing_job_with_its_job(make_app: Any) -> None:
    heard: list[tuple[BaseException, ClaimedJob | None]] = []
    gj: GoodJob = make_app(on_thread_error=lambda error, job: heard.append((error, job)))

    @gj.task(name="fails")
    def fails() -> None:
        raise KeyError("missing")

    handle = fails.enqueue()
    gj.perform_inline()
    [(error, job)] = heard
    assert isinstance(error, KeyError)
    assert job is not None
    assert (job.id, job.task_name) == (handle.id, "fails")


def test_on_thread_error_hears_a_notifier_failure_without_a_job(
    make_app: Any, database_url: str
) -> None:
    heard: list[tuple[BaseException, ClaimedJob | None]] = []
    lock = threading.Lock()

    def report(error: BaseException, job: ClaimedJob | None) -> None:
        with lock:
            heard.append((error, job))

    gj: GoodJob = make_app(on_thread_error=report)
    gj.start()
    try:
        capsule = gj._capsule
        assert capsule is not None
        wait_until(lambda: capsule.connected, timeout=5, message="listening")
        killed = sql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'goodjob:notifier' AND datname = current_database()",
        )
        assert killed == [(True,)]
        wait_until(lambda: heard, timeout=10, message="the notifier's error reported")
        error, job = heard[0]
        assert job is None
        assert "notifier" in repr(error).lower() or "terminat" in str(error).lower(), error
        wait_until(lambda: capsule.connected, timeout=10, message="notifier back")
    finally:
        gj.shutdown()


def test_on_thread_error_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_thread_error=42 is not callable"):
        GoodJob("postgresql://unused/none", on_thread_error=42)  # type: ignore[arg-type]
