"""Pauses: queues, tasks and labels whose jobs no claim takes, kept in ``goodjob_settings``.

The claim statement reads them itself (``jobs_claim``), so a pause holds from the moment it is
committed, in every process, with nothing to propagate; running jobs finish. Unpausing wakes
every worker, since jobs may be waiting.
"""

from __future__ import annotations

from typing import Literal

from goodjob.db import CHANNEL, Database
from goodjob.errors import ConfigurationError

Kind = Literal["queue", "task", "label"]
KINDS: tuple[Kind, ...] = ("queue", "task", "label")


def _key(kind: str, name: object) -> str:
    if kind not in KINDS:
        raise ConfigurationError(f"cannot pause a {kind!r}: pause a queue, a task or a label")
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigurationError(f"{kind} {name!r} is not valid: name it with non-empty text")
    return f"pause:{kind}:{name}"


def pause(db: Database, kind: str, name: str) -> None:
    """Pause ``name`` (a queue, a task's stored name or a label)."""
    db.execute("pause_add", {"key": _key(kind, name)})


def unpause(db: Database, kind: str, name: str) -> bool:
    """Unpause it and wake the workers; False when it was not paused."""
    return bool(db.execute("pause_remove", {"key": _key(kind, name), "channel": CHANNEL}))


def paused(db: Database) -> dict[str, list[str]]:
    """What is paused, by kind: ``{"queue": [...], "task": [...], "label": [...]}``."""
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for row in db.execute("pauses_list"):
        found.setdefault(row["kind"], []).append(row["name"])
    return found
