"""The worker: one asyncio loop per process, a thread pool for plain functions."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from qtasks.core.config import LOOPS
from qtasks.worker.worker import Worker

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The event loop a worker runs on, by name (``QueueConfig.worker_event_loop``): its name,
    and a factory for ``asyncio.Runner`` (None: asyncio's default)."""
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}: choose one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("the uvloop event loop is not installed: pip install "
                               "'qtasks[uvloop]', or run with --loop asyncio") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run_worker(app: BaseQueueTasks, concurrency: int | None = None,
               grace: float | None = None, timers: bool = False,
               queues: list[str] | None = None, loop: str | None = None) -> None:
    """Run a worker in this process until it is stopped (the CLI and ``run_forever`` use this).

    If a hard stop left plain-function tasks running in their threads, their messages have
    already been handed back to the queue; waiting for those threads would let the same task run
    twice at once, so the process exits immediately with status 1.
    """
    from qtasks.core import apps as _state

    _state.app_main = app
    name, factory = loop_factory(loop or app.config.worker_event_loop)
    worker = Worker(app, concurrency=concurrency, grace=grace, timers=timers, queues=queues)
    worker.loop_name = name
    app._worker = worker
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(worker.run())
    finally:
        app._worker = None
    if worker.abandoned:
        logging.getLogger("qtasks.worker").warning(
            "exiting at once: %d task threads were still running", worker.abandoned)
        logging.shutdown()
        os._exit(1)


__all__ = ["LOOPS", "Worker", "loop_factory", "run_worker"]
