"""The event bus: ``@app.events.on.task_success()`` and friends.

One bus per app, shared by everything the app runs (QTasks gave each component its own, so
worker events never reached handlers registered on ``app.events``). Handlers receive keyword
arguments and may be plain functions or coroutine functions; they run on the worker's event
loop, so they should be quick. A handler that raises is logged with its traceback; the other
handlers and the task are not affected.

| event | keyword arguments |
|---|---|
| ``starting``, ``stopping`` | ``starter`` (None), ``worker``, ``broker`` (the backend) |
| ``worker_running``, ``worker_stopping`` | ``worker``, ``number`` (0) |
| ``task_running`` | ``worker``, ``task_func`` (the definition), ``task_broker`` (the message) |
| ``task_stopping`` | the same and ``model`` (the task's final record) |
| ``task_success``, ``task_error``, ``task_cancel`` | the same as ``task_stopping`` |
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("qtasks.events")

EVENT_NAMES = frozenset({
    "starting", "stopping", "worker_running", "worker_stopping", "task_running",
    "task_stopping", "task_success", "task_error", "task_cancel",
})


class _On:
    def __init__(self, bus: Events) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Callable[[], Callable[[Callable[..., Any]], Any]]:
        if name not in EVENT_NAMES:
            raise AttributeError(f"no event {name!r}; events: {', '.join(sorted(EVENT_NAMES))}")

        def factory() -> Callable[[Callable[..., Any]], Any]:
            def register(func: Callable[..., Any]) -> Callable[..., Any]:
                self._bus.add(name, func)
                return func

            return register

        return factory


class Events:
    """Handlers by event name. ``events.on.<name>()`` is a decorator that registers one."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self.on = _On(self)

    def add(self, name: str, func: Callable[..., Any]) -> None:
        if name not in EVENT_NAMES:
            raise ValueError(f"no event {name!r}; events: {', '.join(sorted(EVENT_NAMES))}")
        self._handlers.setdefault(name, []).append(func)

    def has(self, name: str) -> bool:
        return bool(self._handlers.get(name))

    @property
    def empty(self) -> bool:
        """No handler for any event (the worker then skips building their arguments)."""
        return not self._handlers

    async def fire(self, name: str, **kwargs: Any) -> None:
        """Call every handler of ``name``; errors are logged, never raised."""
        for handler in self._handlers.get(name, ()):
            try:
                result = handler(**kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("handler %r of event %r failed", handler, name)


AsyncEvents = Events
SyncEvents = Events

__all__ = ["EVENT_NAMES", "AsyncEvents", "Events", "SyncEvents"]
