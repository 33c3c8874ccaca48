"""Flask: goodjob's settings from ``app.config``, ``flask goodjob start|migrate``, and async mode
started with the web server.

::

    jobs = goodjob.contrib.flask.GoodJob()      # or GoodJob(app)

    @jobs.task(queue="mail")
    def send_welcome(address: str) -> None: ...

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["GOODJOB_QUEUES"] = "mail:2;*"
        jobs.init_app(app)
        return app

Every setting is read from ``app.config["GOODJOB_<NAME>"]`` first, then from the environment
as ever. ``init_app`` makes the goodjob app of that Flask app (``jobs.goodjob`` inside it) and the
tasks enqueue through it. With ``GOODJOB_EXECUTION_MODE = "async"`` a worker capsule starts in
``init_app`` when the process serves the app (``flask run``, gunicorn, a test client), not for
the other ``flask`` commands, and stops when the process exits.
"""

from __future__ import annotations

import atexit
import dataclasses
import difflib
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from goodjob.app import GoodJob as App
from goodjob.cli.main import GoodJobGroup, migrate
from goodjob.cli.start import start
from goodjob.config import Settings, env_name
from goodjob.errors import ConfigurationError

EXTENSION = "goodjob"  # the key of app.extensions


class GoodJob:
    """The Flask extension: register tasks with ``@jobs.task``, then ``jobs.init_app(app)``."""

    def __init__(self, app: Flask | None = None, *, base: App | None = None) -> None:
        # The app the tasks are registered on, with settings from the environment; each
        # Flask app gets a copy of it with its config's settings (init_app).
        self.base = base if base is not None else App()
        self.task = self.base.task
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Make ``app``'s goodjob app from its config, add the ``flask goodjob`` commands, and
        start the async-mode worker when configured and serving."""
        settings = settings_from(app.config)
        gj = self.base.with_settings(**settings) if settings else self.base
        app.extensions[EXTENSION] = gj
        app.cli.add_command(commands)
        if gj.execution_mode == "async" and _serving():
            gj.start()
            atexit.register(gj.shutdown)

    @property
    def goodjob(self) -> App:
        """The goodjob app of the current Flask app."""
        gj: App = current_app.extensions[EXTENSION]
        return gj


def settings_from(config: dict[str, Any]) -> dict[str, Any]:
    """The goodjob settings in a Flask config (``GOODJOB_MAX_THREADS`` is ``max_threads``); a
    ConfigurationError for a ``GOODJOB_`` key that is no setting."""
    names = {env_name(f.name): f.name for f in dataclasses.fields(Settings)}
    settings = {}
    for key, value in config.items():
        if not key.startswith("GOODJOB_"):
            continue
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigurationError(f"app.config[{key!r}] is not a goodjob setting{hint}")
        settings[names[key]] = value
    return settings


def _serving() -> bool:
    """Whether this process serves the app: run by a WSGI server (no command line of click's)
    or by ``flask run``, rather than by another ``flask`` command (``flask goodjob migrate``
    must not start a worker first)."""
    ctx = click.get_current_context(silent=True)
    return ctx is None or ctx.info_name == "run"


@click.group("goodjob", cls=GoodJobGroup)
@with_appcontext
@click.pass_context
def commands(ctx: click.Context) -> None:
    """goodjob's commands, on this Flask app's goodjob app."""
    # The Flask app's goodjob app becomes the context's object, which the commands load when
    # given no --app.
    ctx.obj = current_app.extensions[EXTENSION]


commands.add_command(start)
commands.add_command(migrate)
