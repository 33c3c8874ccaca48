"""The bench's rounds: blocks that split work evenly, turns taken in order, medians."""

from __future__ import annotations

import itertools

import pytest

from goodjob.bench import rounds


def test_split_count_spreads_the_remainder_over_the_first_parts() -> None:
    assert rounds.split_count(20_000, 3) == [6_667, 6_667, 6_666]
    assert rounds.split_count(2, 3) == [1, 1, 0]
    assert rounds.split_count(5, 1) == [5]


def test_split_keeps_order_and_every_item() -> None:
    chunks = [1_000] * 20
    blocks = rounds.split(chunks, 3)
    assert [len(b) for b in blocks] == [7, 7, 6]
    assert list(itertools.chain(*blocks)) == chunks
    assert rounds.split([200], 3) == [[200], [], []]


def test_alternate_takes_turns_and_times_each_call() -> None:
    calls: list[tuple[str, int]] = []
    ticks = itertools.count()
    first, second = rounds.alternate(
        lambda block: calls.append(("baseline", block)),
        lambda block: calls.append(("goodjob", block)),
        [10, 20],
        clock=lambda: float(next(ticks)),
    )
    assert calls == [("baseline", 10), ("goodjob", 10), ("baseline", 20), ("goodjob", 20)]
    assert first == second == [1.0, 1.0]


def _round(rate: float, *, once: bool = True, processes: int = 1) -> dict[str, object]:
    return {
        "jobs": 100,
        "jobs_per_s": rate,
        "seconds": 100 / rate,
        "executions": 100,
        "exactly_once": once,
        "worker_processes": processes,
        "config": "1xdefault threads",
    }


def test_combine_reports_the_median_and_every_round() -> None:
    combined = rounds.combine([_round(900.4), _round(1_200.0, processes=2), _round(1_000.0)])
    assert combined["jobs_per_s"] == 1_000.0
    assert combined["rounds"] == 3
    assert combined["rounds_jobs_per_s"] == [900, 1_200, 1_000]
    assert combined["executions"] == 300
    assert combined["worker_processes"] == 2
    assert combined["exactly_once"] is True
    assert combined["jobs"] == 100
    assert "seconds" not in combined


def test_combine_is_exactly_once_only_if_every_round_was() -> None:
    assert rounds.combine([_round(1.0), _round(2.0, once=False)])["exactly_once"] is False
    with pytest.raises(ValueError, match="no rounds"):
        rounds.combine([])
