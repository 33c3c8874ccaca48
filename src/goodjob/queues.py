"""GoodJob's queue strings: which queues a thread pool serves, and how many threads it has.

``"*"`` every queue; ``"a,b"`` only these; ``"-a,b"`` all but these; ``"+a,b"`` these, in
this order (drain ``a`` before ``b``); ``";"`` separates pools; ``":N"`` gives a pool N threads.
Example: ``"mail:2;+urgent,default:5;*"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from goodjob.errors import ConfigurationError, QueueStringError

Mode = Literal["all", "include", "exclude", "ordered"]
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\Z")  # \Z: "$" would accept a trailing newline


def check_queue_name(queue: object) -> str:
    """``queue`` if a queue string can name it; a ConfigurationError otherwise (issue 11: a job
    on a queue that no ``--queues`` selection can name runs only under ``*``)."""
    if not isinstance(queue, str) or not _NAME.match(queue) or queue[0] in "+-":
        raise ConfigurationError(
            f"queue name {queue!r} is not valid: use letters, digits, '_', '-' or '.',"
            " not starting with '+' or '-'"
        )
    return queue


@dataclass(frozen=True)
class QueueSelection:
    """The queues one pool claims from."""

    mode: Mode = "all"
    names: tuple[str, ...] = ()

    def serves(self, queue: str) -> bool:
        """Whether a job on ``queue`` is for this pool (used to route NOTIFY wake-ups)."""
        if self.mode == "all":
            return True
        if self.mode == "exclude":
            return queue not in self.names
        return queue in self.names

    def __str__(self) -> str:
        prefix = {"all": "", "include": "", "exclude": "-", "ordered": "+"}[self.mode]
        return "*" if self.mode == "all" else prefix + ",".join(self.names)


@dataclass(frozen=True)
class PoolSpec:
    """One thread pool: its queues and its thread count."""

    queues: QueueSelection
    threads: int


def parse_selection(text: str) -> QueueSelection:
    """Parse one pool's queue part (``"+a,b"``); raises QueueStringError quoting it."""
    text = text.strip()
    if text == "*":
        return QueueSelection()
    mode: Mode = "include"
    body = text
    if text[:1] in "+-":
        mode = "ordered" if text[0] == "+" else "exclude"
        body = text[1:]
    names = tuple(name.strip() for name in body.split(","))
    for name in names:
        if name == "*":
            raise QueueStringError(f'"{text}": "*" cannot be combined with other queues')
        if not name:
            raise QueueStringError(f'"{text}": empty queue name')
        if not _NAME.match(name):
            raise QueueStringError(
                f'"{text}": queue name "{name}" may only hold letters, digits, "_", "-" and "."'
            )
    return QueueSelection(mode, names)


def parse(text: str, default_threads: int) -> list[PoolSpec]:
    """Parse a whole queue string into pools; raises QueueStringError naming the bad part."""
    if not text or not text.strip():
        raise QueueStringError('"": the queue string is empty; use "*" for every queue')
    pools = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            raise QueueStringError(f'"{text}": empty pool between ";"')
        queues, sep, count = part.partition(":")
        threads = default_threads
        if sep:
            if not count.strip().isdigit():
                raise QueueStringError(f'"{part}": thread count must be a whole number')
            threads = int(count)
            if threads < 1:
                raise QueueStringError(f'"{part}": thread count must be at least 1')
        if not queues.strip():
            raise QueueStringError(f'"{part}": no queue before ":"')
        pools.append(PoolSpec(parse_selection(queues), threads))
    return pools
