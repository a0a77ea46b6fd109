"""Waiting for a task's final record, written once for every backend and both flavours.

``wait_for_final`` is a generator: it yields what it needs done (``FETCH`` a record, or
``PAUSE`` until the backend reports a change or the time runs out) and receives the answer. The
decisions (when to stop, what to return) live only there. ``run_sync`` and ``run_async`` drive
it with a backend's two I/O callables: ``fetch(uuid) -> row | None`` and ``pause(seconds)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from qtasks.core.status import FINAL_STATUSES

FETCH = "fetch"
PAUSE = "pause"

Step = tuple[str, Any]


def wait_for_final(
    uuid: str, timeout: float | None, final: frozenset[str] = FINAL_STATUSES,
    recheck: float = 1.0,
) -> Generator[Step, Any, Any]:
    """Yield ``(FETCH, uuid)`` -> row|None and ``(PAUSE, seconds)`` -> None; return row or None.

    Returns ``None`` when the task is unknown or when ``timeout`` passes before it finishes.
    A pause ends when the backend reports a change, and after ``recheck`` seconds at most: the
    record is then read again. A backend whose reports can be lost without its knowing reads
    again often (the default); one that notices every loss (and ends the pause for it) need
    only do so as a backstop.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = yield (FETCH, uuid)
        if row is None:
            return None
        if row["status"] in final:
            return row
        child = _retry_child(row)
        if child is not None:
            uuid = child  # a retried task: its outcome is the outcome of its last attempt
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        yield (PAUSE, recheck if remaining is None else min(remaining, recheck))


Steps = Generator[Step, Any, Any]


def run_sync(steps: Steps, fetch: Callable[[str], Any], pause: Callable[[float], object]) -> Any:
    """Drive ``steps`` with blocking calls; return its result."""
    answer: Any = None
    try:
        while True:
            kind, arg = steps.send(answer)
            if kind == FETCH:
                answer = fetch(arg)
            else:
                pause(arg)
                answer = None
    except StopIteration as stop:
        return stop.value


async def run_async(steps: Steps, fetch: Callable[[str], Awaitable[Any]],
                    pause: Callable[[float], Awaitable[object]]) -> Any:
    """Drive ``steps`` with awaits; return its result."""
    answer: Any = None
    try:
        while True:
            kind, arg = steps.send(answer)
            if kind == FETCH:
                answer = await fetch(arg)
            else:
                await pause(arg)
                answer = None
    except StopIteration as stop:
        return stop.value


def _retry_child(row: Any) -> str | None:
    if row["status"] != "retry" or not row.get("extra"):
        return None
    child = json.loads(row["extra"]).get("retry_child_uuid")
    return str(child) if child else None
