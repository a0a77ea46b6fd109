"""QTasks import paths for task handles (``qtasks.registries.SyncTask``) and the shared-task
registry."""

from qtasks.compat.registry import TaskRegistry
from qtasks.handles import AsyncTask, SyncTask

__all__ = ["AsyncTask", "SyncTask", "TaskRegistry"]
