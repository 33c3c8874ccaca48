"""``goodjob``: the command group, and the commands about the schema, processes and the embedded
server; the others are in modules of their own."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from goodjob import embedded
from goodjob.app import GoodJob
from goodjob.cli.batches import COMMANDS as batch_commands
from goodjob.cli.bench import bench
from goodjob.cli.controls import COMMANDS as control_commands
from goodjob.cli.dashboard import dashboard
from goodjob.cli.demo import demo
from goodjob.cli.jobs import COMMANDS as job_commands
from goodjob.cli.options import (
    DATABASE_SETTINGS,
    app_option,
    console,
    err_console,
    load_app,
    settings_options,
)
from goodjob.cli.start import start
from goodjob.config import Settings
from goodjob.db import migrate as migrations
from goodjob.errors import Error
from goodjob.records import processes


class GoodJobGroup(click.Group):
    """Shows goodjob's own errors as one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            ctx.exit(1)


def run_command(command: click.Command, args: list[str], *, prog_name: str, app: GoodJob) -> None:
    """Run one of goodjob's commands on ``app``, as a subcommand of a framework's own program
    (``manage.py goodjob_worker``): its options and help as ``goodjob``'s, goodjob's errors as
    one line. Exits, as a command line does."""
    try:
        command.main(args=args, prog_name=prog_name, obj=app)
    except Error as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


@click.group(cls=GoodJobGroup)
@click.option(
    "--log-level",
    default="info",
    envvar="GOODJOB_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="log level [env: GOODJOB_LOG_LEVEL]",
)
@click.version_option(package_name="goodjob")
def main(log_level: str) -> None:
    """goodjob: Postgres-backed background jobs."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@app_option
@click.option("--sql", "print_sql", is_flag=True, help="print the SQL instead of running it")
@click.option(
    "--all", "all_versions", is_flag=True, help="with --sql: every migration, not only pending"
)
@settings_options(*DATABASE_SETTINGS)
def migrate(app_spec: str | None, print_sql: bool, all_versions: bool, **settings: Any) -> None:
    """Create or update goodjob's tables."""
    gj = load_app(app_spec, settings)
    if print_sql:
        click.echo(migrations.migration_sql(gj.database, all_versions=all_versions), nl=False)
        return
    applied = gj.migrate()
    if applied:
        for name in applied:
            console.print(f"applied [bold]{name}[/]")
    else:
        console.print(f"up to date (version {migrations.latest_version()})")


@main.command("processes")
@app_option
@settings_options(*DATABASE_SETTINGS)
def list_processes(app_spec: str | None, **settings: Any) -> None:
    """List worker processes and whether each is alive."""
    gj = load_app(app_spec, settings)
    gj.check_schema()
    # Plain aligned text, not a rich table: a table squeezed into 80 columns cuts the ids, and
    # the ids are what people copy from this listing (and grep for).
    rows = [("id", "host", "pid", "lock", "alive", "heartbeat", "started")]
    for p in processes.all_processes(gj.database):
        rows.append(
            (
                str(p.id),
                str(p.state.get("hostname", "")),
                str(p.state.get("pid", "")),
                p.lock_type or "heartbeat",
                "yes" if p.alive else "no",
                f"{p.updated_at:%H:%M:%S}",
                f"{p.created_at:%Y-%m-%d %H:%M:%S}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if len(rows) == 1:
        click.echo("(no processes)")


@main.group()
def db() -> None:
    """The embedded Postgres server (used when no database URL is configured)."""


def _data_dir() -> Path:
    return Path(Settings.load().embedded_data_dir).resolve()


@db.command("status")
def db_status() -> None:
    """Whether the embedded server runs, and where."""
    data_dir = _data_dir()
    server = embedded.server_for(data_dir)
    if server is None:
        console.print(f"stopped ({data_dir})")
        sys.exit(3)
    # soft_wrap: the URL (it names the password file) must stay one line, to be copied whole.
    console.print(f"running ({data_dir})\n{server.url()}", soft_wrap=True)


@db.command("start")
def db_start() -> None:
    """Start the embedded server (creating its data folder on first use)."""
    server = embedded.ensure_running(_data_dir())
    console.print(f"running ({server.data_dir})\n{server.url()}", soft_wrap=True)


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    console.print("stopped" if embedded.stop(_data_dir()) else "was not running")


@db.command("url")
def db_url() -> None:
    """Print the database URL goodjob uses (starting the embedded server when needed)."""
    settings = Settings.load()
    if settings.database_url:
        click.echo(settings.database_url)
    else:
        click.echo(embedded.ensure_running(_data_dir()).url())


for command in (start, dashboard, demo, bench, *job_commands, *batch_commands, *control_commands):
    main.add_command(command)

__all__ = ["GoodJobGroup", "main", "run_command"]
