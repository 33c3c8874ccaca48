"""Retry policies: computed waits, jitter bounds, the cap, attempt limits, and classify()."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from goodjob.errors import ConfigurationError, JobInterrupted, JobTimeout
from goodjob.policy import OutcomePolicy
from goodjob.retry import MAX_WAIT, Retry


def test_fixed_wait_default_is_three_seconds_without_jitter() -> None:
    policy = Retry(jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [3.0, 3.0, 3.0]


def test_exponential_and_polynomial_waits() -> None:
    assert [Retry(wait="exponential").base_wait(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    # ActiveJob's polynomially_longer: attempt**4 + 2
    assert [Retry(wait="polynomial").base_wait(n) for n in (1, 2, 3)] == [3, 18, 83]
    assert Retry(wait=lambda n: n * 10).base_wait(3) == 30


def test_jitter_adds_up_to_its_fraction() -> None:
    policy = Retry(wait=100, jitter=0.15)
    assert policy.delay(1, rand=lambda: 0.0) == 100
    assert policy.delay(1, rand=lambda: 1.0) == pytest.approx(115)
    assert all(100 <= policy.delay(1) <= 115 for _ in range(200))


def test_wait_is_capped_at_a_week() -> None:
    assert Retry(wait="exponential", jitter=0).delay(40) == MAX_WAIT


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"jitter": 2}, {"wait": "sometimes"}, {"wait": -1}],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Retry(**kwargs)


def classify(policy: OutcomePolicy, task: Any, attempt: int, error: BaseException) -> Any:
    return policy.classify(task, attempt, error)


def _policy(default: Retry | None = None, retry_unhandled: bool = False) -> OutcomePolicy:
    return OutcomePolicy(default, retry_on_unhandled_error=retry_unhandled)


def _task(retry: Retry | None = None, discard_on: tuple[type[BaseException], ...] = ()) -> Any:
    return SimpleNamespace(retry=retry, discard_on=discard_on)


def test_classify_retries_until_attempts_then_stops() -> None:
    policy = Retry(attempts=3, wait=10, jitter=0, on=(ValueError,))
    task = _task(policy)
    assert classify(_policy(), task, 1, ValueError()) == ("retry", "retried", 10.0)
    assert classify(_policy(), task, 2, ValueError()) == ("retry", "retried", 10.0)
    assert classify(_policy(), task, 3, ValueError()) == ("discarded", "retry_stopped", 0.0)
    # An error the policy does not name is unhandled: no retry by default (GoodJob's default).
    assert classify(_policy(), task, 1, KeyError()) == ("discarded", "unhandled", 0.0)


def test_classify_discard_on_wins_and_global_default_applies() -> None:
    task = _task(Retry(on=(ValueError,)), discard_on=(ValueError,))
    assert classify(_policy(), task, 1, ValueError())[:2] == ("discarded", "discarded")
    default = Retry(attempts=2, wait="exponential", jitter=0)
    assert classify(_policy(default), _task(), 1, RuntimeError()) == ("retry", "retried", 2.0)
    assert classify(_policy(), _task(), 1, RuntimeError())[:2] == ("discarded", "unhandled")
    assert classify(_policy(), _task(Retry()), 1, JobTimeout("slow"))[:2] == ("retry", "retried")
    assert classify(_policy(), _task(), 1, JobInterrupted("stop"))[:2] == (
        "release",
        "interrupted",
    )
