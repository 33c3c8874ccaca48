"""What the management commands share: goodjob's own click commands, run on a backend's app."""

from __future__ import annotations

import argparse
import os
from typing import Any

import click
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from goodjob.cli.main import run_command
from goodjob.contrib.django.backend import GoodJobBackend
from goodjob.contrib.django.tasks_api import task_backends

# Options of manage.py itself: applied before any command runs, so not passed on to goodjob's.
DJANGO_OPTIONS = ("--settings", "--pythonpath")


def backend(alias: str | None) -> GoodJobBackend:
    """The goodjob backend named ``alias``, or the only one in ``TASKS``."""
    aliases = [
        name
        for name, params in getattr(settings, "TASKS", {}).items()
        if params.get("BACKEND") == "goodjob.contrib.django.GoodJobBackend"
    ]
    if alias is None:
        if len(aliases) != 1:
            found = ", ".join(aliases) or "none"
            raise CommandError(f"name the goodjob backend with --backend (TASKS has: {found})")
        alias = aliases[0]
    found_backend = task_backends[alias]
    if not isinstance(found_backend, GoodJobBackend):
        raise CommandError(f"TASKS[{alias!r}] is not a goodjob.contrib.django.GoodJobBackend")
    return found_backend


def split(args: list[str]) -> tuple[str | None, list[str]]:
    """(--backend's value, the rest without manage.py's own options)."""
    alias = None
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        name, has_value, value = arg.partition("=")
        if name == "--backend":
            alias = value if has_value else next(items, None)
        elif name in DJANGO_OPTIONS:
            if not has_value:
                next(items, None)
        else:
            rest.append(arg)
    return alias, rest


class GoodJobCommand(BaseCommand):
    """A management command that is one of goodjob's commands: its options, parsed by goodjob
    (``--help`` lists them), plus ``--backend ALIAS`` when TASKS has several goodjob backends."""

    command: click.Command

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("args", nargs="*", help="goodjob's options")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """Django's parser (used by call_command()) that hands every option it does not know
        to goodjob's command instead of refusing it."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_known_args = parser.parse_known_args

        def parse_args(args: Any = None, namespace: Any = None) -> Any:
            known, unknown = parse_known_args(args, namespace)
            known.args = [*known.args, *unknown]
            return known

        parser.parse_args = parse_args
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        alias, args = split(argv[2:])
        prog_name = f"{os.path.basename(argv[0])} {argv[1]}"
        run_command(self.command, args, prog_name=prog_name, app=backend(alias).goodjob)

    def handle(self, *args: Any, **options: Any) -> None:
        alias, rest = split(list(args))
        name = type(self).__module__.rpartition(".")[2]  # goodjob_worker
        try:
            run_command(self.command, rest, prog_name=name, app=backend(alias).goodjob)
        except SystemExit as exc:  # call_command(): return, or raise as Django's commands do
            if exc.code not in (0, None):
                raise CommandError(f"{name} exited with status {exc.code}") from None
