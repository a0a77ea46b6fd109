"""QTasks' plugin mixins, for classes of one's own that carry plugins the QTasks way.

A class that mixes one in gets ``plugins`` (trigger name -> plugins), ``add_plugin(plugin,
trigger_names=None)`` and ``_plugin_trigger(name, return_last=None, **kwargs)``, which calls
the plugins through qtasks' plugin runner: results merge key by key, and a plugin that raises
is logged with its traceback and skipped. ``return_last=True`` returns the merged dict;
otherwise the list of the plugins' non-empty results, as QTasks did.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

from qtasks.core.plugins import absorb
from qtasks.plugins.runner import _call, _failed, _run_coroutine


class _PluginMixin:
    plugins: dict[str, list[Any]]

    def add_plugin(self, plugin: Any, trigger_names: list[str] | None = None) -> None:
        if not hasattr(self, "plugins"):
            self.plugins = {}
        for name in trigger_names or ["Globals"]:
            self.plugins.setdefault(name, []).append(plugin)

    def _plugins_for(self, name: str) -> list[Any]:
        plugins = getattr(self, "plugins", {})
        return [*plugins.get(name, ()), *plugins.get("Globals", ())]

    def _steps(self, name: str, kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        """Call the plugins in order; yields each awaitable result to be resolved by the
        caller (``None`` back if it raised); returns ``(merged, results)``."""
        merged: dict[str, Any] = {}
        results = []
        for plugin in self._plugins_for(name):
            result = _call(plugin, name, kwargs)
            if inspect.isawaitable(result):
                result = yield plugin, result
            if result:
                results.append(result)
            absorb(merged, kwargs, result)
        return merged, results


class AsyncPluginMixin(_PluginMixin):
    async def _plugin_trigger(self, name: str, *, return_last: bool | None = None,
                              **kwargs: Any) -> Any:
        steps, answer = self._steps(name, kwargs), None
        try:
            while True:
                plugin, awaitable = steps.send(answer)
                try:
                    answer = await awaitable
                except Exception:
                    _failed(plugin, name)
                    answer = None
        except StopIteration as done:
            merged, results = done.value
        return merged if return_last else results


class SyncPluginMixin(_PluginMixin):
    def _plugin_trigger(self, name: str, *, return_last: bool | None = None,
                        **kwargs: Any) -> Any:
        steps, answer = self._steps(name, kwargs), None
        try:
            while True:
                plugin, awaitable = steps.send(answer)
                try:
                    answer = _run_coroutine(awaitable)
                except Exception:
                    _failed(plugin, name)
                    answer = None
        except StopIteration as done:
            merged, results = done.value
        return merged if return_last else results


__all__ = ["AsyncPluginMixin", "SyncPluginMixin"]
