"""Cron entries: the ``cron`` option of an app, parsed and checked, and when each runs.

An entry is GoodJob's shape, as a dict::

    {"cron": "0 3 * * * Europe/Paris", "task": "myproject.jobs.report",  # or the Task
     "args": [1], "kwargs": {"full": True}, "set": {"queue": "reports", "priority": 5},
     "description": "Nightly report", "enabled_by_default": True}

Expressions have the five standard fields, or six with a leading seconds field (as GoodJob's:
``*/2 * * * * *``), or an alias (``@hourly``, ``@daily``...), and may end with an IANA time zone
(UTC when none). They are parsed and computed by ``cronsim``, which follows Debian's cron across
daylight saving time: a run in the hour skipped in spring happens when the clock jumps, and one
in the hour repeated in autumn happens once. No I/O here: the runtime's cron manager enqueues the
runs (``goodjob/runtime/cron.py``).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cronsim import CronSim, CronSimError

from goodjob.errors import ConfigurationError, SerializationError
from goodjob.options import TaskOptions
from goodjob.serialization import encode_arguments

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
KEYS = {"cron", "task", "args", "kwargs", "set", "description", "enabled_by_default"}
SET_OPTIONS = {"queue", "priority", "labels"}  # what an entry's "set" may choose
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


@dataclass(frozen=True)
class CronEntry:
    """One checked entry of the ``cron`` option."""

    key: str
    expression: str  # as written, time zone included
    task_name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # its "set": queue, priority, labels
    description: str = ""
    enabled_by_default: bool = True
    fields: str = "* * * * *"  # the cron fields, aliases expanded, without the zone
    zone: dt.tzinfo = dt.UTC

    def runs_after(self, moment: dt.datetime) -> Iterator[dt.datetime]:
        """The times of this entry's runs after ``moment`` (aware), in UTC, in order."""
        for at in CronSim(self.fields, moment.astimezone(self.zone)):
            yield at.astimezone(dt.UTC)

    def next_run(self, moment: dt.datetime) -> dt.datetime | None:
        """The first run after ``moment``; None when none comes in the next 50 years."""
        return next(self.runs_after(moment), None)


def parse_schedule(expression: object) -> tuple[str, dt.tzinfo]:
    """The cron fields (aliases expanded) and the time zone of ``expression``; ValueError
    saying what is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("the cron expression must be text, e.g. '0 3 * * *'")
    parts = expression.split()
    zone: dt.tzinfo = dt.UTC
    if len(parts) > 1 and _ZONE.match(parts[-1]) and not parts[-1].startswith("@"):
        try:
            zone = zoneinfo.ZoneInfo(parts[-1])
            parts = parts[:-1]
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            if "/" in parts[-1]:
                raise ValueError(f"unknown time zone {parts[-1]!r}") from None
    fields = " ".join(parts)
    fields = ALIASES.get(fields.lower(), fields)
    if fields.startswith("@"):
        raise ValueError(f"unknown alias {fields!r}: use one of {', '.join(sorted(ALIASES))}")
    try:
        CronSim(fields, dt.datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    return fields, zone


def parse_cron(config: Mapping[str, Any] | None) -> tuple[CronEntry, ...]:
    """Check every entry of the ``cron`` option; ConfigurationError naming the entry's key."""
    if config is None:
        return ()
    if not isinstance(config, Mapping):
        raise ConfigurationError(f"cron={config!r}: pass a dict of entries by key")
    return tuple(_entry(key, spec) for key, spec in config.items())


def _entry(key: object, spec: object) -> CronEntry:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ConfigurationError(f"cron entry key {key!r} is not valid: use text of 1-200 chars")

    def bad(what: str) -> ConfigurationError:
        return ConfigurationError(f"cron entry {key!r}: {what}")

    if not isinstance(spec, Mapping):
        raise bad("its value must be a dict with 'cron' and 'task'")
    unknown = set(spec) - KEYS
    if unknown:
        raise bad(f"unknown key {sorted(unknown)[0]!r}; keys are {', '.join(sorted(KEYS))}")
    for required in ("cron", "task"):
        if required not in spec:
            raise bad(f"it has no {required!r}")
    try:
        fields, zone = parse_schedule(spec["cron"])
    except ValueError as exc:
        raise bad(str(exc)) from None
    task = spec["task"]
    task_name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(task_name, str) or not task_name:
        raise bad(f"task={task!r}: pass a task or its stored name")
    args, kwargs = spec.get("args", ()), spec.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise bad("'args' must be a list and 'kwargs' a dict")
    try:
        encode_arguments(tuple(args), dict(kwargs))
    except SerializationError as exc:
        raise bad(f"its arguments cannot be stored: {exc}") from None
    options = dict(spec.get("set") or {})
    if set(options) - SET_OPTIONS:
        extra = sorted(set(options) - SET_OPTIONS)[0]
        raise bad(f"'set' may choose {', '.join(sorted(SET_OPTIONS))}, not {extra!r}")
    try:
        TaskOptions(**options)
    except ConfigurationError as exc:
        raise bad(str(exc)) from None
    description = spec.get("description", "")
    enabled = spec.get("enabled_by_default", True)
    if not isinstance(description, str) or not isinstance(enabled, bool):
        raise bad("'description' must be text and 'enabled_by_default' true or false")
    return CronEntry(
        key=key,
        expression=str(spec["cron"]),
        task_name=task_name,
        args=tuple(args),
        kwargs=dict(kwargs),
        options=options,
        description=description,
        enabled_by_default=enabled,
        fields=fields,
        zone=zone,
    )


@dataclass(frozen=True)
class CronStatus:
    """An entry as ``gj.cron_entries()`` and ``goodjob cron list`` show it."""

    key: str
    expression: str
    task_name: str
    description: str
    enabled: bool
    next_at: dt.datetime | None
    last_at: dt.datetime | None  # its last scheduled run enqueued (by any process)
