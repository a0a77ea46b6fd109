"""QTasks import paths for task handles (``qtasks.registries.SyncTask``)."""

from qtasks.handles import AsyncTask, SyncTask

__all__ = ["AsyncTask", "SyncTask"]
