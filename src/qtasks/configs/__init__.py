"""QTasks import path ``qtasks.configs.QueueConfig``."""

from qtasks.core.config import QueueConfig

__all__ = ["QueueConfig"]
