"""QTasks import path ``qtasks.stats.inspect.InspectStats``."""

from qtasks.stats import InspectStats, UtilsInspectStats

__all__ = ["InspectStats", "UtilsInspectStats"]
