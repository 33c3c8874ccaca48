"""Cron and pauses with real worker processes (issue 14).

Each run exists once however many workers enqueue it, kill -9 and restarts included; the runs'
jobs note in a log which job ran in which process, and the database says which run each was.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from goodjob import GoodJob
from tests.acceptance.conftest import Workers
from tests.helpers import sql, wait_until

SECOND = dt.timedelta(seconds=1)


def cron_env(**entries: dict[str, Any]) -> dict[str, str]:
    return {"GJ_CRON": json.dumps(entries)}


def every_second(name: str, **more: Any) -> dict[str, Any]:
    return {"cron": "* * * * * *", "task": "tick", "args": [name], **more}


def runs(url: str, key: str) -> list[dt.datetime]:
    """The scheduled runs enqueued for ``key``, in order."""
    rows = sql(
        url,
        "SELECT cron_at FROM goodjob_jobs WHERE cron_key = %s AND cron_at IS NOT NULL"
        " ORDER BY cron_at",
        (key,),
    )
    return [row[0] for row in rows]


def ran(out: Path, name: str) -> list[str]:
    """The ids of the jobs that ran, one line each, as the task wrote them."""
    log = out / f"{name}.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def registered(url: str) -> set[int]:
    return {row[0] for row in sql(url, "SELECT (state->>'pid')::int FROM goodjob_processes")}


def assert_each_run_once(url: str, out: Path, key: str) -> list[dt.datetime]:
    ats = runs(url, key)
    assert ats, "no run was enqueued"
    assert len(ats) == len(set(ats))
    assert [b - a for a, b in itertools.pairwise(ats)] == [SECOND] * (len(ats) - 1)
    done = sql(
        url,
        "SELECT id::text FROM goodjob_jobs WHERE cron_key = %s AND finished_at IS NOT NULL",
        (key,),
    )
    lines = ran(out, key)
    assert sorted(lines) == sorted(row[0] for row in done)  # each finished run ran once
    return ats


def start_cron_workers(
    workers: Workers, url: str, count: int, env: dict[str, str], *args: str
) -> list[subprocess.Popen[bytes]]:
    procs = [
        workers.start("--enable-cron", "--poll-interval", "30", *args, env=env, app="gjcron:gj")
        for _ in range(count)
    ]
    wait_until(lambda: {p.pid for p in procs} <= registered(url), timeout=20, message="the workers")
    return procs


def test_three_workers_enqueue_each_seconds_run_exactly_once(
    workers: Workers, database_url: str
) -> None:
    env = cron_env(tick=every_second("tick"))
    procs = start_cron_workers(workers, database_url, 3, env)
    wait_until(lambda: len(runs(database_url, "tick")) >= 10, timeout=30, message="10 runs")
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(20) == 0, workers.log(proc)
    ats = assert_each_run_once(database_url, workers.out, "tick")
    assert len(ats) >= 10


def test_killing_the_worker_that_enqueued_a_run_loses_and_doubles_nothing(
    workers: Workers, database_url: str
) -> None:
    env = cron_env(tick=every_second("tick"))
    procs = start_cron_workers(workers, database_url, 2, env)
    wait_until(lambda: len(runs(database_url, "tick")) >= 3, timeout=30)
    last = runs(database_url, "tick")[-1].isoformat()
    [victim] = [p for p in procs if f"enqueued cron run tick at {last}" in workers.log(p)]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = runs(database_url, "tick")[-1]
    wait_until(
        lambda: runs(database_url, "tick")[-1] >= killed_at + 4 * SECOND,
        timeout=30,
        message="four more runs",
    )
    [survivor] = [p for p in procs if p is not victim]
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(20) == 0
    ats = runs(database_url, "tick")
    assert len(ats) == len(set(ats))
    assert [b - a for a, b in itertools.pairwise(ats)] == [SECOND] * (len(ats) - 1)


def test_a_disabled_entry_enqueues_nothing_until_enabled(
    workers: Workers, database_url: str
) -> None:
    env = cron_env(quiet=every_second("quiet", enabled_by_default=False))
    [proc] = start_cron_workers(workers, database_url, 1, env)
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started > 2.5, message="two and a half seconds")
    assert runs(database_url, "quiet") == []
    enabled = workers.run("cron", "enable", "quiet", "--app", "gjcron:gj", env=env)
    assert enabled.returncode == 0, enabled.stderr
    wait_until(lambda: len(runs(database_url, "quiet")) >= 2, timeout=10, message="runs")
    listed = workers.run("cron", "list", "--app", "gjcron:gj", env=env)
    assert "quiet" in listed.stdout
    assert "yes" in listed.stdout
    disabled = workers.run("cron", "disable", "quiet", "--app", "gjcron:gj", env=env)
    assert disabled.returncode == 0
    count = len(runs(database_url, "quiet"))
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started > 2.5, message="two and a half seconds")
    assert len(runs(database_url, "quiet")) <= count + 1  # at most one in flight
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.mark.parametrize(("period", "caught_up"), [(60, True), (1, False)])
def test_runs_missed_while_every_worker_was_down_are_caught_up_within_the_period(
    workers: Workers, database_url: str, period: int, caught_up: bool
) -> None:
    env = cron_env(tick=every_second("tick"))
    flags = ("--cron-graceful-restart-period", str(period))
    [first] = start_cron_workers(workers, database_url, 1, env, *flags)
    wait_until(lambda: len(runs(database_url, "tick")) >= 2, timeout=30)
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    stopped = runs(database_url, "tick")[-1]
    down = time.monotonic()
    wait_until(lambda: time.monotonic() - down > 4, message="four seconds with no worker")
    [second] = start_cron_workers(workers, database_url, 1, env, *flags)
    wait_until(lambda: runs(database_url, "tick")[-1] > stopped + 6 * SECOND, timeout=30)
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    ats = runs(database_url, "tick")
    assert len(ats) == len(set(ats))
    gaps = [b - a for a, b in itertools.pairwise(ats)]
    if caught_up:
        logs = "\n".join(workers.log(p) for p in (first, second))
        assert gaps == [SECOND] * len(gaps), f"every missed run was enqueued once: {ats} {logs}"
    else:
        # Only the runs of the last second before the restart were caught up; older ones not.
        assert max(gaps) >= 3 * SECOND


def test_a_bad_entry_stops_startup_naming_its_key(workers: Workers) -> None:
    env = cron_env(broken={"cron": "61 * * * *", "task": "tick"})
    result = workers.run("start", "--app", "gjcron:gj", "--enable-cron", env=env)
    assert result.returncode == 1
    assert "cron entry 'broken'" in result.stderr
    assert "not a valid cron expression" in result.stderr
    env = cron_env(orphan={"cron": "@daily", "task": "nowhere"})
    result = workers.run("start", "--app", "gjcron:gj", "--enable-cron", env=env)
    assert result.returncode == 1
    assert "cron entry 'orphan': no task named 'nowhere'" in result.stderr


@pytest.mark.parametrize(
    ("target", "held"),
    [
        (("--queue", "held"), {"queue": "held"}),
        (("--task", "sleepy"), {}),
        (("--label", "hold"), {"labels": ["hold"]}),
    ],
    ids=["queue", "task", "label"],
)
def test_a_paused_queue_task_or_label_waits_and_starts_within_a_second_of_unpausing(
    workers: Workers,
    client: GoodJob,
    database_url: str,
    target: tuple[str, str],
    held: dict[str, Any],
) -> None:
    worker = workers.start("--poll-interval", "30")
    wait_until(lambda: worker.pid in registered(database_url), timeout=20)
    paused = workers.run("pause", *target)
    assert paused.returncode == 0, paused.stderr
    task = "sleepy" if target[0] == "--task" else "mark"
    args: tuple[Any, ...] = ("held", 0.0) if task == "sleepy" else ("held",)
    waiting = client.tasks[task].using(**held).enqueue(*args)
    client.tasks["mark"].enqueue("free")
    wait_until(lambda: workers.marker("free"), timeout=10, message="the other job")
    assert client.job(waiting.id).status == "queued"
    listed = workers.run("pause", "--list")
    assert f"{target[0][2:]} {target[1]}" in listed.stdout
    assert workers.run("unpause", *target).returncode == 0
    # Measured from the command's return (the unpause committed by then), not from its launch:
    # a CLI process starting on a loaded machine can take more than a second by itself.
    unpaused_at = time.time()
    wait_until(lambda: workers.marker("held"), timeout=10, message="the paused job")
    _, started = workers.marker_data("held.1.started")
    assert started - unpaused_at < 1.0
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
