"""Flask: settings from app.config, `flask goodjob migrate|start`, and async mode started with the
app. The README's example is ``examples/flask_app.py``."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

from goodjob import ConfigurationError
from goodjob.testing import assert_enqueued
from tests.helpers import load_example


@pytest.fixture
def example(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.delenv("GOODJOB_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    module = load_example("flask_app")
    yield module
    for app in module.apps:
        gj = app.extensions["goodjob"]
        gj.shutdown()
        gj.close()


@pytest.fixture
def create_app(example: types.ModuleType) -> types.FunctionType:
    example.apps = []

    def create(**config: object) -> object:
        app = example.create_app(**config)
        example.apps.append(app)
        return app

    return create  # type: ignore[return-value]


def test_settings_come_from_the_config_and_the_cli_runs_a_worker(
    example: types.ModuleType, create_app: types.FunctionType
) -> None:
    app = create_app(GOODJOB_MAX_THREADS=3)
    with app.app_context():
        gj = example.jobs.goodjob
    assert (gj.settings.queues, gj.settings.max_threads) == ("mail:2", 3)
    assert gj.execution_mode == "external"

    response = app.test_client().post("/signup", data={"address": "ada@example.com"})
    assert response.status_code == 202
    [job] = assert_enqueued(example.send_welcome, args=["ada@example.com"], queue="mail")
    assert job.id.hex == response.json["job"].replace("-", "")

    runner = app.test_cli_runner()
    result = runner.invoke(args=["goodjob", "migrate"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    # A worker on this app's goodjob app, until idle for a second: it runs the job first.
    result = runner.invoke(args=["goodjob", "start", "--idle-timeout", "1", "--poll-interval", "1"])
    assert result.exit_code == 0, result.output
    assert gj.job(job.id).result == "welcome sent to ada@example.com"
    assert "--max-threads" in runner.invoke(args=["goodjob", "start", "--help"]).output


def test_async_mode_runs_jobs_inside_the_app(
    example: types.ModuleType, create_app: types.FunctionType
) -> None:
    app = create_app(GOODJOB_EXECUTION_MODE="async", GOODJOB_POLL_INTERVAL=1)
    response = app.test_client().post("/signup", data={"address": "bob@example.com"})
    with app.app_context():
        job = example.jobs.goodjob.job(response.json["job"])
    assert job.wait(timeout=10) == "welcome sent to bob@example.com"


def test_a_misspelt_setting_is_named(create_app: types.FunctionType) -> None:
    with pytest.raises(ConfigurationError, match=r"GOODJOB_MAX_THREAD.*GOODJOB_MAX_THREADS"):
        create_app(GOODJOB_MAX_THREAD=2)
