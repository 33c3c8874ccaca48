"""The future-job cache: bounded, keeps the earliest timers, wakes the queue at its time."""

from __future__ import annotations

import threading
import time

from goodjob.runtime.poller import FutureCache
from tests.helpers import wait_until


def _cache(max_size: int, woken: list[tuple[str | None, float]]) -> FutureCache:
    lock = threading.Lock()

    def wake(queue: str | None) -> None:
        with lock:
            woken.append((queue, time.time()))

    return FutureCache(None, max_size, wake)  # add() and the timer never touch the database


def test_keeps_the_earliest_timers_up_to_max_cache() -> None:
    cache = _cache(2, [])
    now = time.time()
    cache.add("late", now + 300)
    cache.add("early", now + 100)
    cache.add("middle", now + 200)  # evicts "late"
    cache.add("later-still", now + 400)  # later than everything kept: dropped
    assert len(cache) == 2
    assert sorted(q for _, q in cache._heap) == ["early", "middle"]


def test_a_due_time_in_the_past_is_left_to_the_caller_to_wake_at_once() -> None:
    woken: list[tuple[str | None, float]] = []
    cache = _cache(10, woken)
    assert cache.add("now", time.time() - 1) is False
    assert cache.add("soon", time.time() + 10) is True
    assert len(cache) == 1


def test_timers_wake_their_queue_at_their_time() -> None:
    woken: list[tuple[str | None, float]] = []
    cache = _cache(10, woken)
    cache.start()
    try:
        at = time.time()
        cache.add("b", at + 0.4)
        cache.add("a", at + 0.2)
        wait_until(lambda: len(woken) == 2, timeout=5, interval=0.005)
    finally:
        cache.stop()
    assert [q for q, _ in woken] == ["a", "b"]
    assert abs(woken[0][1] - (at + 0.2)) < 0.1
    assert abs(woken[1][1] - (at + 0.4)) < 0.1


def test_max_cache_zero_keeps_nothing() -> None:
    cache = _cache(0, [])
    cache.add("q", time.time() + 10)
    assert len(cache) == 0
