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


def test_a_job_due_now_by_a_rough_clock_reading_also_gets_a_timer() -> None:
    """The database's clock was read over a slow round trip (±0.5 s): a job that reads as due
    now may be due up to 0.5 s later, so besides the wake now a timer covers that moment."""
    cache = _cache(10, [])
    now = time.monotonic()
    cache.clock.measured(time.time() - 0.5, now - 1.0, now)  # a 1 s round trip: ±0.5 s
    assert cache.add("rough", time.time() - 0.1) is False  # woken now by the caller...
    assert [q for _, q in cache._heap] == ["rough"]  # ...and again within half a second
    assert cache.add("old", time.time() - 5) is False  # surely due: no timer
    assert len(cache) == 1
    precise = _cache(10, [])
    precise.clock.measured(time.time() - 0.001, now - 0.002, now)
    assert precise.add("exact", time.time() - 0.1) is False
    assert len(precise) == 0


def test_a_timer_waits_out_the_clock_readings_error() -> None:
    """A job due in a second, by a clock reading that may be 0.2 s off: its timer is set for
    the latest moment it can be due, so the claim it wakes finds it due."""
    cache = _cache(10, [])
    now = time.monotonic()
    cache.clock.measured(time.time() - 0.2, now - 0.4, now)
    assert cache.add("later", time.time() + 1.0) is True
    [(at, queue)] = cache._heap
    assert queue == "later"
    assert 1.2 <= at - time.monotonic() <= 1.25
