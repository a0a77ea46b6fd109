"""The async face: ``from qtasks.asyncio import QueueTasks``."""

from qtasks.app import AsyncQueueTasks as QueueTasks

__all__ = ["QueueTasks"]
