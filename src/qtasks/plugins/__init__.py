"""Plugins (``BasePlugin``, see ``qtasks.plugins.base``) and QTasks' import paths for
``Depends``, ``ScopeEnum``, the states and QTasks' built-in plugin classes. Retries, pydantic
arguments, dependencies and states are part of the qtasks worker (``qtasks.injection``), so
their plugin classes add nothing; the test plugins mark records (``qtasks.compat.plugins``).
"""

from typing import Any

from qtasks.compat.plugins import (
    AsyncDependsPlugin,
    AsyncPydanticWrapperPlugin,
    AsyncRetryPlugin,
    AsyncStatePlugin,
    AsyncTestPlugin,
    SyncDependsPlugin,
    SyncPydanticWrapperPlugin,
    SyncRetryPlugin,
    SyncStatePlugin,
    SyncTestPlugin,
)
from qtasks.injection import AsyncState, Depends, ScopeEnum, SyncState
from qtasks.plugins.base import BasePlugin


def __getattr__(name: str) -> Any:
    if name in ("AsyncgRPCPlugin", "SyncgRPCPlugin"):
        from qtasks.plugins.grpc import AsyncgRPCPlugin, SyncgRPCPlugin

        return {"AsyncgRPCPlugin": AsyncgRPCPlugin, "SyncgRPCPlugin": SyncgRPCPlugin}[name]
    # QTasks returned None here for any name; a typo should fail where it is made
    raise AttributeError(f"module 'qtasks.plugins' has no attribute {name!r}")


__all__ = [
    "AsyncDependsPlugin", "AsyncPydanticWrapperPlugin", "AsyncRetryPlugin", "AsyncState",
    "AsyncStatePlugin", "AsyncTestPlugin", "BasePlugin", "Depends", "ScopeEnum",
    "SyncDependsPlugin", "SyncPydanticWrapperPlugin", "SyncRetryPlugin", "SyncState",
    "SyncStatePlugin", "SyncTestPlugin",
]
