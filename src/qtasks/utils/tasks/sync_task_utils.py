"""QTasks import path ``qtasks.utils.tasks.sync_task_utils.SyncTaskUtils``."""

from qtasks.chains import SyncChain, SyncTaskUtils

__all__ = ["SyncChain", "SyncTaskUtils"]
