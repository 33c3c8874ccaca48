"""Prometheus metrics (issue 19): ``/metrics`` on the probe server while a worker drains, and
the collector in an application's own registry."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from goodjob import GoodJob, metrics
from goodjob.probe import ProbeServer
from tests.helpers import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def fresh_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every scrape reads the database, so the test sees figures move without waiting them out.
    monkeypatch.setattr(metrics, "CACHE_SECONDS", 0.0)


@pytest.fixture
def served(make_app: Any, fresh_figures: None) -> Iterator[tuple[GoodJob, str]]:
    gj: GoodJob = make_app(enable_metrics=True, max_threads=2, queues="mail:2")
    assert gj.metrics is not None
    server = ProbeServer(
        0,
        started=lambda: True,
        connected=lambda: True,
        host="127.0.0.1",
        metrics=gj.metrics.exposition,
    )
    server.start()
    yield gj, f"http://127.0.0.1:{server.port}/metrics"
    server.stop()


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return _parse(response.read().decode())


def test_metrics_move_while_a_worker_drains(served: tuple[GoodJob, str]) -> None:
    gj, url = served
    gate = threading.Event()

    @gj.task(name="send", queue="mail")
    def send(n: int) -> None:
        assert gate.wait(10)

    @gj.task(name="bounce", queue="mail", discard_on=ValueError)
    def bounce() -> None:
        raise ValueError("no such mailbox")

    gj.enqueue_all([send.prepare(n) for n in range(20)])
    bounce.enqueue()
    gj.start()
    try:
        # Two threads busy on gated jobs, the rest waiting: the queue's figures show it.
        before = wait_until(
            lambda: (
                (s := _scrape(url))
                and _value(s, "goodjob_jobs", queue="mail", state="running") == 2
                and _value(s, "goodjob_threads_busy") == 2
                and s
            ),
            timeout=10,
            message="two running jobs and two busy threads",
        )
        assert _value(before, "goodjob_jobs", queue="mail", state="queued") == 19
        assert _value(before, "goodjob_queue_latency_seconds", queue="mail") > 0
        assert _value(before, "goodjob_jobs_enqueued_total", queue="mail", task="send") == 20
        assert _value(before, "goodjob_jobs_finished_total", task="send", outcome="succeeded") == 0
        assert _value(before, "goodjob_processes") == 1
        assert _value(before, "goodjob_processes_listening") == 1
        gate.set()
        after = wait_until(
            lambda: (
                (s := _scrape(url))
                and _value(s, "goodjob_jobs_finished_total", task="send", outcome="succeeded") == 20
                # the bounce may run last: its record too, so the figures below are final
                and _value(s, "goodjob_jobs_finished_total", task="bounce", outcome="discarded")
                == 1
                and s
            ),
            timeout=15,
            message="the drain counted",
        )
    finally:
        gate.set()
        gj.shutdown()
    assert _value(after, "goodjob_jobs_finished_total", task="bounce", outcome="discarded") == 1
    assert _value(after, "goodjob_jobs", queue="mail", state="queued") == 0
    assert _value(after, "goodjob_job_duration_seconds_count", task="send") == 20
    assert _value(after, "goodjob_job_duration_seconds_bucket", task="send", le="14400.0") == 20
    assert _value(after, "goodjob_claim_batch_size_sum") == 21  # every job claimed once
    assert _value(after, "goodjob_completion_batch_size_sum") == 21


def test_the_collector_registers_in_an_applications_registry(
    make_app: Any, fresh_figures: None
) -> None:
    gj: GoodJob = make_app(enable_metrics=True)
    assert gj.metrics is not None

    @gj.task(name="noop")
    def noop() -> None:
        pass

    noop.enqueue()
    registry = CollectorRegistry()
    registry.register(gj.metrics)
    samples = _parse(generate_latest(registry).decode())
    assert _value(samples, "goodjob_jobs_enqueued_total", queue="default", task="noop") == 1
    assert _value(samples, "goodjob_jobs", queue="default", state="queued") == 1


def test_without_the_setting_there_are_no_metrics(gj: GoodJob) -> None:
    assert gj.metrics is None
    assert all(type(m).__name__ != "PrometheusMetrics" for m in gj.middleware)
