"""QTasks import path ``qtasks.configs.config.QueueConfig``."""

from qtasks.core.config import QueueConfig

__all__ = ["QueueConfig"]
