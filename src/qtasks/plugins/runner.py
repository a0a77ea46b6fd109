"""Calling the plugins registered for a trigger, from async code or from blocking code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from typing import Any

from qtasks.core.plugins import PluginRegistry

log = logging.getLogger("qtasks.plugins")


def _failed(plugin: Any, name: str) -> None:
    log.exception("plugin %s failed at trigger %r; skipped", getattr(plugin, "name", plugin), name)


async def trigger_async(registry: PluginRegistry, name: str, **kwargs: Any) -> dict[str, Any]:
    """Call the plugins for ``name`` in order; return their results merged key by key."""
    if not registry:
        return {}
    steps = registry.steps(name, kwargs)
    try:
        plugin = next(steps)
        while True:
            try:
                result = plugin.trigger(name, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                _failed(plugin, name)
                result = None
            plugin = steps.send(result)
    except StopIteration as stop:
        return stop.value


def trigger_sync(registry: PluginRegistry, name: str, **kwargs: Any) -> dict[str, Any]:
    """As :func:`trigger_async`, blocking; a coroutine plugin runs on a loop of its own."""
    if not registry:
        return {}
    steps = registry.steps(name, kwargs)
    try:
        plugin = next(steps)
        while True:
            try:
                result = plugin.trigger(name, **kwargs)
                if inspect.isawaitable(result):
                    result = _run_coroutine(result)
            except Exception:
                _failed(plugin, name)
                result = None
            plugin = steps.send(result)
    except StopIteration as stop:
        return stop.value


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
