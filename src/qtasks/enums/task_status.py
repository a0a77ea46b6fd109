"""QTasks import path ``qtasks.enums.task_status.TaskStatusEnum``."""

from qtasks.core.status import TaskStatusEnum

__all__ = ["TaskStatusEnum"]
