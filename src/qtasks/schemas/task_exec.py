"""QTasks import path ``qtasks.schemas.task_exec``."""

from qtasks.compat.schemas import TaskPrioritySchema
from qtasks.core.definition import TaskDefinition as TaskExecSchema

__all__ = ["TaskExecSchema", "TaskPrioritySchema"]
