"""The task context: ``self.ctx`` on the handle an ``echo=True`` task receives.

The context is bound to the app of the worker running the task (QTasks left it unbound, so
most methods raised there). A plain function gets a :class:`SyncContext`, whose methods block;
an ``async def`` task gets an :class:`AsyncContext`, whose I/O methods are coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

from qtasks.exceptions import TaskCancelError, TaskPluginTriggerError

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks
    from qtasks.core.config import QueueConfig
    from qtasks.core.record import Task


class _Context:
    def __init__(self, app: BaseQueueTasks, task_name: str, task_uuid: UUID | None,
                 generate_handler: Any = None) -> None:
        self._app = app
        self.task_name = task_name
        self.task_uuid = task_uuid
        self.generate_handler = generate_handler
        self._metadata: Task | None = None
        self._worker_id: str | None = None  # the worker running the task; None inline
        self._extra: dict[str, Any] = {}  # integration fields merged into the final record
        self._envelope: Any = None  # the message as the worker decoded it

    def get_logger(self, name: str | None = None) -> logging.Logger:
        """A logger named after the app and ``name`` (default: the task's name); with a QTasks
        ``Logger`` as the app's ``log``, that logger under the sub-name ``name``."""
        app_log = self._app.log
        if hasattr(app_log, "with_subname"):
            return app_log.with_subname(name or self.task_name)
        return logging.getLogger(f"qtasks.{self._app.name}.{name or self.task_name}")

    def get_config(self) -> QueueConfig:
        """The app's ``QueueConfig``."""
        return self._app.config

    def get_component(self, name: str) -> Any:
        """An attribute of the app (``"config"``, ``"backend"``, ``"broker"``, ...), or None."""
        return getattr(self._app, name, None)

    def cancel(self, reason: str = "") -> NoReturn:
        """End the task with status ``cancel`` and this ``cancel_reason``."""
        raise TaskCancelError(reason or f"{self.task_name}.cancel")

    def plugin_error(self, **kwargs: Any) -> NoReturn:
        """Raise ``TaskPluginTriggerError`` for plugins to handle."""
        raise TaskPluginTriggerError(**kwargs)

    def _uuid(self) -> UUID:
        if self.task_uuid is None:
            raise ValueError("Task UUID is not set.")
        return self.task_uuid


class SyncContext(_Context):
    """Context of a plain-function task: blocking methods."""

    def get_metadata(self, cache: bool = True) -> Task | None:
        """This task's own record (cached after the first read unless ``cache=False``)."""
        if cache and self._metadata is not None:
            return self._metadata
        self._metadata = self._app.get_sync(self._uuid())
        return self._metadata

    def get_task(self, uuid: UUID | str) -> Task | None:
        """Another task's record."""
        return self._app.get_sync(uuid)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AsyncContext(_Context):
    """Context of an ``async def`` task: the I/O methods are coroutines."""

    async def get_metadata(self, cache: bool = True) -> Task | None:
        """This task's own record (cached after the first read unless ``cache=False``)."""
        if cache and self._metadata is not None:
            return self._metadata
        self._metadata = await self._app.get_async(self._uuid())
        return self._metadata

    async def get_task(self, uuid: UUID | str) -> Task | None:
        """Another task's record."""
        return await self._app.get_async(uuid)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


__all__ = ["AsyncContext", "SyncContext"]
