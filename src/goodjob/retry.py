"""Retry policies, in the spirit of ActiveJob's ``retry_on``.

A policy names which exceptions retry, how many attempts a job gets in all, and how long to wait
before each retry. With no policy a failed job is discarded with its error (GoodJob's default),
unless the app sets ``retry_on_unhandled_error``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from goodjob.errors import ConfigurationError

WaitSpec = float | Literal["exponential", "polynomial"] | Callable[[int], float]

DEFAULT_ATTEMPTS = 5
DEFAULT_WAIT: WaitSpec = 3.0  # seconds, ActiveJob's default
DEFAULT_JITTER = 0.15  # ActiveJob's default: up to 15% added to each wait
MAX_WAIT = 7 * 24 * 3600.0  # a wait never exceeds a week


@dataclass(frozen=True)
class Retry:
    """Retry on ``on`` up to ``attempts`` attempts in all, waiting ``wait`` between them.

    ``wait`` is seconds, ``"exponential"`` (2**attempt), ``"polynomial"`` (attempt**4 + 2,
    ActiveJob's ``polynomially_longer``) or a function of the attempt number (1 after the
    first failure). ``jitter`` adds up to that fraction of the wait at random.
    """

    attempts: int = DEFAULT_ATTEMPTS
    wait: WaitSpec = DEFAULT_WAIT
    jitter: float = DEFAULT_JITTER
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.on, type):
            object.__setattr__(self, "on", (self.on,))
        if self.attempts < 1:
            raise ConfigurationError(f"Retry attempts={self.attempts!r}: must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"Retry jitter={self.jitter!r}: must be between 0 and 1")
        if isinstance(self.wait, str) and self.wait not in ("exponential", "polynomial"):
            raise ConfigurationError(
                f"Retry wait={self.wait!r}: use seconds, 'exponential', 'polynomial' or a function"
            )
        if isinstance(self.wait, int | float) and self.wait < 0:
            raise ConfigurationError(f"Retry wait={self.wait!r}: must not be negative")

    def matches(self, error: BaseException) -> bool:
        """Whether this policy retries ``error`` (an instance of one of ``on``)."""
        return isinstance(error, self.on)

    def base_wait(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based), without jitter."""
        if self.wait == "exponential":
            return float(2**attempt)
        if self.wait == "polynomial":
            return float(attempt**4 + 2)
        if callable(self.wait):
            return float(self.wait(attempt))
        return float(self.wait)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``attempt``, with jitter, capped at a week."""
        base = self.base_wait(attempt)
        return min(base + base * self.jitter * rand(), MAX_WAIT)
