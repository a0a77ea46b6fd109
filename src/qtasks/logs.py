"""QTasks import path ``qtasks.logs``."""

from qtasks.compat.logs import Logger

__all__ = ["Logger"]
