"""QTasks import path ``qtasks.stats.sync_stats``."""

from qtasks.stats import SyncStats

__all__ = ["SyncStats"]
