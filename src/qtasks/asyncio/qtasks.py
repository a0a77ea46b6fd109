"""QTasks import path ``qtasks.asyncio.qtasks.QueueTasks``."""

from qtasks.app import AsyncQueueTasks as QueueTasks

__all__ = ["QueueTasks"]
