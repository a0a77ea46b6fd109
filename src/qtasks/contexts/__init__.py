"""QTasks import path ``qtasks.contexts``."""

from qtasks.context import AsyncContext, SyncContext

__all__ = ["AsyncContext", "SyncContext"]
