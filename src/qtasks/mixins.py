"""QTasks import path ``qtasks.mixins``."""

from qtasks.compat.mixins import AsyncPluginMixin, SyncPluginMixin

__all__ = ["AsyncPluginMixin", "SyncPluginMixin"]
