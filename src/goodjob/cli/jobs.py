"""``goodjob`` commands about jobs: list them, retry one, clean up preserved records."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from goodjob.cli.options import DATABASE_SETTINGS, app_option, console, load_app, settings_options
from goodjob.config import env_name
from goodjob.records.jobs import LIST_LIMIT, STATUSES


@click.command("cleanup-preserved-jobs")
@app_option
@click.option(
    "--before-seconds-ago",
    type=float,
    default=None,
    help="delete finished jobs older than this many seconds"
    f" [env: {env_name('cleanup_preserved_jobs_before_seconds_ago')}; default 14 days]",
)
@click.option(
    "--keep-discarded",
    is_flag=True,
    help="keep discarded jobs, delete succeeded ones only"
    f" [env: {env_name('cleanup_discarded_jobs')}=false]",
)
@settings_options(*DATABASE_SETTINGS)
def cleanup_preserved_jobs(
    app_spec: str | None, before_seconds_ago: float | None, keep_discarded: bool, **settings: Any
) -> None:
    """Delete old finished jobs and their executions, in chunks."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    deleted = gj.cleanup_preserved_jobs(
        before_seconds_ago, include_discarded=False if keep_discarded else None
    )
    console.print(f"deleted {deleted} job{'s' if deleted != 1 else ''}")


@click.group("jobs", invoke_without_command=True)
@app_option
@click.option("--status", type=click.Choice(STATUSES), help="only jobs in this state")
@click.option("--queue", help="only jobs on this queue")
@click.option("--task", help="only jobs of this task (its stored name)")
@click.option("--label", help="only jobs with this label")
@click.option("--limit", type=int, default=LIST_LIMIT, show_default=True, help="at most this many")
@settings_options(*DATABASE_SETTINGS)
@click.pass_context
def list_jobs(
    context: click.Context,
    /,
    app_spec: str | None,
    status: str | None,
    queue: str | None,
    task: str | None,
    label: str | None,
    limit: int,
    **settings: Any,
) -> None:
    """List jobs, newest first (or, with a command, act on one)."""
    if context.invoked_subcommand is not None:
        return
    gj = load_app(app_spec, settings)
    gj.check_schema()
    table = Table("id", "task", "queue", "status", "attempts", "scheduled", "error")
    for job in gj.jobs(status=status, queue=queue, task=task, label=label, limit=limit):
        table.add_row(
            str(job.id),
            job.task_name,
            job.queue_name,
            job.status,
            str(job.attempts),
            f"{job.scheduled_at:%Y-%m-%d %H:%M:%S}" if job.scheduled_at else "",
            (job.error or "")[:60],
        )
    console.print(table)


@click.command("retry")
@app_option
@click.argument("job_id")
@settings_options(*DATABASE_SETTINGS)
def retry_job(app_spec: str | None, job_id: str, **settings: Any) -> None:
    """Run a discarded job again (e.g. once its missing task is deployed)."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    job = gj.retry_job(job_id)
    console.print(f"job {job.id} is {job.status}")


@list_jobs.command("cancel")
@app_option
@click.argument("job_id")
@settings_options(*DATABASE_SETTINGS)
def cancel_job(app_spec: str | None, job_id: str, **settings: Any) -> None:
    """Cancel a job: queued or scheduled, it ends discarded; running, it ends discarded too and
    its task is told to stop."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    job = gj.cancel_job(job_id)
    if job.status == "running":
        console.print(f"job {job.id} is cancelled: its worker was told, it ends discarded")
    else:
        console.print(f"job {job.id} is {job.status} (cancelled)")


COMMANDS: list[click.Command] = [cleanup_preserved_jobs, list_jobs, retry_job]
