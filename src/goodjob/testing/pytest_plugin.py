"""goodjob's pytest plugin, loaded by pytest through goodjob's ``pytest11`` entry point: the
``goodjob_app`` fixture, the project's app on a database of its own for each test.

Name the app the tests enqueue through (as ``goodjob start --app`` does)::

    # pyproject.toml
    [tool.pytest.ini_options]
    goodjob_app = "myproject.jobs:gj"      # or GOODJOB_APP; without either, a new empty app

``goodjob_app`` is that app with its database switched to a fresh copy of a migrated template:
the project's tasks enqueue through it during the test and through the project's app again
afterwards. The databases are made beside the configured one, on the server of
``GOODJOB_DATABASE_URL`` (or ``DATABASE_URL``), whose role needs CREATEDB; the configured
database itself is never touched. With neither set, the server is goodjob's embedded Postgres
in ``.goodjob/test-postgres`` under pytest's root folder. ``goodjob_database_url`` is the test's
database alone.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from goodjob.app import GoodJob

APP_INI = "goodjob_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        APP_INI,
        "the goodjob app (module:attribute) the goodjob_app fixture runs on a test database;"
        " GOODJOB_APP when unset",
    )


def _project_app(config: pytest.Config) -> GoodJob | None:
    from goodjob.app import GoodJob
    from goodjob.errors import ConfigurationError

    spec = config.getini(APP_INI) or os.environ.get("GOODJOB_APP")
    if not spec:
        return None
    module_name, _, attribute = str(spec).partition(":")
    app = getattr(importlib.import_module(module_name), attribute, None) if attribute else None
    if not isinstance(app, GoodJob):
        raise ConfigurationError(
            f"{APP_INI} = {spec!r}: name a goodjob.GoodJob as module:attribute"
        )
    return app


@pytest.fixture(scope="session")
def goodjob_server_url(pytestconfig: pytest.Config) -> str:
    """A URL of the server the test databases are made on."""
    from goodjob import embedded
    from goodjob.config import Settings

    configured = Settings.load().database_url
    if configured:
        return configured
    return embedded.ensure_running(pytestconfig.rootpath / ".goodjob" / "test-postgres").url()


@pytest.fixture(scope="session")
def goodjob_template(pytestconfig: pytest.Config, goodjob_server_url: str) -> Iterator[str]:
    """A migrated database the tests' databases are copied from (one per pytest process)."""
    from goodjob.db import scratch

    app = _project_app(pytestconfig)
    schema = app.settings.schema if app is not None else "public"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    prefix = f"goodjob_test_{worker}_{os.getpid()}"
    name = scratch.create_template(goodjob_server_url, prefix, schema)
    yield name
    scratch.drop(goodjob_server_url, name)


@pytest.fixture
def goodjob_database_url(goodjob_server_url: str, goodjob_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test, dropped after it."""
    from goodjob.db import scratch

    url = scratch.copy(goodjob_server_url, goodjob_template, "goodjob_test")
    yield url
    scratch.drop(goodjob_server_url, scratch.name_of(url))


@pytest.fixture
def goodjob_app(pytestconfig: pytest.Config, goodjob_database_url: str) -> Iterator[GoodJob]:
    """The project's app (``goodjob_app`` ini option, GOODJOB_APP) on this test's database."""
    from goodjob.app import GoodJob

    project = _project_app(pytestconfig)
    if project is None:
        app = GoodJob(goodjob_database_url)
    else:
        app = project.with_settings(database_url=goodjob_database_url)
    try:
        yield app
    finally:
        if project is not None:
            project.tasks.owner = project  # its tasks enqueue through it again
        app.shutdown()
        app.close()
