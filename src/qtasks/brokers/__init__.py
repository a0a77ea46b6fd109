"""QTasks 1.7's broker classes, as thin constructors of qtasks backends (a compat shim).

QTasks users pass a Redis URL this way: ``QueueTasks(broker=AsyncRedisBroker(url=...))``. Here
that builds the one Redis backend (``qtasks.backends.redis``), which is broker and result store
at once; ``storage=`` (an ``AsyncRedisStorage``, or any backend) keeps the records elsewhere.
The other brokers of QTasks 1.7 have no qtasks backend yet: naming one raises an error that says
what to use instead.
"""

from __future__ import annotations

from typing import Any

from qtasks.backends.base import Backend
from qtasks.exceptions import NotYetSupported

DEFAULT_URL = "redis://localhost:6379/0"  # QTasks' own default


def _redis(name: str, url: str | None, storage: Backend | None) -> Backend:
    from qtasks.backends.redis import RedisBackend

    backend = RedisBackend(url or DEFAULT_URL, name=name)
    backend.paired_storage = storage
    return backend


def AsyncRedisBroker(name: str = "QueueTasks", url: str | None = None,
                     storage: Backend | None = None, queue_name: str = "task_queue",
                     log: Any = None, config: Any = None, events: Any = None) -> Backend:
    """The Redis backend for app ``name`` at ``url`` (QTasks' default
    ``redis://localhost:6379/0``). ``queue_name``, ``log``, ``config`` and ``events`` are
    accepted for QTasks code and not needed: queues are named per task, the app has the rest."""
    return _redis(name, url, storage)


def SyncRedisBroker(name: str = "QueueTasks", url: str | None = None,
                    storage: Backend | None = None, queue_name: str = "task_queue",
                    log: Any = None, config: Any = None, events: Any = None) -> Backend:
    """The same backend as :func:`AsyncRedisBroker`: one backend serves both flavours."""
    return _redis(name, url, storage)


_LATER = {
    "SyncRabbitMQBroker": "RabbitMQ", "AsyncRabbitMQBroker": "RabbitMQ",
    "SyncKafkaBroker": "Kafka", "AsyncKafkaBroker": "Kafka",
}
_NEVER = {"SyncSocketBroker", "AsyncSocketBroker"}


def _unavailable(name: str, why: str) -> Any:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise NotYetSupported(f"qtasks.brokers.{name}: {why}, see docs/migration.md")

    unavailable.__name__ = name
    return unavailable


def __getattr__(name: str) -> Any:
    if name in _LATER:
        return _unavailable(name, f"the {_LATER[name]} broker is not built yet; use "
                            "broker_url='redis://...' (or the embedded default) meanwhile")
    if name in _NEVER:
        return _unavailable(name, "qtasks has no socket broker of its own, by design (it took "
                            "unauthenticated tasks over TCP); run workers against Redis "
                            "instead: broker_url='redis://...'")
    raise AttributeError(f"module 'qtasks.brokers' has no attribute {name!r}")


__all__ = ["AsyncRedisBroker", "SyncRedisBroker"]
