"""Backends: the contract in ``base`` and one folder per technology.

:func:`backend_from_url` picks the backend for a URL. ``None`` means the embedded SQLite file.
"""

from __future__ import annotations

from qtasks.backends.base import AsyncTransport, Backend, SyncClient
from qtasks.core.config import QueueConfig
from qtasks.exceptions import BackendError


def redact(url: str) -> str:
    """The URL with any password replaced, fit for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def backend_from_url(url: str | None, name: str, config: QueueConfig) -> Backend:
    """Create the backend that ``url`` names, for the app ``name``."""
    scheme = (url or "sqlite").split("://", 1)[0].lower()
    if url is None or scheme in {"sqlite", "memory"}:
        from qtasks.backends.sqlite import SqliteBackend

        return SqliteBackend(
            url,
            name=name,
            max_deliveries=config.max_deliveries,
            poll_interval_max=config.poll_interval_max,
            poll_interval_idle=config.poll_interval_idle,
        )
    raise BackendError(
        f"no backend for {redact(url)!r}: this release ships the embedded SQLite backend "
        "(no URL, 'sqlite:///path.db') and 'memory://'."
    )


__all__ = ["AsyncTransport", "Backend", "SyncClient", "backend_from_url", "redact"]
