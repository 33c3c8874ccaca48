"""``goodjob``: the command group, the options commands share (``--app``, one flag per setting),
and the commands about the database and processes."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from goodjob import embedded
from goodjob.app import GoodJob
from goodjob.config import Settings, env_name
from goodjob.db import Database
from goodjob.db import migrate as migrations
from goodjob.errors import Error
from goodjob.records import processes

console = Console()
err_console = Console(stderr=True)

# The settings every command that reaches the database takes as flags (start takes them all).
DATABASE_SETTINGS = ("database_url", "schema", "embedded_data_dir")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def load_app(spec: str | None, settings: Mapping[str, Any] | None = None) -> GoodJob:
    """The app named by ``module:attribute``, or a default app built from the environment,
    given the settings flags' values (those set; before it opens any connection)."""
    gj = _import_app(spec)
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    if given:
        gj.settings = gj.settings.replace(**given)
        gj.database = Database(gj.settings)
    return gj


def _import_app(spec: str | None) -> GoodJob:
    if not spec:
        return GoodJob()
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise click.BadParameter(
            f"{spec!r}: use module:attribute, e.g. myproject.jobs:gj", param_hint="--app"
        )
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"{spec!r}: cannot import {module_name}: {exc}", param_hint="--app"
        ) from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, GoodJob):
        raise click.BadParameter(
            f"{spec!r}: {attribute} is not a goodjob.GoodJob", param_hint="--app"
        )
    return app


def app_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--app MODULE:ATTR`` option (``GOODJOB_APP``) every command that loads an app takes."""
    return click.option(
        "--app",
        "app_spec",
        envvar="GOODJOB_APP",
        metavar="MODULE:ATTR",
        help="the GoodJob app to load [env: GOODJOB_APP]",
    )(fn)


def _flag_type(kind: Any) -> tuple[Any, bool]:
    """(click type, is_bool) for a Settings field annotation."""
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(kind)]), False
    if kind is bool:
        return bool, True
    return {int: int, float: float}.get(kind, str), False


def settings_options(*names: str) -> Decorator:
    """One option per Settings field named (every field if none is): ``--max-threads`` for
    ``max_threads``, default unset; the command passes their values to :func:`load_app`.

    The environment is read by Settings itself (so precedence stays in one place); the help text
    names the variable.
    """
    hints = typing.get_type_hints(Settings)
    fields = [f for f in dataclasses.fields(Settings) if not names or f.name in names]
    unknown = set(names) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"not settings: {', '.join(sorted(unknown))}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(fields):
            flag = f.name.replace("_", "-")
            kind, is_bool = _flag_type(hints[f.name])
            help_text = f"{f.metadata.get('help', '')} [env: {env_name(f.name)}]"
            decl = f"--{flag}/--no-{flag}" if is_bool else f"--{flag}"
            fn = click.option(
                decl, f.name, type=None if is_bool else kind, default=None, help=help_text
            )(fn)
        return fn

    return decorate


class GoodJobGroup(click.Group):
    """Shows goodjob's own errors as one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            ctx.exit(1)


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


def _register_commands() -> None:
    # Imported here, not at the top: these modules import the helpers above.
    from goodjob.cli.bench import bench
    from goodjob.cli.demo import demo
    from goodjob.cli.jobs import COMMANDS as job_commands
    from goodjob.cli.start import start

    for command in (start, demo, bench, *job_commands):
        main.add_command(command)


_register_commands()

__all__ = ["DATABASE_SETTINGS", "app_option", "env_name", "load_app", "main", "settings_options"]
