"""QTasks import path ``qtasks.utils.tasks.async_task_utils.AsyncTaskUtils``."""

from qtasks.chains import AsyncChain, AsyncTaskUtils

__all__ = ["AsyncChain", "AsyncTaskUtils"]
