"""Job ids: UUIDv7, time-ordered, so new rows land at the right edge of the primary key index."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of milliseconds, then a counter-and-random tail."""
    global _last
    with _lock:
        # Monotonic within this process even when several ids fall in one millisecond.
        now = max(time.time_ns() // 1_000_000 << 12, _last + 1)
        _last = now
    ms, seq = now >> 12, now & 0xFFF
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return uuid.UUID(int=value)
