"""qtasks: a task queue for Python and Django with the public API of QTasks 1.7.

``from qtasks import QueueTasks`` gives the sync app; ``from qtasks.asyncio import QueueTasks``
the async one. Both run the same async worker (``qtasks -A module:app run``).
"""

from qtasks.app import QueueTasks
from qtasks.core.config import QueueConfig
from qtasks.core.record import Task
from qtasks.core.status import TaskStatusEnum
from qtasks.exceptions import TaskCancelError
from qtasks.handles import AsyncTask, SyncTask
from qtasks.injection import Depends
from qtasks.routers import AsyncRouter, SyncRouter
from qtasks.shared import shared_task
from qtasks.version import __version__

__all__ = [
    "AsyncRouter",
    "AsyncTask",
    "Depends",
    "QueueConfig",
    "QueueTasks",
    "SyncRouter",
    "SyncTask",
    "Task",
    "TaskCancelError",
    "TaskStatusEnum",
    "__version__",
    "shared_task",
]
