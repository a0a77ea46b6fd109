"""QTasks import path ``qtasks.plugins.testing``."""

from qtasks.compat.plugins import AsyncTestPlugin, SyncTestPlugin

__all__ = ["AsyncTestPlugin", "SyncTestPlugin"]
