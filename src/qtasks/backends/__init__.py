"""Backends: the contract in ``base``, the composition in ``transport``, one folder per
technology, and the registry that maps URL schemes to backend factories.

A factory is called as ``factory(url, name=app_name, config=config)`` and returns a
:class:`~qtasks.backends.base.Backend`. Built-in schemes are registered below; a third-party
package registers its own in the ``qtasks.backends`` entry-point group::

    [project.entry-points."qtasks.backends"]
    mq = "qtasks_mq:MqBackend"        # for mq://... URLs

``None`` as the URL means the embedded SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable

from qtasks.backends.base import Backend
from qtasks.backends.transport import Client, Transport
from qtasks.backends.urls import redact
from qtasks.core.config import QueueConfig
from qtasks.exceptions import BackendError

BackendFactory = Callable[..., Backend]

_factories: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make ``scheme://`` URLs create backends with ``factory``."""
    _factories[scheme.lower()] = factory


def _sqlite(url: str | None, *, name: str, config: QueueConfig) -> Backend:
    from qtasks.backends.sqlite import SqliteBackend
    from qtasks.backends.sqlite.settings import SqliteSettings

    settings = SqliteSettings.from_config(config)
    return SqliteBackend(url, name=name, poll_interval_max=settings.poll_interval_max,
                         poll_interval_idle=settings.poll_interval_idle)


def _memory(url: str | None, *, name: str, config: QueueConfig) -> Backend:
    from qtasks.backends.memory import MemoryBackend

    return MemoryBackend(url, name=name)


def _redis(url: str | None, *, name: str, config: QueueConfig) -> Backend:
    try:
        from qtasks.backends.redis import RedisBackend
    except ImportError as exc:
        raise BackendError(
            f"{redact(url or '')!r} needs the Redis client: pip install 'qtasks[redis]' ({exc})"
        ) from exc

    return RedisBackend(url or "redis://localhost:6379/0", name=name)


def _postgres(url: str | None, *, name: str, config: QueueConfig) -> Backend:
    try:
        from qtasks.backends.postgres import PostgresBackend
    except ImportError as exc:
        raise BackendError(
            f"{redact(url or '')!r} needs psycopg 3: pip install 'qtasks[postgres]' ({exc})"
        ) from exc

    return PostgresBackend(url or "postgresql://localhost/postgres", name=name)


register_backend("sqlite", _sqlite)
register_backend("postgresql", _postgres)
register_backend("postgres", _postgres)
register_backend("memory", _memory)
for _scheme in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster",
                "rediss+cluster"):
    register_backend(_scheme, _redis)


def _from_entry_points(scheme: str) -> BackendFactory | None:
    from importlib.metadata import entry_points  # only for an unknown scheme: it costs ~2 MB

    for point in entry_points(group="qtasks.backends"):
        if point.name.lower() == scheme:
            factory: BackendFactory = point.load()
            register_backend(scheme, factory)
            return factory
    return None


def backend_from_url(url: str | None, name: str, config: QueueConfig) -> Backend:
    """Create the backend that ``url`` names, for the app ``name``."""
    scheme = "sqlite" if url is None else url.partition("://")[0].lower() if "://" in url else ""
    factory = _factories.get(scheme) or (_from_entry_points(scheme) if scheme else None)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_factories))
        raise BackendError(
            f"no backend for {redact(url or '')!r}: known schemes are {known} (and those that "
            "installed packages register in the 'qtasks.backends' entry-point group)"
        )
    return factory(url, name=name, config=config)


def connect(broker: Backend, store: Backend | None = None) -> tuple[Transport, Client]:
    """The async transport and the blocking client for a broker and a store.

    Without ``store`` the broker's own technology keeps the records; a broker that cannot,
    raises :class:`BackendError` saying so.
    """
    if store is None or store is broker:
        if not broker.stores_records:
            raise BackendError(
                f"{broker.describe()} is a broker only and cannot keep task records; give a "
                "result store too: QueueTasks(broker_url=..., storage_url='redis://...') or "
                "QTASKS_STORAGE_URL"
            )
        fused_t, fused_c = broker.fused_transport(), broker.fused_client()
        if fused_t is not None and fused_c is not None:
            return fused_t, fused_c
        store = broker
    async_broker, sync_broker = broker.broker_roles()
    async_store, sync_store = store.store_roles()
    return Transport(async_broker, async_store), Client(sync_broker, sync_store)


__all__ = ["Backend", "BackendFactory", "Client", "Transport", "backend_from_url", "connect",
           "redact", "register_backend"]
