"""Plugin registration and dispatch: who is called for a trigger, and how results merge.

Pure bookkeeping; calling the plugins (which may be coroutines) is left to
``qtasks.plugins.runner``, which feeds each result to :func:`absorb`.
"""

from __future__ import annotations

from typing import Any

COMPONENTS = (None, "worker", "broker", "storage", "global_config")
_PREFIXES = (
    ("qtasks_", None), ("stats_", None), ("worker_", "worker"), ("task_executor_", "worker"),
    ("starter_", "worker"), ("broker_", "broker"), ("storage_", "storage"),
    ("global_config_", "global_config"),
)
GLOBAL = "Globals"


def component_of(trigger: str) -> str | None:
    for prefix, component in _PREFIXES:
        if trigger.startswith(prefix):
            return component
    return None


class PluginRegistry:
    """Plugins by component and trigger name."""

    def __init__(self) -> None:
        self._by: dict[tuple[str | None, str], list[Any]] = {}
        self.plugins: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def add(self, plugin: Any, trigger_names: list[str] | None, component: str | None) -> None:
        if component not in COMPONENTS:
            raise KeyError(f"Unable to get component {component}!")
        for name in trigger_names or [GLOBAL]:
            self._by.setdefault((component, name), []).append(plugin)
        if plugin not in self.plugins:
            self.plugins.append(plugin)

    def for_trigger(self, trigger: str) -> list[Any]:
        component = component_of(trigger)
        return [*self._by.get((component, trigger), ()), *self._by.get((component, GLOBAL), ())]


def absorb(merged: dict[str, Any], kwargs: dict[str, Any], result: Any) -> None:
    """Take one plugin's result: its keys go into ``merged`` and replace the matching
    arguments for the plugins after it. ``None`` (or anything not a dict) changes nothing."""
    if isinstance(result, dict):
        merged.update(result)
        for key, value in result.items():
            if key in kwargs:
                kwargs[key] = value
