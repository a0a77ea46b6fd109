"""QTasks import path ``qtasks.schemas.task.Task``."""

from qtasks.core.record import Task

__all__ = ["Task"]
