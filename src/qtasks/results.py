"""Result waiters (``qtasks.results.SyncResult`` / ``AsyncResult``).

They wait on the backend's change notification, not on a one-second poll, and follow nothing
but the given uuid (retry chains arrive with retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from qtasks.core.apps import resolve_app

if TYPE_CHECKING:
    from qtasks.core.record import Task


class _Result:
    def __init__(self, uuid: UUID | str | None = None, app: Any = None, log: Any = None) -> None:
        if uuid is None:
            raise ValueError("Task UUID is not set.")
        self.uuid = uuid
        self._app = app
        self.log = log


class SyncResult(_Result):
    """``SyncResult(uuid, app).result(timeout)`` -> final ``Task`` or ``None``."""

    def result(self, timeout: float = 100) -> Task | None:
        return resolve_app(self._app).wait_sync(self.uuid, timeout)


class AsyncResult(_Result):
    """``await AsyncResult(uuid, app).result(timeout)`` -> final ``Task`` or ``None``."""

    async def result(self, timeout: float = 100) -> Task | None:
        return await resolve_app(self._app).wait_async(self.uuid, timeout)


__all__ = ["AsyncResult", "SyncResult"]
