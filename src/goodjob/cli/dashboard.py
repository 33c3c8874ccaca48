"""``goodjob dashboard``: serve the web dashboard with uvicorn (the ``dashboard`` extra)."""

from __future__ import annotations

import signal
from typing import Any

import click

from goodjob.cli.options import DATABASE_SETTINGS, app_option, console, load_app, settings_options
from goodjob.errors import ConfigurationError


@click.command("dashboard")
@app_option
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="GOODJOB_DASHBOARD_HOST",
    show_default=True,
    help="address to listen on (this host only by default) [env: GOODJOB_DASHBOARD_HOST]",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    envvar="GOODJOB_DASHBOARD_PORT",
    show_default=True,
    help="port to listen on [env: GOODJOB_DASHBOARD_PORT]",
)
@click.option("--read-only", is_flag=True, help="hide every action and refuse every POST")
@settings_options(*DATABASE_SETTINGS)
def dashboard(app_spec: str | None, host: str, port: int, read_only: bool, **settings: Any) -> None:
    """Serve the web dashboard (jobs, processes, cron, batches, pauses, performance)."""
    try:
        import uvicorn

        from goodjob.dashboard import create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs its extra ({exc.name} is missing):"
            " pip install 'goodjob[dashboard]'"
        ) from None
    gj = load_app(app_spec, settings)
    gj.check_schema()
    console.print(f"goodjob dashboard on http://{host}:{port}/", soft_wrap=True)
    # uvicorn catches SIGTERM and SIGINT, shuts down gracefully, then raises the signal again to
    # the handler it found: with the default one the process died by it (-15) after a clean stop.
    # A shutdown it already completed is a success: these handlers let the command return.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    try:
        uvicorn.run(create_app(gj, read_only=read_only), host=host, port=port, log_level="info")
    finally:
        gj.close()


def _stopped(signum: int, frame: object) -> None:
    """The signal uvicorn raises again once it has stopped: nothing is left to do."""
