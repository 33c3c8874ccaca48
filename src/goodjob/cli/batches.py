"""``goodjob batches``: list batches, show one with its jobs, retry its discarded jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.table import Table

from goodjob.cli.options import DATABASE_SETTINGS, app_option, console, load_app, settings_options
from goodjob.records.batches import JOBS_LIMIT, LIST_LIMIT, Batch


def _at(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else ""


def _counts(batch: Batch) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(batch.counts.items()))


@click.group("batches", invoke_without_command=True)
@app_option
@click.option("--limit", type=int, default=LIST_LIMIT, show_default=True, help="at most this many")
@settings_options(*DATABASE_SETTINGS)
@click.pass_context
def batches(context: click.Context, /, app_spec: str | None, limit: int, **settings: Any) -> None:
    """List batches, newest first (or, with a command, act on one)."""
    if context.invoked_subcommand is not None:
        return
    gj = load_app(app_spec, settings)
    gj.check_schema()
    table = Table("id", "description", "status", "jobs", "enqueued", "discarded", "finished")
    for batch in gj.batches(limit=limit):
        table.add_row(
            str(batch.id),
            batch.description or "",
            batch.status,
            _counts(batch),
            _at(batch.enqueued_at),
            _at(batch.discarded_at),
            _at(batch.finished_at),
        )
    console.print(table)


@batches.command("show")
@app_option
@click.argument("batch_id")
@click.option("--limit", type=int, default=JOBS_LIMIT, show_default=True, help="jobs shown")
@settings_options(*DATABASE_SETTINGS)
def show(app_spec: str | None, batch_id: str, limit: int, **settings: Any) -> None:
    """One batch: its state, callbacks, properties and jobs."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    batch = gj.batch_by_id(batch_id)
    console.print(f"batch {batch.id}: {batch.status}" + (" (succeeded)" if batch.succeeded else ""))
    for name, value in [
        ("description", batch.description),
        ("jobs", _counts(batch)),
        ("properties", batch.properties),
        ("on_finish", batch.on_finish),
        ("on_success", batch.on_success),
        ("on_discard", batch.on_discard),
        ("callback queue", batch.callback_queue_name),
        ("callback priority", batch.callback_priority),
        ("created", _at(batch.created_at)),
        ("enqueued", _at(batch.enqueued_at)),
        ("discarded", _at(batch.discarded_at)),
        ("jobs finished", _at(batch.jobs_finished_at)),
        ("finished", _at(batch.finished_at)),
    ]:
        if value not in (None, "", {}):
            console.print(f"  {name}: {value}", highlight=False)
    table = Table("id", "task", "queue", "status", "attempts", "error")
    for job in batch.jobs(limit=limit):
        table.add_row(
            str(job.id),
            job.task_name,
            job.queue_name,
            job.status,
            str(job.attempts),
            (job.error or "")[:60],
        )
    console.print(table)


@batches.command("retry")
@app_option
@click.argument("batch_id")
@settings_options(*DATABASE_SETTINGS)
def retry(app_spec: str | None, batch_id: str, **settings: Any) -> None:
    """Retry a batch's discarded jobs; the batch reopens."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    count = gj.retry_batch(batch_id)
    console.print(f"retried {count} job{'s' if count != 1 else ''} of batch {batch_id}")


COMMANDS: list[click.Command] = [batches]
