"""QTasks' plugin mixins, for classes of one's own that carry plugins the QTasks way.

A class that mixes one in gets ``plugins`` (trigger name -> plugins), ``add_plugin(plugin,
trigger_names=None)`` and ``_plugin_trigger(name, return_last=None, **kwargs)``, which calls
the plugins through qtasks' plugin runner: results merge key by key, and a plugin that raises
is logged with its traceback and skipped. ``return_last=True`` returns the merged dict;
otherwise the list of the plugins' non-empty results, as QTasks did.
"""

from __future__ import annotations

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


class AsyncPluginMixin(_PluginMixin):
    async def _plugin_trigger(self, name: str, *, return_last: bool | None = None,
                              **kwargs: Any) -> Any:
        merged: dict[str, Any] = {}
        results = []
        for plugin in self._plugins_for(name):
            result = _call(plugin, name, kwargs)
            if hasattr(result, "__await__"):
                try:
                    result = await result
                except Exception:
                    _failed(plugin, name)
                    result = None
            if result:
                results.append(result)
            absorb(merged, kwargs, result)
        return merged if return_last else results


class SyncPluginMixin(_PluginMixin):
    def _plugin_trigger(self, name: str, *, return_last: bool | None = None,
                        **kwargs: Any) -> Any:
        merged: dict[str, Any] = {}
        results = []
        for plugin in self._plugins_for(name):
            result = _call(plugin, name, kwargs)
            if hasattr(result, "__await__"):
                try:
                    result = _run_coroutine(result)
                except Exception:
                    _failed(plugin, name)
                    result = None
            if result:
                results.append(result)
            absorb(merged, kwargs, result)
        return merged if return_last else results


__all__ = ["AsyncPluginMixin", "SyncPluginMixin"]
