"""Prometheus metrics (issue 19): a middleware that counts what this process does, and a
collector that also reports database-wide figures, cached between scrapes.

Turned on by the ``enable_metrics`` setting (it needs ``goodjob[prometheus]``): the app then
holds a :class:`PrometheusMetrics` as ``gj.metrics``, served on the probe server's ``/metrics``;
``prometheus_client.REGISTRY.register(gj.metrics)`` adds the same figures to an application's
own registry. Nothing here is imported, counted or queried while the setting is off.

Per process (from the middleware hooks): jobs enqueued, attempts finished by outcome, attempt
durations, claim and completion batch sizes. Database-wide (one query each, run on a scrape at
most every ``CACHE_SECONDS`` per process, so many workers scraped often still cost a few small
queries): unfinished jobs by queue and state, each queue's latency (how long its oldest due job
has waited), live processes, those listening (notifier health), and their busy and idle threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from goodjob.db import Database
from goodjob.middleware import Middleware
from goodjob.options import JobRequest
from goodjob.records.claims import ClaimedJob, Outcome

CACHE_SECONDS = 5.0  # database-wide figures are read at most this often per process
JOBS_CAP = 100_000  # unfinished jobs read per refresh at most (see metrics_jobs)
# Seconds, from a few milliseconds to four hours: jobs that run for hours are normal.
DURATION_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    *(120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, float("inf")),
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf"))
# An outcome's kind, as the label operators alert on.
OUTCOMES = {
    "succeeded": "succeeded",
    "retry": "retried",
    "discarded": "discarded",
    "release": "interrupted",
}


class PrometheusMetrics(Middleware, Collector):
    """Counts this process's jobs (as middleware) and reports them with the database's figures
    (as a Prometheus collector)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._cached_at = -CACHE_SECONDS
        # Not registered anywhere: collect() yields them, so the app decides where they go.
        self.enqueued = Counter(
            "goodjob_jobs_enqueued",
            "Jobs enqueued by this process",
            ["queue", "task"],
            registry=None,
        )
        self.finished = Counter(
            "goodjob_jobs_finished",
            "Attempts finished and recorded by this process, by outcome",
            ["task", "outcome"],
            registry=None,
        )
        self.duration = Histogram(
            "goodjob_job_duration_seconds",
            "How long attempts ran",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.claim_batch = Histogram(
            "goodjob_claim_batch_size",
            "Jobs per claim that found any",
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self.completion_batch = Histogram(
            "goodjob_completion_batch_size",
            "Outcomes written per completion",
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- middleware ---------------------------------------------------------------------

    def before_enqueue(self, requests: list[JobRequest]) -> list[JobRequest]:
        for request in requests:
            self.enqueued.labels(request.options.queue, request.task_name).inc()
        return requests

    def after_claim(self, jobs: Sequence[ClaimedJob]) -> None:
        self.claim_batch.observe(len(jobs))

    def after_record(self, outcomes: Sequence[Outcome]) -> None:
        self.completion_batch.observe(len(outcomes))
        for outcome in outcomes:
            task = outcome.job.task_name
            self.finished.labels(task, OUTCOMES.get(outcome.kind, outcome.kind)).inc()
            self.duration.labels(task).observe(outcome.duration)

    # -- collector ----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        for metric in (
            self.enqueued,
            self.finished,
            self.duration,
            self.claim_batch,
            self.completion_batch,
        ):
            yield from metric.collect()
        yield from self._database_figures()

    def exposition(self) -> bytes:
        """The text a Prometheus scrape reads (the probe server's ``/metrics``)."""
        return generate_latest(self.registry)

    def _database_figures(self) -> list[Metric]:
        with self._lock:  # one refresh at a time; concurrent scrapes share it
            if time.monotonic() - self._cached_at >= CACHE_SECONDS:
                self._cached = _read(self._database)
                self._cached_at = time.monotonic()
            return self._cached


def _read(database: Database) -> list[Metric]:
    jobs = GaugeMetricFamily(
        "goodjob_jobs", "Unfinished jobs by queue and state", labels=["queue", "state"]
    )
    latency = GaugeMetricFamily(
        "goodjob_queue_latency_seconds",
        "How long the oldest due job of each queue has waited",
        labels=["queue"],
    )
    for row in database.execute("metrics_jobs", {"cap": JOBS_CAP}):
        for state in ("queued", "scheduled", "running"):
            jobs.add_metric([row["queue_name"], state], row[state])
        latency.add_metric([row["queue_name"]], row["latency"])
    [row] = database.execute("metrics_processes")
    figures: list[Metric] = [jobs, latency]
    for name, text, value in (
        ("goodjob_processes", "Worker processes with a row in goodjob_processes", "processes"),
        ("goodjob_processes_listening", "Worker processes whose notifier listens", "listening"),
        ("goodjob_threads_busy", "Worker threads running a job, all processes", "busy_threads"),
        ("goodjob_threads_idle", "Worker threads free for a job, all processes", "idle_threads"),
    ):
        figures.append(GaugeMetricFamily(name, text, value=row[value]))
    return figures
