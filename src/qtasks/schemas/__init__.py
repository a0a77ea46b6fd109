"""QTasks import paths for schemas (``qtasks.schemas.task.Task``)."""

from qtasks.core.definition import TaskDefinition as TaskExecSchema
from qtasks.core.record import Task

__all__ = ["Task", "TaskExecSchema"]
