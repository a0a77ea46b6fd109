"""QTasks import path ``qtasks.schemas.task_status``."""

from qtasks.compat.schemas import (
    BaseTaskStatusSchema,
    TaskStatusCancelSchema,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
)

__all__ = [
    "BaseTaskStatusSchema", "TaskStatusCancelSchema", "TaskStatusErrorSchema",
    "TaskStatusNewSchema", "TaskStatusProcessSchema", "TaskStatusSuccessSchema",
]
