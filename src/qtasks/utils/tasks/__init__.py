"""QTasks import paths for chains."""

from qtasks.chains import AsyncTaskUtils, SyncTaskUtils

__all__ = ["AsyncTaskUtils", "SyncTaskUtils"]
