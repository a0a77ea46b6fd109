"""QTasks import path ``qtasks.executors``: the executor classes of ``@app.task(executor=...)``,
implemented in ``qtasks.worker.task_executor``."""

from qtasks.worker.task_executor import AsyncTaskExecutor, BaseTaskExecutor, SyncTaskExecutor

__all__ = ["AsyncTaskExecutor", "BaseTaskExecutor", "SyncTaskExecutor"]
