"""``goodjob start``: run workers. One flag per setting, derived from :mod:`goodjob.config`."""

from __future__ import annotations

from typing import Any

import click

from goodjob import queues as queue_strings
from goodjob.cli.options import app_option, load_app, settings_options
from goodjob.supervisor import Supervisor, run_worker


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
    gj.check_schema()
    if gj.settings.enable_cron:
        for entry in gj.cron:
            gj.cron_request(entry)  # every entry's task is registered
    if processes == 1:
        raise SystemExit(run_worker(gj))
    raise SystemExit(Supervisor(gj, processes).run())
