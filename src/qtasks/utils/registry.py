"""QTasks import path ``qtasks.utils.registry``."""

from qtasks.shared import shared_task

__all__ = ["shared_task"]
