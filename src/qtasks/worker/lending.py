"""Lending a worker slot while a task waits for another task's result.

A task that enqueues a child and waits for it (``self.add_task(..., timeout=...)``) holds one
of the worker's ``concurrency`` slots while doing nothing. When every slot holds such a parent,
no child can start and the worker deadlocks. So while a task waits, its slot is lent back: the
worker may start one more task. The waiting task takes the slot back when its wait ends (the
worker then runs one task over its concurrency until something finishes). At most
``MAX_LENT`` slots are lent at once, as each waiting plain function also occupies a thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Lender(Protocol):
    def lend(self) -> bool: ...

    def take_back(self) -> None: ...


MAX_LENT = 64
current_lender: contextvars.ContextVar[Lender | None] = contextvars.ContextVar(
    "qtasks_slot_lender", default=None
)


@contextmanager
def slot_lent() -> Iterator[None]:
    """Inside a running task: give its worker slot back for the duration of the block."""
    lender = current_lender.get()
    if lender is None or not lender.lend():
        yield
        return
    try:
        yield
    finally:
        lender.take_back()
