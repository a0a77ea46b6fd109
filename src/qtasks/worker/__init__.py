"""The worker: one asyncio loop per process, a thread pool for plain functions."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from qtasks.worker.worker import Worker

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks


def run_worker(app: BaseQueueTasks, concurrency: int | None = None,
               grace: float | None = None, timers: bool = False,
               queues: list[str] | None = None) -> None:
    """Run a worker in this process until it is stopped (the CLI and ``run_forever`` use this).

    If a hard stop left plain-function tasks running in their threads, their messages have
    already been handed back to the queue; waiting for those threads would let the same task run
    twice at once, so the process exits immediately with status 1.
    """
    from qtasks.core import apps as _state

    _state.app_main = app
    worker = Worker(app, concurrency=concurrency, grace=grace, timers=timers, queues=queues)
    app._worker = worker
    try:
        asyncio.run(worker.run())
    finally:
        app._worker = None
    if worker.abandoned:
        logging.getLogger("qtasks.worker").warning(
            "exiting at once: %d task threads were still running", worker.abandoned)
        logging.shutdown()
        os._exit(1)


__all__ = ["Worker", "run_worker"]
