"""QTasks import path ``qtasks.schemas.task_cls``: what calling a task handle returns."""

from qtasks.handles import AsyncTaskCls, BaseTaskCls, SyncTaskCls

__all__ = ["AsyncTaskCls", "BaseTaskCls", "SyncTaskCls"]
