"""QTasks import path ``qtasks.registries.sync_task_decorator.SyncTask``."""

from qtasks.handles import SyncTask

__all__ = ["SyncTask"]
