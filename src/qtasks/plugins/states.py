"""QTasks import path ``qtasks.plugins.states``."""

from qtasks.injection import AsyncState, SyncState

__all__ = ["AsyncState", "SyncState"]
