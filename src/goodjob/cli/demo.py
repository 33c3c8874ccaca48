"""``goodjob demo``: a worker processing a demo workload on the embedded Postgres."""

from __future__ import annotations

import click


@click.command("demo")
@click.option(
    "--jobs",
    "jobs",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="how many jobs to enqueue",
)
@click.option(
    "--processes", type=click.IntRange(min=1), default=2, show_default=True, help="worker processes"
)
def demo(jobs: int, processes: int) -> None:
    """Enqueue a mixed workload, run workers on it with a live view, print a summary."""
    from goodjob.demo import run

    raise SystemExit(run(jobs=jobs, processes=processes))
