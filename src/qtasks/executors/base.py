"""QTasks import path ``qtasks.executors.base``."""

from qtasks.worker.task_executor import BaseTaskExecutor

__all__ = ["BaseTaskExecutor"]
