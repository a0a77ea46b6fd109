"""The in-process worker behind eager mode and the test cases.

``ensure_worker(app)`` starts the real worker on a daemon thread (its own event loop, no signal
handlers) unless one already runs for the app; ``stop_worker(app)`` stops it and waits.

Eager mode (``config.eager``, ``QTASKS_EAGER=1``) is a layer of the ``enqueue`` hook
(``qtasks.core.hooks``), installed for the whole process when this module is imported: for an
app in eager mode it makes sure the in-process worker runs, and makes ``add_task`` wait for the
final record.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from qtasks.core.hooks import Enqueue, process_hooks
from qtasks.worker.worker import Worker

EAGER_WAIT = 60.0  # seconds an eager add_task waits for its task's final record
_lock = threading.Lock()


def ensure_worker(app: Any, concurrency: int | None = None,
                  queues: list[str] | None = None) -> Worker:
    with _lock:
        running = getattr(app, "_background", None)
        if running is not None and running[1].is_alive():
            return running[0]
        worker = Worker(app, concurrency=concurrency, install_signals=False, queues=queues)
        thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True,
                                  name=f"qtasks-worker-{app.name}")
        app._background = (worker, thread)
        app._worker = worker
        thread.start()
    deadline = time.monotonic() + 10
    while worker._loop is None and time.monotonic() < deadline:
        time.sleep(0.001)
    return worker


def stop_worker(app: Any, timeout: float = 30.0) -> None:
    with _lock:
        running = getattr(app, "_background", None)
        app._background = None
    if running is None:
        return
    worker, thread = running
    worker.request_stop()
    thread.join(timeout)
    if app._worker is worker:
        app._worker = None


def eager_layer(ctx: Enqueue, call_next: Any) -> Any:
    """``enqueue`` layer: in eager mode, run the task at once on the in-process worker.

    The worker is the real one, on a thread of its own, so an eager task goes through the same
    encoding, execution and storage as in production.
    """
    if ctx.app.config.eager:
        ensure_worker(ctx.app)
        if ctx.timeout is None:
            ctx.timeout = EAGER_WAIT
    return call_next()


process_hooks.add("enqueue", eager_layer)
