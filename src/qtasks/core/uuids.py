"""Version 4 uuids for new tasks, cut from a pool of random bytes.

``uuid.uuid4()`` makes a system call (``os.urandom(16)``) for each uuid. A producer enqueuing
one task at a time makes one for each task, beside the round trip that enqueues it. Here one
``os.urandom`` call fills a pool of 256 uuids' bytes. The bytes come from the same source,
so the uuids are as random as ``uuid4``'s. A forked child starts a pool of its own, so it
never repeats its parent's uuids.

Threads share the pool without a lock. ``next`` on an ``itertools.count`` is atomic under
the GIL, so each slot of a pool goes to one caller. A thread that finds the pool used up puts
a new one in its place. A thread still holding the old one only takes slots of that one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from uuid import UUID

_SLOTS = 256  # uuids per pool


def _fresh() -> tuple[bytes, Iterator[int]]:
    return os.urandom(16 * _SLOTS), itertools.count(0, 16)


_POOL = [_fresh()]
os.register_at_fork(after_in_child=lambda: _POOL.__setitem__(0, _fresh()))


def uuid4() -> UUID:
    """A random (version 4) uuid, as ``uuid.uuid4()`` makes."""
    pool, offsets = _POOL[0]
    at = next(offsets)
    if at >= 16 * _SLOTS:
        pool, offsets = _POOL[0] = _fresh()
        at = next(offsets)
    return UUID(bytes=pool[at:at + 16], version=4)
