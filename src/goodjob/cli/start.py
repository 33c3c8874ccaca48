"""``goodjob start``: run workers. One flag per setting, derived from :mod:`goodjob.config`."""

from __future__ import annotations

import logging
import time
from typing import Any

import click

from goodjob import GoodJob
from goodjob import queues as queue_strings
from goodjob.cli.options import app_option, load_app, settings_options
from goodjob.errors import DatabaseUnavailable
from goodjob.supervisor import Supervisor, run_worker

logger = logging.getLogger("goodjob.cli")
RETRY_MAX = 5.0  # seconds between two tries, at most


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
@settings_options()
def start(app_spec: str | None, processes: int, **settings: Any) -> None:
    """Run workers until SIGTERM/SIGINT (a second signal exits at once)."""
    gj = load_app(app_spec, settings)
    # Fail fast, in the parent, with one clear line (a bad queue string, a missing schema).
    queue_strings.parse(gj.settings.queues, gj.settings.max_threads)
    _check_schema_when_reachable(gj)
    if gj.settings.enable_cron:
        for entry in gj.cron:
            gj.cron_request(entry)  # every entry's task is registered
    if processes == 1:
        raise SystemExit(run_worker(gj))
    raise SystemExit(Supervisor(gj, processes).run())


def _check_schema_when_reachable(gj: GoodJob) -> None:
    """Check the schema, retrying for up to ``startup_wait`` seconds while the database cannot
    be reached: a worker often starts before its database (a container, a reboot)."""
    deadline = time.monotonic() + gj.settings.startup_wait
    pause = 0.5
    while True:
        try:
            gj.check_schema()
            return
        except DatabaseUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            logger.warning("%s; trying again for %.0f s more (startup_wait)", exc, left)
            time.sleep(min(pause, left))
            pause = min(2 * pause, RETRY_MAX)
