"""The worker runtime: the Capsule and its parts (schedulers, notifier, poller, cache, cleanup)."""

from goodjob.runtime.capsule import Capsule

__all__ = ["Capsule"]
