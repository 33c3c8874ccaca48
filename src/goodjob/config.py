"""Settings: one frozen object, built once per app.

Precedence, highest first: keyword arguments, ``GOODJOB_<NAME>`` environment variables, the
defaults below. Every setting is a dataclass field whose metadata carries its help text, so the CLI
derives one flag per setting (``max_threads`` → ``--max-threads``) from this module alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from goodjob.errors import ConfigurationError, QueueStringError
from goodjob.queues import parse as parse_queues

ENV_PREFIX = "GOODJOB_"

# Defaults, each with its unit. GoodJob's values unless a comment says why not.
DEFAULT_SCHEMA = "public"
DEFAULT_EMBEDDED_DATA_DIR = ".goodjob/postgres"
DEFAULT_DATABASE_POOL_SIZE = 5  # connections per process; jobs never hold one while they run
DEFAULT_QUEUES = "*"
DEFAULT_MAX_THREADS = 5
DEFAULT_POLL_INTERVAL = 10.0  # seconds; the safety net behind LISTEN/NOTIFY
DEFAULT_MAX_CACHE = 10_000  # future-job wake-up timers held in memory
DEFAULT_SHUTDOWN_TIMEOUT = -1.0  # seconds; negative waits for running jobs forever
DEFAULT_IDLE_TIMEOUT = 0.0  # seconds; 0 never exits for idleness
DEFAULT_STARTUP_WAIT = 60.0  # seconds goodjob start retries a database it cannot reach
MAX_STARTUP_WAIT = 86_400.0
DEFAULT_CLEANUP_PRESERVED_JOBS_BEFORE_SECONDS_AGO = 14 * 24 * 3600
DEFAULT_CLEANUP_INTERVAL_JOBS = 1_000
DEFAULT_CLEANUP_INTERVAL_SECONDS = 600.0
# Not GoodJob's 30 s and 5 minutes: a process that hangs, or whose host vanished, keeps its
# advisory lock, and only its heartbeat's expiry tells the others to re-run its jobs. 10 s and
# 40 s put that within 60 s of the hang while a live process misses three heartbeats first.
DEFAULT_PROCESS_STALE_SECONDS = 10.0  # heartbeat period
DEFAULT_PROCESS_EXPIRED_SECONDS = 40.0  # a process is dead once its heartbeat is this old
# Not in GoodJob: its sweep runs with the heartbeat (30 s). A one-second sweep is what makes
# recovery after kill -9 take seconds, and it is one small query per process per second.
DEFAULT_SWEEP_INTERVAL = 1.0
# Not in GoodJob: the largest encoded arguments (or result) one job may carry. Postgres takes up
# to 255 MB of jsonb, but every claim reads the arguments, and a queue row of megabytes is a
# mistake more often than a design (issue 11).
DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
# psycopg's own default: a statement run this many times on one connection is prepared on the
# server. -1 never prepares (a transaction-mode PgBouncer before 1.21 lends each transaction a
# different server connection, where psycopg's prepared statement does not exist; issue 19).
DEFAULT_PREPARE_THRESHOLD = 5

LockStrategy = Literal["skiplocked", "advisory", "hybrid"]
ExecutionMode = Literal["external", "async", "inline"]
PreserveJobRecords = Literal["always", "never", "on_unhandled_error"]

LOCK_STRATEGIES: tuple[str, ...] = typing.get_args(LockStrategy)
PRESERVE_CHOICES: tuple[str, ...] = typing.get_args(PreserveJobRecords)
EXECUTION_MODES: tuple[str, ...] = typing.get_args(ExecutionMode)
_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n", ""}


def _help(text: str, *, env: bool = True) -> dict[str, Any]:
    return {"help": text, "env": env}


@dataclass(frozen=True)
class Settings:
    """Every goodjob setting. Build with :meth:`Settings.load`, not the constructor."""

    database_url: str | None = field(
        default=None,
        metadata=_help(
            "Postgres URL; unset starts the embedded server (also read from DATABASE_URL)"
        ),
    )
    notify_database_url: str | None = field(
        default=None,
        metadata=_help(
            "direct Postgres URL the notifier LISTENs on when database_url is a pooler"
            " (PgBouncer); unset: database_url, or polling when database_pooler is on"
        ),
    )
    database_pooler: bool = field(
        default=False,
        metadata=_help(
            "database_url is a transaction-mode pooler (PgBouncer): no session settings, LISTEN"
            " only on notify_database_url; needs advisory_lock_heartbeat off and skiplocked"
        ),
    )
    prepare_threshold: int = field(
        default=DEFAULT_PREPARE_THRESHOLD,
        metadata=_help(
            "runs of a statement before psycopg prepares it on the server; -1 never"
            " (PgBouncer before 1.21, or without max_prepared_statements)"
        ),
    )
    schema: str = field(default=DEFAULT_SCHEMA, metadata=_help("Postgres schema of the tables"))
    embedded_data_dir: str = field(
        default=DEFAULT_EMBEDDED_DATA_DIR, metadata=_help("data folder of the embedded Postgres")
    )
    database_pool_size: int = field(
        default=DEFAULT_DATABASE_POOL_SIZE, metadata=_help("connections in each process's pool")
    )
    queues: str = field(
        default=DEFAULT_QUEUES, metadata=_help('queues and thread pools, e.g. "mail:2;*:5"')
    )
    max_threads: int = field(
        default=DEFAULT_MAX_THREADS, metadata=_help("threads per pool that sets no :N")
    )
    poll_interval: float = field(
        default=DEFAULT_POLL_INTERVAL, metadata=_help("seconds between polls; -1 disables polling")
    )
    max_cache: int = field(
        default=DEFAULT_MAX_CACHE, metadata=_help("future jobs whose start time is kept in memory")
    )
    shutdown_timeout: float = field(
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metadata=_help("seconds to let running jobs finish on shutdown; -1 waits forever"),
    )
    idle_timeout: float = field(
        default=DEFAULT_IDLE_TIMEOUT, metadata=_help("exit after this many idle seconds; 0 never")
    )
    startup_wait: float = field(
        default=DEFAULT_STARTUP_WAIT,
        metadata=_help(
            "seconds goodjob start keeps retrying a database it cannot reach before giving up;"
            " 0 fails at once"
        ),
    )
    enable_cron: bool = field(
        default=False, metadata=_help("enqueue the runs of the app's cron entries")
    )
    cron_graceful_restart_period: float | None = field(
        default=None,
        metadata=_help(
            "seconds: at start, enqueue cron runs missed within this period (unset: none)"
        ),
    )
    execution_mode: ExecutionMode = field(
        default="external",
        metadata=_help(
            "external (workers run by goodjob start), async (a worker inside this process,"
            " started by gj.start()) or inline (jobs run when enqueued; for tests)"
        ),
    )
    probe_port: int | None = field(
        default=None, metadata=_help("port of the HTTP health probe server")
    )
    enable_metrics: bool = field(
        default=False,
        metadata=_help(
            "count Prometheus metrics and serve them on the probe server's /metrics"
            " (needs goodjob[prometheus])"
        ),
    )
    probe_host: str = field(
        default="0.0.0.0",
        metadata=_help(
            "address the probe server listens on; every interface by default, as orchestrators"
            " such as Kubernetes probe the pod IP (127.0.0.1 keeps it local)"
        ),
    )
    preserve_job_records: PreserveJobRecords = field(
        default="always",
        metadata=_help("keep finished jobs: always, never or on_unhandled_error"),
    )
    retry_on_unhandled_error: bool = field(
        default=False, metadata=_help("retry jobs whose error no retry policy handles")
    )
    max_payload_bytes: int = field(
        default=DEFAULT_MAX_PAYLOAD_BYTES,
        metadata=_help("largest JSON encoding of one job's arguments, or of its result, in bytes"),
    )
    cleanup_preserved_jobs_before_seconds_ago: float = field(
        default=DEFAULT_CLEANUP_PRESERVED_JOBS_BEFORE_SECONDS_AGO,
        metadata=_help("age in seconds after which finished jobs are deleted"),
    )
    cleanup_interval_jobs: int = field(
        default=DEFAULT_CLEANUP_INTERVAL_JOBS,
        metadata=_help("clean up after this many jobs; 0 disables, -1 after every job"),
    )
    cleanup_interval_seconds: float = field(
        default=DEFAULT_CLEANUP_INTERVAL_SECONDS,
        metadata=_help("clean up after this many seconds; 0 disables, -1 after every job"),
    )
    cleanup_discarded_jobs: bool = field(
        default=True, metadata=_help("clean up discarded jobs as well as succeeded ones")
    )
    enable_listen_notify: bool = field(
        default=True, metadata=_help("wake workers with LISTEN/NOTIFY (off for PgBouncer)")
    )
    lock_strategy: LockStrategy = field(
        default="skiplocked", metadata=_help("how jobs are claimed: skiplocked, advisory or hybrid")
    )
    advisory_lock_heartbeat: bool = field(
        default=True,
        metadata=_help("hold the process row under a session advisory lock (off for PgBouncer)"),
    )
    process_stale_seconds: float = field(
        default=DEFAULT_PROCESS_STALE_SECONDS, metadata=_help("seconds between heartbeats")
    )
    process_expired_seconds: float = field(
        default=DEFAULT_PROCESS_EXPIRED_SECONDS,
        metadata=_help("seconds without heartbeat after which a process is dead, lock or not"),
    )
    sweep_interval: float = field(
        default=DEFAULT_SWEEP_INTERVAL,
        metadata=_help("seconds between sweeps for dead processes and their jobs"),
    )

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from keyword arguments, then ``GOODJOB_*`` variables, then defaults."""
        environ = os.environ if environ is None else environ
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigurationError(
                f"unknown setting {unknown[0]!r}; {hint}known settings: {', '.join(sorted(names))}"
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides and overrides[f.name] is not None:
                values[f.name] = coerce(f.name, overrides[f.name])
            elif (raw := environ.get(ENV_PREFIX + f.name.upper())) is not None:
                values[f.name] = coerce(f.name, raw)
            elif f.name == "database_url" and environ.get("DATABASE_URL"):
                values[f.name] = environ["DATABASE_URL"]
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated like the original)."""
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in changes.items()})


def env_name(setting: str) -> str:
    """The environment variable that sets ``setting``."""
    return ENV_PREFIX + setting.upper()


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def coerce(name: str, value: Any) -> Any:
    """Turn ``value`` (often a string from the environment or CLI) into the setting's type."""
    kind = _field_types()[name]
    optional = False
    if isinstance(kind, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional, kind = True, args[0]
    if optional and (value is None or (isinstance(value, str) and value.strip() == "")):
        return None
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # issue 11: an interval of NaN or infinity
                raise ValueError
            return number
        if name == "preserve_job_records" and isinstance(value, bool):
            return "always" if value else "never"
        if name == "preserve_job_records" and str(value).lower() in _TRUE | _FALSE:
            return "always" if str(value).lower() in _TRUE else "never"
        return str(value) if name in ("database_url", "notify_database_url") else str(value).strip()
    except (TypeError, ValueError):
        wanted = {
            bool: "true or false",
            int: "a whole number",
            float: "a number, not NaN or infinity",
        }.get(kind, "text")
        raise ConfigurationError(
            f"{name} ({env_name(name)}) = {value!r} is not valid: expected {wanted}"
        ) from None


def _validate(s: Settings) -> None:
    def bad(name: str, allowed: str) -> ConfigurationError:
        return ConfigurationError(
            f"{name} ({env_name(name)}) = {getattr(s, name)!r} is not valid: {allowed}"
        )

    if s.database_pool_size < 2:
        raise bad("database_pool_size", "must be at least 2")
    if s.max_threads < 1:
        raise bad("max_threads", "must be a whole number of at least 1")
    if not (s.poll_interval > 0 or s.poll_interval == -1):
        raise bad("poll_interval", "must be a positive number of seconds, or -1 to disable")
    if s.prepare_threshold < -1:
        raise bad("prepare_threshold", "must be -1 (never prepare), 0 or more")
    if s.database_pooler and s.advisory_lock_heartbeat:
        raise bad(
            "advisory_lock_heartbeat",
            "must be false with database_pooler: a transaction-mode pooler drops session"
            " advisory locks, so liveness goes by heartbeat",
        )
    if s.database_pooler and s.lock_strategy != "skiplocked":
        raise bad(
            "lock_strategy",
            "must be skiplocked with database_pooler: the advisory strategies hold session locks",
        )
    if s.max_payload_bytes < 1_000:
        raise bad("max_payload_bytes", "must be at least 1000 bytes")
    if s.max_cache < 0:
        raise bad("max_cache", "must be 0 or more")
    if s.idle_timeout < 0:
        raise bad("idle_timeout", "must be 0 (never) or a positive number of seconds")
    if not 0 <= s.startup_wait <= MAX_STARTUP_WAIT:
        raise bad("startup_wait", f"must be 0 to {MAX_STARTUP_WAIT:.0f} seconds")
    if s.probe_port is not None and not 0 <= s.probe_port <= 65535:
        raise bad("probe_port", "must be a TCP port from 0 to 65535")
    if not s.probe_host.strip():
        raise bad("probe_host", "must be an address to listen on, e.g. 0.0.0.0 or 127.0.0.1")
    if s.preserve_job_records not in PRESERVE_CHOICES:
        raise bad("preserve_job_records", f"must be one of {', '.join(PRESERVE_CHOICES)}")
    if s.execution_mode not in EXECUTION_MODES:
        raise bad("execution_mode", f"must be one of {', '.join(EXECUTION_MODES)}")
    if s.cron_graceful_restart_period is not None and s.cron_graceful_restart_period < 0:
        raise bad("cron_graceful_restart_period", "must be 0 or more seconds")
    if s.lock_strategy not in LOCK_STRATEGIES:
        raise bad("lock_strategy", f"must be one of {', '.join(LOCK_STRATEGIES)}")
    for name in ("process_stale_seconds", "process_expired_seconds", "sweep_interval"):
        if getattr(s, name) <= 0:
            raise bad(name, "must be a positive number of seconds")
    if s.process_expired_seconds <= s.process_stale_seconds:
        raise bad("process_expired_seconds", "must be longer than process_stale_seconds")
    if not s.schema.replace("_", "").isalnum():
        raise bad("schema", "must be a plain identifier (letters, digits, underscores)")
    for name in ("cleanup_interval_jobs", "cleanup_interval_seconds"):
        if getattr(s, name) < -1:
            raise bad(name, "must be -1 (after every job), 0 (never) or a positive number")
    if s.cleanup_preserved_jobs_before_seconds_ago < 0:
        raise bad("cleanup_preserved_jobs_before_seconds_ago", "must be 0 or more seconds")
    if not s.embedded_data_dir.strip():
        raise bad("embedded_data_dir", "must name a folder")
    try:
        parse_queues(s.queues, s.max_threads)
    except QueueStringError as exc:
        raise QueueStringError(
            f"queues ({env_name('queues')}) = {s.queues!r} is not valid: {exc}"
        ) from None
