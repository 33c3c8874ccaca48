"""Cron runs in the database: each once, entries toggled for all, run by hand (issue 14).

The real worker processes are in ``tests/acceptance/test_cron.py``; these drive the parts.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from goodjob import ConfigurationError, GoodJob
from goodjob.records import cron_runs
from tests.helpers import sql, wait_until

EVERY_SECOND = {"cron": "* * * * * *", "task": "tick", "set": {"queue": "cron"}}


def _app(make_app: Any, **entries: dict[str, Any]) -> GoodJob:
    gj: GoodJob = make_app(
        cron=entries or {"tick": EVERY_SECOND}, enable_cron=True, poll_interval=30
    )

    @gj.task(name="tick")
    def tick(*args: Any, **kwargs: Any) -> None: ...

    return gj


def test_a_run_is_enqueued_once_even_after_its_job_was_deleted(
    make_app: Any, database_url: str
) -> None:
    gj = _app(make_app)
    [entry] = gj.cron
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    request = gj.cron_request(entry)
    first = cron_runs.enqueue_run(gj.database, "tick", at, request, enabled_by_default=True)
    again = cron_runs.enqueue_run(gj.database, "tick", at, request, enabled_by_default=True)
    assert first is not None
    assert again is None
    job = gj.job(first)
    assert (job.task_name, job.queue_name, job.scheduled_at) == ("tick", "cron", at)
    sql(database_url, "DELETE FROM goodjob_jobs")  # finished and cleaned up, say
    late = cron_runs.enqueue_run(gj.database, "tick", at, request, enabled_by_default=True)
    earlier = cron_runs.enqueue_run(
        gj.database, "tick", at - dt.timedelta(seconds=1), request, enabled_by_default=True
    )
    assert (late, earlier) == (None, None)  # never twice, never going back


def test_enable_disable_list_and_run_by_hand(make_app: Any) -> None:
    gj = _app(
        make_app,
        on={**EVERY_SECOND, "description": "every second"},
        off={**EVERY_SECOND, "enabled_by_default": False, "args": [7]},
    )
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def run(key: str, when: dt.datetime) -> Any:
        entry = gj._cron_entry(key)
        return cron_runs.enqueue_run(
            gj.database,
            key,
            when,
            gj.cron_request(entry),
            enabled_by_default=entry.enabled_by_default,
        )

    assert run("off", at) is None  # disabled by default
    listed = {e.key: e for e in gj.cron_entries()}
    assert (listed["on"].enabled, listed["off"].enabled) == (True, False)
    assert listed["on"].description == "every second"
    assert listed["on"].next_at is not None
    gj.enable_cron_entry("off")
    assert run("off", at) is not None
    gj.disable_cron_entry("on")
    assert run("on", at) is None
    assert {e.key: e.enabled for e in gj.cron_entries()} == {"on": False, "off": True}
    assert {e.key: e.last_at for e in gj.cron_entries()} == {"on": None, "off": at}
    manual = gj.run_cron_entry("off")
    assert (manual.task_name, manual.args, manual.status) == ("tick", [7], "queued")
    with pytest.raises(ConfigurationError, match="no cron entry 'nope'; the entries are: on, off"):
        gj.enable_cron_entry("nope")


def test_three_processes_enqueue_each_second_once(make_app: Any, database_url: str) -> None:
    apps = [_app(make_app) for _ in range(3)]
    for app in apps:
        app.start()
    try:
        wait_until(
            lambda: sql(database_url, "SELECT count(*) FROM goodjob_jobs")[0][0] >= 4,
            timeout=15,
            message="four runs",
        )
    finally:
        for app in apps:
            app.shutdown()
    rows = sql(database_url, "SELECT cron_at FROM goodjob_jobs ORDER BY cron_at")
    ats = [row[0] for row in rows]
    assert len(ats) == len(set(ats))
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(ats))


def test_a_worker_with_an_entry_whose_task_is_unknown_does_not_start(make_app: Any) -> None:
    gj: GoodJob = make_app(cron={"orphan": {"cron": "@daily", "task": "nowhere"}}, enable_cron=True)
    with pytest.raises(ConfigurationError, match="cron entry 'orphan': no task named 'nowhere'"):
        gj.start()
    assert gj.tracker.locks == 0
