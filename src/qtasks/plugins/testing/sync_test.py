"""QTasks import path ``qtasks.plugins.testing.sync_test``."""

from qtasks.compat.plugins import SyncTestPlugin

__all__ = ["SyncTestPlugin"]
