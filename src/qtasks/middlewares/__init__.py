"""Task middlewares (``TaskMiddleware``): code that runs around every execution of a task.

They live in ``qtasks.core.middleware``; see there for the order they run in.
"""

from qtasks.core.middleware import BaseMiddleware, TaskMiddleware, TaskRun

__all__ = ["BaseMiddleware", "TaskMiddleware", "TaskRun"]
