"""Fire-and-forget Redis commands (QTasks' command queues), for any redis-py client.

``queue.execute("hset", "key", mapping={...})`` returns at once; the command runs later on a
background thread (sync) or task (asyncio), one at a time, in the order given. A command that
fails is logged with its traceback; nothing reports it to the caller, which is the point of
the helper: use the client directly when the outcome matters. ``join()`` (not in QTasks) waits
until every command queued so far has run, e.g. before a process exits.

Instead of a client, the queues take the qtasks Redis backend of an app (``app.broker`` with
``broker_url="redis://..."``): they then use a client of that server (cluster and Sentinel
included), so the commands reach the Redis the app uses.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

log = logging.getLogger("qtasks.contrib.redis")


def _client(redis: Any, asyncio_: bool) -> Any:
    """``redis`` itself, or a client of the server a qtasks Redis backend uses."""
    from qtasks.backends.redis import RedisBackend

    if isinstance(redis, RedisBackend):
        from qtasks.backends.redis.connection import make_client

        return make_client(redis.settings, asyncio_=asyncio_)
    return redis


class SyncRedisCommandQueue:
    """For a blocking ``redis.Redis`` client."""

    def __init__(self, redis: Any, log: Any = None) -> None:
        self.redis = _client(redis, asyncio_=False)
        self.log = log or globals()["log"]
        self._queue: queue.Queue[tuple[str, tuple[Any, ...], dict[str, Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def execute(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        """Queue ``redis.<cmd>(*args, **kwargs)``."""
        getattr(self.redis, cmd)  # a misspelt command fails here, in the caller
        self._queue.put((cmd, args, kwargs))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="qtasks-redis-commands")
                self._thread.start()

    def _run(self) -> None:
        while True:
            cmd, args, kwargs = self._queue.get()
            try:
                getattr(self.redis, cmd)(*args, **kwargs)
            except Exception:
                self.log.exception("queued Redis command %s failed", cmd)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every command queued so far has run."""
        self._queue.join()


class AsyncRedisCommandQueue:
    """For a ``redis.asyncio.Redis`` client; ``execute`` is called from its event loop."""

    def __init__(self, redis: Any, log: Any = None) -> None:
        self.redis = _client(redis, asyncio_=True)
        self.log = log or globals()["log"]
        self._queue: asyncio.Queue[tuple[str, tuple[Any, ...], dict[str, Any]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def execute(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        """Queue ``await redis.<cmd>(*args, **kwargs)``."""
        getattr(self.redis, cmd)
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait((cmd, args, kwargs))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))

    async def _run(self, commands: asyncio.Queue[tuple[str, tuple[Any, ...], dict[str, Any]]],
                   ) -> None:
        while True:
            cmd, args, kwargs = await commands.get()
            try:
                await getattr(self.redis, cmd)(*args, **kwargs)
            except Exception:
                self.log.exception("queued Redis command %s failed", cmd)
            finally:
                commands.task_done()

    async def join(self) -> None:
        """Wait until every command queued so far has run."""
        if self._queue is not None:
            await self._queue.join()


__all__ = ["AsyncRedisCommandQueue", "SyncRedisCommandQueue"]
