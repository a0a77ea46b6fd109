"""QTasks import path ``qtasks.base``: what both app flavours share."""

from qtasks.app import BaseQueueTasks

__all__ = ["BaseQueueTasks"]
