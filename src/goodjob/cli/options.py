"""What the ``goodjob`` commands share: loading the app (``--app``), one flag per setting, and
the consoles they print to."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from goodjob.app import GoodJob
from goodjob.config import Settings, env_name

console = Console()
err_console = Console(stderr=True)

# The settings every command that reaches the database takes as flags (start takes them all).
DATABASE_SETTINGS = ("database_url", "schema", "embedded_data_dir")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def load_app(spec: str | None, settings: Mapping[str, Any] | None = None) -> GoodJob:
    """The app named by ``module:attribute``; else the app a framework ran the command for
    (``manage.py goodjob_worker``, ``flask goodjob start``: the click context's object); else
    a default app built from the environment. Given the settings flags' values (those set;
    before it opens any connection)."""
    gj = _import_app(spec)
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    return gj.with_settings(**given) if given else gj


def _import_app(spec: str | None) -> GoodJob:
    if not spec:
        ctx = click.get_current_context(silent=True)
        framework_app = ctx.find_object(GoodJob) if ctx is not None else None
        return framework_app if framework_app is not None else GoodJob()
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
