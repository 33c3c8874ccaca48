"""``goodjob start``: run workers. One flag per setting, derived from :mod:`goodjob.config`."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import click

from goodjob import queues as queue_strings
from goodjob.app import GoodJob
from goodjob.cli.main import app_option, load_app
from goodjob.config import Settings, env_name
from goodjob.db import Database
from goodjob.supervisor import Supervisor, run_worker


def _flag_type(kind: Any) -> tuple[Any, bool]:
    """(click type, is_bool) for a Settings field annotation."""
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(kind)]), False
    if kind is bool:
        return bool, True
    return {int: int, float: float}.get(kind, str), False


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One option per Settings field: ``--max-threads`` for ``max_threads``, default unset.

    The environment is read by Settings itself (so precedence stays in one place); the help text
    names the variable.
    """
    hints = typing.get_type_hints(Settings)
    for f in reversed(dataclasses.fields(Settings)):
        flag = f.name.replace("_", "-")
        kind, is_bool = _flag_type(hints[f.name])
        help_text = f"{f.metadata.get('help', '')} [env: {env_name(f.name)}]"
        decl = f"--{flag}/--no-{flag}" if is_bool else f"--{flag}"
        fn = click.option(
            decl, f.name, type=None if is_bool else kind, default=None, help=help_text
        )(fn)
    return fn


def apply_settings(gj: GoodJob, overrides: dict[str, Any]) -> None:
    """Give the loaded app the flags' values (before it opens any connection)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return
    gj.settings = gj.settings.replace(**given)
    gj.database = Database(gj.settings)


@click.command("start")
@app_option
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    envvar="GOODJOB_PROCESSES",
    show_default=True,
    help="worker processes to fork and supervise [env: GOODJOB_PROCESSES]",
)
@settings_options
def start(app_spec: str | None, processes: int, **overrides: Any) -> None:
    """Run workers until SIGTERM/SIGINT (a second signal exits at once)."""
    gj = load_app(app_spec)
    apply_settings(gj, overrides)
    # Fail fast, in the parent, with one clear line (a bad queue string, a missing schema).
    queue_strings.parse(gj.settings.queues, gj.settings.max_threads)
    gj.check_schema()
    if processes == 1:
        raise SystemExit(run_worker(gj))
    raise SystemExit(Supervisor(gj, processes).run())
