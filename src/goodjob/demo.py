"""``goodjob demo``: a realistic mixed workload, run by real workers, watched live.

This module is also the demo's app, ``goodjob.demo:gj``, which the worker processes load. The
workload has several queues and priorities, an async slow queue, jobs scheduled a few seconds
ahead, flaky jobs that succeed on retry and jobs that fail for good. Jobs of one run carry a
label, so earlier runs on the same database do not count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from goodjob.app import GoodJob
from goodjob.context import current_job
from goodjob.options import JobRequest
from goodjob.retry import Retry

gj = GoodJob()

STATES = ("scheduled", "queued", "running", "retried", "succeeded", "discarded")
QUEUES = "reports:3;+default,mail:4;*:4"  # the slow queue has its own threads
DEADLINE = 50.0  # seconds: the demo stops waiting (and says so) after this


class CardDeclined(Exception):
    """The demo's permanent failure."""


@gj.task(queue="mail")
def send_welcome_email(user_id: int) -> str:
    time.sleep(random.uniform(0.002, 0.01))  # an SMTP round trip
    return f"sent to user {user_id}"


@gj.task(queue="media", priority=10)
def resize_image(image_id: int, width: int) -> dict[str, int]:
    time.sleep(random.uniform(0.005, 0.02))
    return {"image": image_id, "width": width}


@gj.task(queue="reports")
async def build_report(report_id: int) -> str:
    await asyncio.sleep(random.uniform(0.3, 0.8))  # a slow query, on the capsule's event loop
    return f"report {report_id}"


@gj.task(queue="webhooks", retry=Retry(attempts=3, wait=0.5, jitter=0.2))
def deliver_webhook(n: int, flaky: bool) -> str:
    job = current_job()
    if flaky and job is not None and job.attempt == 1:
        raise ConnectionError(f"webhook {n}: connection reset by peer")
    return f"webhook {n} delivered"


@gj.task(queue="payments", retry=Retry(attempts=2, wait=0.5, jitter=0, on=(CardDeclined,)))
def charge_card(order_id: int) -> None:
    raise CardDeclined(f"order {order_id}: card declined")


@gj.task(queue="default", priority=-10)
def page_on_call(alert_id: int) -> str:
    return f"alert {alert_id} paged"


@gj.task(queue="default")
def nightly_digest(day: int) -> str:
    return f"digest {day}"


def workload(jobs: int, label: str, rng: random.Random) -> list[JobRequest]:
    """The requests of one run: a mix by weight, some scheduled a few seconds ahead."""
    mix: list[tuple[int, Callable[[int], JobRequest]]] = [
        (45, lambda n: send_welcome_email.prepare(n)),
        (25, lambda n: resize_image.prepare(n, rng.choice((320, 640, 1280)))),
        (10, lambda n: deliver_webhook.prepare(n, rng.random() < 0.3)),
        (3, lambda n: charge_card.prepare(n)),
        (5, lambda n: page_on_call.prepare(n)),
        (2, lambda n: build_report.prepare(n)),
        (10, lambda n: nightly_digest.using(wait=rng.uniform(1, 6)).prepare(n)),
    ]
    weights = [w for w, _ in mix]
    requests = []
    for n in range(jobs):
        _, make = rng.choices(mix, weights)[0]
        request = make(n)
        labels = (*request.options.labels, label)
        options = dataclasses.replace(request.options, labels=labels)
        requests.append(request._replace(options=options))
    return requests


def _progress_table(counts: dict[str, int], total: int, elapsed: float) -> Table:
    table = Table(title="jobs by state", expand=False)
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_row(*(str(counts.get(s, 0)) for s in STATES))
    return table


def run(jobs: int = 2000, processes: int = 2, console: Console | None = None) -> int:
    """Run the demo; returns the exit code (0 when every job reached a final state)."""
    console = console or Console()
    console.print("[bold]goodjob demo[/]: preparing the database", highlight=False)
    url = gj.database.url  # starts the embedded server when no URL is configured
    applied = gj.migrate()
    if applied:
        console.print(f"  migrated: {', '.join(applied)}")
    label = f"demo-{uuid.uuid4().hex[:8]}"
    rng = random.Random(4)
    requests = workload(jobs, label, rng)
    backlog, stream = requests[: jobs // 2], requests[jobs // 2 :]
    gj.enqueue_all(backlog)
    console.print(
        f"  enqueued {len(backlog)} jobs; {len(stream)} more will arrive while workers run",
        highlight=False,
    )
    log_path = Path(gj.settings.embedded_data_dir).resolve().parent / "demo-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "goodjob", "--log-level", "warning", "start",
        "--app", "goodjob.demo:gj", "--processes", str(processes), "--queues", QUEUES,
        "--poll-interval", "1",
    ]  # fmt: skip
    console.print(f"  starting: goodjob start --processes {processes} --queues '{QUEUES}'")
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            command, env={**os.environ, "GOODJOB_DATABASE_URL": url}, stdout=log, stderr=log
        )
    started = time.monotonic()
    try:
        finished = _watch(console, label, jobs, stream, started)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    elapsed = time.monotonic() - started
    _summary(console, label, elapsed)
    if not finished:
        console.print(f"[red]not every job finished within {DEADLINE:.0f}s[/] (see {log_path})")
        return 1
    console.print(f"worker log: {log_path}")
    return 0


def _watch(console: Console, label: str, total: int, stream: list[Any], started: float) -> bool:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    )
    bar = progress.add_task("finished", total=total)
    chunk = max(1, len(stream) // 40)  # the stream arrives over about four seconds
    with Live(console=console, refresh_per_second=8) as live:
        while True:
            if stream:
                gj.enqueue_all(stream[:chunk])
                del stream[:chunk]
            counts = {
                r["status"]: int(r["jobs"])
                for r in gj.database.execute("demo_progress", {"label": label})
            }
            done = counts.get("succeeded", 0) + counts.get("discarded", 0)
            elapsed = time.monotonic() - started
            progress.update(bar, completed=done)
            workers = len(gj.database.execute("processes_list", _liveness()))
            live.update(
                Group(
                    progress,
                    _progress_table(counts, total, elapsed),
                    Panel.fit(
                        f"{workers} worker processes · {done / max(elapsed, 0.001):,.0f} jobs/s",
                        border_style="dim",
                    ),
                )
            )
            if done >= total and not stream:
                return True
            if elapsed > DEADLINE:
                return False
            time.sleep(0.1)


def _liveness() -> dict[str, Any]:
    from goodjob.records.processes import liveness_params

    return liveness_params(gj.database)


def _summary(console: Console, label: str, elapsed: float) -> None:
    counts = {
        r["status"]: int(r["jobs"]) for r in gj.database.execute("demo_progress", {"label": label})
    }
    states = Table(title="final states")
    states.add_column("state")
    states.add_column("jobs", justify="right")
    for state in STATES:
        if counts.get(state):
            states.add_row(state, str(counts[state]))
    rows = gj.database.execute("demo_summary", {"label": label})
    queues = Table(title="per queue: wait from due to start (first attempts)")
    for column in ("queue", "jobs", "attempts", "p50", "p90", "p99"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    total_jobs = 0
    for row in rows:
        p50, p90, p99 = row["wait"] or (0.0, 0.0, 0.0)
        name = row["queue_name"] or "[bold]all[/]"
        if row["queue_name"] is None:
            total_jobs = int(row["jobs"])
        queues.add_row(
            name, str(row["jobs"]), str(row["attempts"]),
            *(f"{v * 1000:,.1f} ms" for v in (p50, p90, p99)),
        )  # fmt: skip
    peak = gj.database.execute("demo_peak_throughput", {"label": label})[0]["peak"] or 0
    console.print(states)
    console.print(queues)
    console.print(
        f"[bold]{total_jobs}[/] jobs in {elapsed:.1f}s ({total_jobs / max(elapsed, 0.001):,.0f}"
        f" jobs/s overall, including the scheduled jobs' wait and the retries' back-off);"
        f" peak [bold]{peak:,} attempts/s[/]. The backlog's first jobs waited for the workers"
        " to start, which the wait percentiles include.",
        highlight=False,
    )
