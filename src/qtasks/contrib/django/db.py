"""Database-connection hygiene for tasks that use the Django ORM, with nothing to remember.

Django closes stale connections around each HTTP request (``close_old_connections`` on
request_started / request_finished). A worker has no requests, so without this a connection
that the server dropped, or that outlived ``CONN_MAX_AGE``, breaks every later task on that
thread. When Django is set up in a worker process, the worker calls ``close_old_connections``
before and after every task, in the thread that runs the task (connections are per thread):
the pool thread of a plain function, and asgiref's ORM thread for an ``async def`` task. At
shutdown it closes the connections of every thread it used.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("qtasks.contrib.django")


def django_ready() -> bool:
    """Whether this process has a configured Django with databases (without importing it)."""
    if "django" not in sys.modules:
        return False
    from django.apps import apps
    from django.conf import settings

    return apps.ready and bool(getattr(settings, "DATABASES", None))


class DatabaseHygiene:
    def __init__(self) -> None:
        from django.db import close_old_connections, connections

        self._close_old = close_old_connections
        self._connections = connections
        self._threads: set[int] = set()
        self._lock = threading.Lock()

    def wrap(self, call: Callable[[], Any]) -> Callable[[], Any]:
        """``call`` with stale connections closed before and after it (same thread)."""

        def run() -> Any:
            with self._lock:
                self._threads.add(threading.get_ident())
            self._close_old()
            try:
                return call()
            finally:
                self._close_old()

        return run

    async def before_async(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self._close_old)()

    after_async = before_async

    def close_in_pool(self, pool: Any, timeout: float = 5.0) -> None:
        """Close every connection of the pool threads that ran tasks (each in its own thread)."""
        with self._lock:
            count = len(self._threads)
        if not count:
            return
        barrier = threading.Barrier(count, timeout=timeout)

        def close() -> None:
            if threading.get_ident() in self._threads:
                self._connections.close_all()
            barrier.wait()  # hold this thread so the others go to different threads

        futures = [pool.submit(close) for _ in range(count)]
        for future in futures:
            try:
                future.result(timeout + 1)
            except Exception:
                log.warning("could not close the database connections of every task thread")
                break

    async def close_async(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self._connections.close_all)()
