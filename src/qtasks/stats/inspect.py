"""QTasks import path ``qtasks.stats.inspect.InspectStats``."""

from qtasks.stats import InspectStats

__all__ = ["InspectStats"]
