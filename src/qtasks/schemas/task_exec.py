"""QTasks import path ``qtasks.schemas.task_exec.TaskExecSchema``."""

from qtasks.core.definition import TaskDefinition as TaskExecSchema

__all__ = ["TaskExecSchema"]
