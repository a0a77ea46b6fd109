"""QTasks import path ``qtasks.stats.async_stats``."""

from qtasks.stats import AsyncStats

__all__ = ["AsyncStats"]
