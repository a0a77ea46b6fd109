"""Plugins: objects called at named points ("triggers") of the app, the worker and the backend.

``app.add_plugin(plugin, trigger_names=None, component=None)`` registers ``plugin`` for those
trigger names (none: every trigger of the component, QTasks' ``"Globals"``). ``component`` is
``None`` (the app's ``qtasks_*`` and ``stats_*`` triggers), ``"worker"`` (``worker_*``,
``task_executor_*``, ``starter_*``), or ``"broker"`` / ``"storage"`` / ``"global_config"``
(the backend's ``broker_*`` / ``storage_*`` triggers; qtasks has one backend in place of those
three components). A trigger calls ``plugin.trigger(name, **kwargs)`` on each plugin registered
for it, in registration order; ``trigger`` may be a coroutine function.

A plugin returns ``None`` or a dict. Returned keys replace the matching keyword arguments for
the plugins after it, and the trigger's caller uses the merged result key by key: a plugin that
returns ``{"priority": 7}`` changes the priority and nothing else (QTasks also reset the
arguments). A plugin that raises is logged with its traceback and skipped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class BasePlugin:
    """Subclass it; either override ``trigger`` or fill ``self.handlers`` (name -> method)."""

    def __init__(self, name: str | None = None, *args: Any, **kwargs: Any) -> None:
        self.name = name or type(self).__name__
        self.handlers: dict[str, Callable[..., Any]] = getattr(self, "handlers", {})
        self.plugin_cache: dict[str, Any] = {}

    def trigger(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Called at trigger ``name``; the default dispatches to ``self.handlers[name]``."""
        handler = self.handlers.get(name)
        return None if handler is None else handler(*args, **kwargs)

    def start(self) -> Any:
        """Called when a worker of the app starts."""

    def stop(self) -> Any:
        """Called when a worker of the app stops."""


def is_async_result(value: Any) -> bool:
    return inspect.isawaitable(value)


__all__ = ["BasePlugin"]
