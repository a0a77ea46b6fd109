"""Calling the plugins registered for a trigger, from async code or from blocking code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from typing import Any

from qtasks.core.plugins import PluginRegistry, absorb

log = logging.getLogger("qtasks.plugins")


def _failed(plugin: Any, name: str) -> None:
    log.exception("plugin %s failed at trigger %r; skipped", getattr(plugin, "name", plugin), name)


def _call(plugin: Any, name: str, kwargs: dict[str, Any]) -> Any:
    """The plugin's result, an awaitable for a coroutine plugin, or None if it raised."""
    try:
        return plugin.trigger(name, **kwargs)
    except Exception:
        _failed(plugin, name)
        return None


async def trigger_async(registry: PluginRegistry, name: str, **kwargs: Any) -> dict[str, Any]:
    """Call the plugins for ``name`` in order; return their results merged key by key."""
    merged: dict[str, Any] = {}
    for plugin in registry.for_trigger(name) if registry else ():
        result = _call(plugin, name, kwargs)
        if inspect.isawaitable(result):
            try:
                result = await result
            except Exception:
                _failed(plugin, name)
                result = None
        absorb(merged, kwargs, result)
    return merged


def trigger_sync(registry: PluginRegistry, name: str, **kwargs: Any) -> dict[str, Any]:
    """As :func:`trigger_async`, blocking; a coroutine plugin runs on a loop of its own."""
    merged: dict[str, Any] = {}
    for plugin in registry.for_trigger(name) if registry else ():
        result = _call(plugin, name, kwargs)
        if inspect.isawaitable(result):
            try:
                result = _run_coroutine(result)
            except Exception:
                _failed(plugin, name)
                result = None
        absorb(merged, kwargs, result)
    return merged


def _run_coroutine(awaitable: Any) -> Any:
    async def wrap() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrap())
    # called from a thread that runs a loop: do not block it re-entrantly, use another thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wrap()).result()
