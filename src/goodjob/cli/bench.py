"""``goodjob bench``: throughput, latency and recovery, against a plain SKIP LOCKED queue."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console

from goodjob import embedded
from goodjob.config import Settings
from goodjob.errors import Error

QUICK = {
    "rounds": 1,
    "latency_jobs": 50,
    "recovery_runs": 1,
    "history_finished": 10_000,
    "history_future": 1_000,
    "dashboard_rows": 200_000,
    "dashboard_requests": 10,
    "dashboard_warmup": 1,
}


@click.command()
@click.option(
    "--database-url",
    envvar="GOODJOB_DATABASE_URL",
    help="server to measure on; each scenario creates (and drops) a database of its own there"
    " [env: GOODJOB_DATABASE_URL; default: the embedded Postgres]",
)
@click.option(
    "--pooler-url",
    help="a transaction-mode pooler (PgBouncer) in front of --database-url's server, serving any"
    " database name: the drain scenarios' workers (goodjob's with database_pooler on, and the"
    " baseline's) claim and complete through it and LISTEN on the direct URL; the other"
    " scenarios stay direct",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="jobs per enqueue and drain scenario",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=None,
    help="drains per side, reported as the median (the empty-table, baseline and history drains"
    " take turns); enqueue blocks per side, alternating with the baseline's [default: 5]",
)
@click.option(
    "--latency-jobs",
    type=click.IntRange(2),
    default=None,
    help="jobs enqueued 5 ms apart in the latency scenario [default: 500]",
)
@click.option(
    "--recovery-runs",
    type=click.IntRange(1),
    default=None,
    help="SIGKILL recoveries measured [default: 5]",
)
@click.option(
    "--history-finished",
    type=click.IntRange(0),
    default=None,
    help="finished jobs in the table for the history scenario [default: 1,000,000]",
)
@click.option(
    "--history-future",
    type=click.IntRange(0),
    default=None,
    help="future-scheduled jobs in the table for the history scenario [default: 100,000]",
)
@click.option(
    "--dashboard-rows",
    type=click.IntRange(1_000),
    default=None,
    help="jobs seeded for the dashboard scenario [default: 10,000,000]",
)
@click.option(
    "--dashboard-requests",
    type=click.IntRange(1),
    default=None,
    help="timed requests per dashboard page and format, after warm-up ones [default: 25]",
)
@click.option(
    "--dashboard-factory",
    default=None,
    metavar="MODULE:FUNCTION",
    help="the app the dashboard scenario measures, built as FUNCTION(gj, read_only=True)"
    " [default: goodjob.dashboard:create_app]",
)
@click.option(
    "--dashboard-keep",
    is_flag=True,
    help="keep the dashboard scenario's seeded database (its URL is printed) to query it later",
)
@click.option(
    "--quick",
    is_flag=True,
    help="small sizes for a smoke run: 1 round, 50 latency jobs, 1 recovery, 11,000 history rows,"
    " 200,000 dashboard rows and 10 requests per page",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(["enqueue", "drain", "latency", "history", "recovery", "dashboard"]),
    help="run only these scenarios (repeatable) [default: all but dashboard, which seeds"
    " 10,000,000 rows and runs only when named]",
)
@click.option(
    "--best-threads",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="threads per process of the drain_best scenario",
)
@click.option(
    "--best-processes",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="worker processes of the drain_best scenario",
)
@click.option(
    "--best-pool-size",
    type=click.IntRange(2),
    default=None,
    help="connections in each process's pool in the drain_best scenario [default: goodjob's]",
)
def bench(
    database_url: str | None,
    pooler_url: str | None,
    jobs: int,
    rounds: int | None,
    latency_jobs: int | None,
    recovery_runs: int | None,
    history_finished: int | None,
    history_future: int | None,
    dashboard_rows: int | None,
    dashboard_requests: int | None,
    dashboard_factory: str | None,
    dashboard_keep: bool,
    quick: bool,
    scenarios: tuple[str, ...],
    best_threads: int,
    best_processes: int,
    best_pool_size: int | None,
) -> None:
    """Measure goodjob against a plain SKIP LOCKED queue; print JSON lines and a table."""
    from goodjob.bench import runner
    from goodjob.bench.dashboard import FACTORY
    from goodjob.bench.environment import BenchError, WorkerConfig
    from goodjob.bench.scenarios import Sizes

    sizes = Sizes(jobs=jobs, chunk=min(1_000, jobs))
    if quick:
        sizes = dataclasses.replace(sizes, **QUICK)
    explicit = {
        "rounds": rounds,
        "latency_jobs": latency_jobs,
        "recovery_runs": recovery_runs,
        "history_finished": history_finished,
        "history_future": history_future,
        "dashboard_rows": dashboard_rows,
        "dashboard_requests": dashboard_requests,
    }
    sizes = dataclasses.replace(sizes, **{k: v for k, v in explicit.items() if v is not None})
    if not database_url:
        data_dir = Path(Settings.load().embedded_data_dir).resolve()
        database_url = embedded.ensure_running(data_dir).url()
    console = Console(width=None if Console().is_terminal else 200)
    err = Console(stderr=True)
    options = runner.Options(
        url=database_url,
        sizes=sizes,
        best=WorkerConfig(
            threads=best_threads,
            processes=best_processes,
            pool_size=best_pool_size,
            pooler_url=pooler_url,
        ),
        scenarios=scenarios or runner.ALL,
        pooler_url=pooler_url,
        dashboard_factory=dashboard_factory or FACTORY,
        dashboard_keep=dashboard_keep,
    )
    try:
        runner.run(options, console, err)
    except (Error, BenchError) as exc:
        raise click.ClickException(str(exc)) from exc
