"""Job ids: UUIDv7, time-ordered, so new rows land at the right edge of the primary key index."""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

# Random bytes are read from the OS this many at a time (512 ids' worth): one os.urandom
# syscall per id cost more than the rest of minting it (issue 5: enqueue throughput).
RANDOM_CHUNK = 4096  # bytes
_RANDOM_MASK = (1 << 62) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_UNKNOWN = uuid.SafeUUID.unknown  # read once: an enum member lookup costs 0.25 µs

_lock = threading.Lock()
_last = 0
_random = b""
_offset = 0


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` UUIDv7 ids (RFC 9562: 48 bits of milliseconds, then a counter-and-random tail),
    minted under one lock; monotonic within this process even when many fall in one millisecond."""
    global _last, _random, _offset
    if count <= 0:
        return []
    with _lock:
        first = time.time_ns() // 1_000_000 << 12
        if first <= _last:
            first = _last + 1
        _last = first + count - 1
        size = 8 * count
        if _offset + size > len(_random):
            _random, _offset = os.urandom(max(RANDOM_CHUNK, size)), 0
        start = _offset
        _offset = start + size
        tails = struct.unpack_from(f">{count}Q", _random, start)
    # uuid.UUID(int=...) checks its arguments, which cost more than the rest of minting an id
    # (issue 5: 1.0 -> 0.5 µs an id); these ints are valid UUIDv7s by construction. Names are
    # bound locally: global lookups in this loop cost another 0.2 µs an id.
    new, set_, cls, safe = object.__new__, object.__setattr__, uuid.UUID, _UNKNOWN
    version, mask = _VERSION_AND_VARIANT, _RANDOM_MASK
    made = []
    for now, tail in zip(range(first, first + count), tails, strict=True):
        job_id = new(cls)
        set_(job_id, "int", ((now >> 12) << 80) | ((now & 0xFFF) << 64) | version | (tail & mask))
        set_(job_id, "is_safe", safe)
        made.append(job_id)
    return made


def _after_fork_in_child() -> None:
    # The child must not reuse the parent's unread random bytes: with the same millisecond and
    # counter, parent and child would then mint the same id.
    global _lock, _random, _offset
    _lock = threading.Lock()
    _random, _offset = b"", 0


os.register_at_fork(after_in_child=_after_fork_in_child)
