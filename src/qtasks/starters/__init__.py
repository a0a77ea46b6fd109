"""QTasks import path ``qtasks.starters``: starter objects that run the app's worker."""

from qtasks.compat.components import AsyncStarter, SyncStarter

__all__ = ["AsyncStarter", "SyncStarter"]
