"""QTasks import path ``qtasks.exc``."""

from qtasks.exceptions import TaskCancelError, TaskPluginTriggerError

__all__ = ["TaskCancelError", "TaskPluginTriggerError"]
