"""QTasks 1.7's storage classes, as thin constructors of the qtasks Redis backend (a compat
shim): ``QueueTasks(broker=..., storage=AsyncRedisStorage(url=...))`` keeps the task records
in that Redis. Records that QTasks 1.7 wrote there (hash ``<name>:<uuid>``) stay readable with
``app.get(uuid)``; new records use the qtasks layout (docs/design/redis.md)."""

from __future__ import annotations

from typing import Any

from qtasks.backends.base import Backend

DEFAULT_URL = "redis://localhost:6379/0"


def AsyncRedisStorage(name: str = "QueueTasks", url: str | None = None,
                      queue_process: str = "task_process", redis_connect: Any = None,
                      global_config: Any = None, log: Any = None, config: Any = None,
                      events: Any = None) -> Backend:
    """The Redis backend for app ``name`` at ``url``, used as the result store. A ready
    ``redis_connect`` client is not reused: qtasks opens its own connections from the URL."""
    from qtasks.backends.redis import RedisBackend

    return RedisBackend(url or DEFAULT_URL, name=name)


def SyncRedisStorage(name: str = "QueueTasks", url: str | None = None,
                     queue_process: str = "task_process", redis_connect: Any = None,
                     global_config: Any = None, log: Any = None, config: Any = None,
                     events: Any = None) -> Backend:
    """The same backend as :func:`AsyncRedisStorage`."""
    return AsyncRedisStorage(name, url)


__all__ = ["AsyncRedisStorage", "SyncRedisStorage"]
