"""Waiting for a task's final record, written once for every backend and both flavours.

``wait_for_final`` is a generator: it yields what it needs done (``FETCH`` a record, or
``PAUSE`` until the backend reports a change or the time runs out) and receives the answer. The
sync client drives it with blocking calls, the async transport with awaits; the decisions (when to
stop, what to return) live only here.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from qtasks.core.status import FINAL_STATUSES

FETCH = "fetch"
PAUSE = "pause"

Step = tuple[str, Any]


def wait_for_final(
    uuid: str, timeout: float | None, final: frozenset[str] = FINAL_STATUSES
) -> Generator[Step, Any, Any]:
    """Yield ``(FETCH, uuid)`` -> row|None and ``(PAUSE, seconds)`` -> None; return row or None.

    Returns ``None`` when the task is unknown or when ``timeout`` passes before it finishes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = yield (FETCH, uuid)
        if row is None:
            return None
        if row["status"] in final:
            return row
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        yield (PAUSE, 1.0 if remaining is None else min(remaining, 1.0))
