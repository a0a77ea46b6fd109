"""QTasks import path ``qtasks.workers``: worker objects that configure the qtasks worker."""

from qtasks.compat.components import AsyncWorker, SyncThreadWorker

__all__ = ["AsyncWorker", "SyncThreadWorker"]
