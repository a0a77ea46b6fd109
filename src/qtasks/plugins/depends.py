"""QTasks import path ``qtasks.plugins.depends``."""

from qtasks.injection import Depends, ScopeEnum

__all__ = ["Depends", "ScopeEnum"]
