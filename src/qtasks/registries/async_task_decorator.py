"""QTasks import path ``qtasks.registries.async_task_decorator.AsyncTask``."""

from qtasks.handles import AsyncTask

__all__ = ["AsyncTask"]
