"""QTasks import path ``qtasks.configs``: ``QueueConfig``, and QTasks' Redis global-config
stores, which qtasks replaces with worker heartbeats in the backend (``app.ping()``,
``qtasks workers``)."""

from qtasks.compat import unavailable
from qtasks.core.config import QueueConfig

_INSTEAD = ("workers report themselves with heartbeats in the backend; use app.ping(), "
            "app.client.workers(), `qtasks info` or the dashboard, and QueueConfig for settings")
AsyncRedisGlobalConfig = unavailable("qtasks.configs.AsyncRedisGlobalConfig", _INSTEAD)
SyncRedisGlobalConfig = unavailable("qtasks.configs.SyncRedisGlobalConfig", _INSTEAD)

__all__ = ["AsyncRedisGlobalConfig", "QueueConfig", "SyncRedisGlobalConfig"]
