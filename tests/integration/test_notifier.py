"""The Notifier: routing by queue, reconnecting after its connection is killed, and the
polling-only mode for PgBouncer."""

from __future__ import annotations

import threading
import time
from typing import Any

from goodjob import GoodJob
from goodjob.records import processes
from goodjob.runtime.notifier import Notifier
from tests.helpers import sql, wait_until


def test_payloads_carry_queue_and_time(gj: GoodJob) -> None:
    heard: list[tuple[str | None, float | None]] = []

    @gj.task(queue="mail")
    def send() -> None:
        pass

    notifier = Notifier(
        gj.database, gj.tracker, lambda q, t: heard.append((q, t)), hold_advisory_lock=False
    )
    notifier.start()
    try:
        assert notifier.wait_connected(5)
        before = time.time()
        send.using(wait=60).enqueue()
        wait_until(lambda: heard, timeout=5)
        queue, at = heard[0]
        assert queue == "mail"
        assert at is not None
        assert 55 < at - before < 65
    finally:
        notifier.stop()


def test_wakes_only_the_pools_that_serve_the_queue(make_app: Any) -> None:
    gj: GoodJob = make_app(queues="mail:1;reports:1", poll_interval=30)
    threads: dict[str, str] = {}

    @gj.task(queue="mail")
    def send() -> None:
        threads["mail"] = threading.current_thread().name

    @gj.task(queue="reports")
    def report() -> None:
        threads["reports"] = threading.current_thread().name

    gj.start()
    try:
        send.enqueue()
        report.enqueue()
        wait_until(lambda: len(threads) == 2, timeout=5)
        assert threads == {"mail": "goodjob-worker-0-0", "reports": "goodjob-worker-1-0"}
    finally:
        gj.shutdown()


def test_reconnects_after_its_connection_is_terminated(make_app: Any, database_url: str) -> None:
    gj: GoodJob = make_app(poll_interval=30)
    ran: list[str] = []

    @gj.task
    def mark(name: str) -> None:
        ran.append(name)

    gj.start()
    try:
        capsule = gj._capsule
        assert capsule is not None
        assert capsule.notifier is not None
        killed = sql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'goodjob:notifier' AND datname = current_database()",
        )
        assert killed == [(True,)]
        wait_until(lambda: not capsule.connected, timeout=5, message="notifier down")
        wait_until(lambda: capsule.connected, timeout=10, message="notifier back")
        # The advisory lock came back with the new session.
        wait_until(lambda: processes.all_processes(gj.database)[0].advisory_locked, timeout=5)
        t0 = time.monotonic()
        mark.enqueue("after")
        wait_until(lambda: ran == ["after"], timeout=5)
        assert time.monotonic() - t0 < 0.5  # woken by NOTIFY again, not by the 30 s poll
    finally:
        gj.shutdown()


def test_polling_only_mode_holds_the_advisory_lock_on_its_own_connection(
    make_app: Any, database_url: str
) -> None:
    gj: GoodJob = make_app(enable_listen_notify=False, poll_interval=0.2)
    ran: list[int] = []

    @gj.task
    def mark(n: int) -> None:
        ran.append(n)

    gj.start()
    try:
        assert gj._capsule.notifier is None
        listeners = sql(
            database_url,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'goodjob:notifier' AND datname = current_database()",
        )
        assert listeners == [(0,)]
        record = processes.all_processes(gj.database)[0]
        assert record.lock_type == "advisory"
        assert record.advisory_locked
        mark.enqueue(1)
        wait_until(lambda: ran == [1], timeout=5)
    finally:
        gj.shutdown()
    assert processes.all_processes(gj.database) == []


def test_heartbeat_only_mode_without_advisory_lock(make_app: Any) -> None:
    gj: GoodJob = make_app(advisory_lock_heartbeat=False, poll_interval=30)
    ran: list[int] = []

    @gj.task
    def mark(n: int) -> None:
        ran.append(n)

    gj.start()
    try:
        record = processes.all_processes(gj.database)[0]
        assert record.lock_type is None
        assert record.alive
        mark.enqueue(1)
        wait_until(lambda: ran == [1], timeout=5)
    finally:
        gj.shutdown()
