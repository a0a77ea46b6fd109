"""QTasks import path ``qtasks.enums``."""

from qtasks.core.status import TaskStatusEnum

__all__ = ["TaskStatusEnum"]
