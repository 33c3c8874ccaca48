"""Repeated measurements: work split into alternating blocks, rounds summarised by their median.

On a 2-core machine one drain of 20,000 jobs lasts about 2 s, and single runs of the same
scenario gave ratios from 0.75x to 1.15x. So every throughput figure is measured ``rounds``
times, the two sides take turns (baseline, goodjob, baseline, goodjob, ...) so that a change in
the machine's load hits both alike, and a drain reports the median of its rounds. No I/O here.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def split_count(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` whole numbers that differ by at most one, larger ones first."""
    size, extra = divmod(total, parts)
    return [size + (1 if i < extra else 0) for i in range(parts)]


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """``items`` in ``parts`` consecutive blocks (some empty when there are fewer items)."""
    blocks: list[list[T]] = []
    start = 0
    for size in split_count(len(items), parts):
        blocks.append(list(items[start : start + size]))
        start += size
    return blocks


def alternate(
    first: Callable[[T], object],
    second: Callable[[T], object],
    blocks: Iterable[T],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], list[float]]:
    """``first(block)`` then ``second(block)`` for every block; the seconds each call took."""
    times: tuple[list[float], list[float]] = ([], [])
    for block in blocks:
        for side, run in enumerate((first, second)):
            started = clock()
            run(block)
            times[side].append(clock() - started)
    return times


def whole(value: float) -> float:
    """``value`` rounded to an integer, unless it is infinite (a drain too quick to time)."""
    return round(value) if math.isfinite(value) else value


def combine(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One drain figure from its rounds: median jobs/s, and exactly once only if every round was.

    Each round is a drain's figures (``jobs_per_s``, ``exactly_once`` and optionally
    ``executions``, ``worker_processes``, ``worker_connections``); other keys (``jobs``,
    ``config``) are the same in every round and are taken from the first. A round's own
    ``seconds`` is dropped: ``rounds_jobs_per_s`` says the same for every round.
    """
    if not rounds:
        raise ValueError("no rounds to combine")
    rates = [float(r["jobs_per_s"]) for r in rounds]
    result = {k: v for k, v in rounds[0].items() if k != "seconds"}
    result["jobs_per_s"] = statistics.median(rates)
    result["rounds"] = len(rounds)
    result["rounds_jobs_per_s"] = [whole(rate) for rate in rates]
    result["exactly_once"] = all(r["exactly_once"] for r in rounds)
    if "executions" in result:
        result["executions"] = sum(r["executions"] for r in rounds)
    for key in ("worker_processes", "worker_connections"):
        if key in result:
            result[key] = max(r[key] for r in rounds)
    return result
