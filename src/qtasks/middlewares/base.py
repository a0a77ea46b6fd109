"""QTasks import path ``qtasks.middlewares.base``."""

from qtasks.middlewares import BaseMiddleware, TaskMiddleware

__all__ = ["BaseMiddleware", "TaskMiddleware"]
