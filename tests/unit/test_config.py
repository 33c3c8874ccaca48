"""Settings: precedence (keyword > GOODJOB_* > default), coercion, errors that say what is wrong."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

import pytest

from goodjob import config
from goodjob.config import Settings, env_name
from goodjob.errors import ConfigurationError, QueueStringError


def test_defaults_are_the_named_constants() -> None:
    s = Settings.load(environ={})
    assert s.database_url is None
    assert s.schema == config.DEFAULT_SCHEMA == "public"
    assert s.embedded_data_dir == config.DEFAULT_EMBEDDED_DATA_DIR
    assert s.queues == "*"
    assert s.max_threads == config.DEFAULT_MAX_THREADS
    assert s.poll_interval == config.DEFAULT_POLL_INTERVAL
    assert s.process_stale_seconds == 10.0
    assert s.process_expired_seconds == 40.0  # a hung process's jobs run again within 60 s
    assert s.lock_strategy == "skiplocked"
    assert s.advisory_lock_heartbeat is True
    assert s.enable_cron is False
    assert s.probe_port is None


def test_environment_overrides_defaults_and_keywords_override_environment() -> None:
    environ = {"GOODJOB_MAX_THREADS": "7", "GOODJOB_QUEUES": "mail:2;*", "GOODJOB_SCHEMA": "gj"}
    from_env = Settings.load(environ=environ)
    assert (from_env.max_threads, from_env.queues, from_env.schema) == (7, "mail:2;*", "gj")
    both = Settings.load(environ=environ, max_threads=3, schema="other")
    assert (both.max_threads, both.queues, both.schema) == (3, "mail:2;*", "other")


def test_a_keyword_of_none_means_not_given() -> None:
    s = Settings.load(environ={"GOODJOB_MAX_THREADS": "9"}, max_threads=None)
    assert s.max_threads == 9


def test_database_url_precedence() -> None:
    both = {"GOODJOB_DATABASE_URL": "postgresql:///a", "DATABASE_URL": "postgresql:///b"}
    assert Settings.load(environ=both).database_url == "postgresql:///a"
    assert Settings.load(environ={"DATABASE_URL": "postgresql:///b"}).database_url == (
        "postgresql:///b"
    )
    assert Settings.load(environ=both, database_url="postgresql:///c").database_url == (
        "postgresql:///c"
    )
    assert Settings.load(environ={}).database_url is None


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOODJOB_POLL_INTERVAL", "2.5")
    assert Settings.load().poll_interval == 2.5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("false", False)],
)
def test_booleans_from_the_environment(raw: str, expected: bool) -> None:
    loaded = Settings.load(environ={"GOODJOB_RETRY_ON_UNHANDLED_ERROR": raw})
    assert loaded.retry_on_unhandled_error is expected


def test_numbers_and_optionals_from_strings() -> None:
    s = Settings.load(
        environ={
            "GOODJOB_MAX_CACHE": " 50 ",
            "GOODJOB_SHUTDOWN_TIMEOUT": "-1",
            "GOODJOB_PROBE_PORT": "",
        }
    )
    assert (s.max_cache, s.shutdown_timeout, s.probe_port) == (50, -1.0, None)
    assert Settings.load(environ={"GOODJOB_PROBE_PORT": "8080"}).probe_port == 8080


def test_preserve_job_records_accepts_booleans_as_goodjob_does() -> None:
    assert Settings.load(environ={}, preserve_job_records=False).preserve_job_records == "never"
    assert Settings.load(environ={"GOODJOB_PRESERVE_JOB_RECORDS": "true"}).preserve_job_records == (
        "always"
    )
    on_error = Settings.load(environ={}, preserve_job_records="on_unhandled_error")
    assert on_error.preserve_job_records == "on_unhandled_error"


@pytest.mark.parametrize(
    ("overrides", "environ", "option", "value", "allowed"),
    [
        ({"max_threads": -1}, {}, "max_threads", "-1", "at least 1"),
        ({"max_threads": 0}, {}, "max_threads", "0", "at least 1"),
        ({}, {"GOODJOB_MAX_THREADS": "five"}, "max_threads", "'five'", "whole number"),
        ({"max_threads": 2.5}, {}, "max_threads", "2.5", "whole number"),
        ({}, {"GOODJOB_POLL_INTERVAL": "soon"}, "poll_interval", "'soon'", "a number"),
        ({"poll_interval": 0}, {}, "poll_interval", "0", "-1 to disable"),
        ({"lock_strategy": "optimistic"}, {}, "lock_strategy", "'optimistic'", "skiplocked"),
        ({}, {"GOODJOB_ENABLE_CRON": "maybe"}, "enable_cron", "'maybe'", "true or false"),
        (
            {"cron_graceful_restart_period": -5},
            {},
            "cron_graceful_restart_period",
            "-5",
            "0 or more",
        ),
        ({}, {"GOODJOB_EXECUTION_MODE": "eager"}, "execution_mode", "'eager'", "external"),
        ({"probe_port": 70000}, {}, "probe_port", "70000", "0 to 65535"),
        ({"preserve_job_records": "sometimes"}, {}, "preserve_job_records", "'sometimes'", "never"),
        ({"database_pool_size": 1}, {}, "database_pool_size", "1", "at least 2"),
        ({"max_cache": -5}, {}, "max_cache", "-5", "0 or more"),
        ({"idle_timeout": -1}, {}, "idle_timeout", "-1", "positive"),
        ({"schema": "my-schema"}, {}, "schema", "'my-schema'", "identifier"),
        ({"sweep_interval": 0}, {}, "sweep_interval", "0", "positive"),
        ({"cleanup_interval_jobs": -2}, {}, "cleanup_interval_jobs", "-2", "-1"),
        (
            {"process_stale_seconds": 60, "process_expired_seconds": 30},
            {},
            "process_expired_seconds",
            "30",
            "longer than process_stale_seconds",
        ),
    ],
)
def test_invalid_values_name_the_option_the_value_and_what_is_allowed(
    overrides: dict[str, object], environ: dict[str, str], option: str, value: str, allowed: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ=environ, **overrides)
    message = str(raised.value)
    assert option in message
    assert env_name(option) in message
    assert value in message
    assert allowed in message


def test_a_malformed_queue_string_is_a_queue_string_error_naming_the_option() -> None:
    with pytest.raises(QueueStringError, match=r"queues \(GOODJOB_QUEUES\) = 'mail:x'"):
        Settings.load(environ={}, queues="mail:x")
    assert issubclass(QueueStringError, ConfigurationError)


def test_unknown_settings_are_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting 'max_thread'; did you mean"):
        Settings.load(environ={}, max_thread=3)


def test_settings_are_frozen_and_replace_validates() -> None:
    s = Settings.load(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_threads = 3  # type: ignore[misc]
    assert s.replace(max_threads="4").max_threads == 4
    with pytest.raises(ConfigurationError, match="max_threads"):
        s.replace(max_threads=0)


def test_every_setting_has_help_and_an_environment_variable() -> None:
    for field in dataclasses.fields(Settings):
        assert field.metadata["help"], field.name
        assert env_name(field.name) == "GOODJOB_" + field.name.upper()


def test_the_readme_reference_table_matches_the_settings() -> None:
    root = Path(__file__).resolve().parents[2]
    generated = runpy.run_path(str(root / "scripts" / "config_reference.py"))["table"]()
    readme = (root / "README.md").read_text()
    start = readme.index("<!-- generated by scripts/config_reference.py")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of generated table -->")
    assert readme[start:end] == generated, "run: python scripts/config_reference.py"
