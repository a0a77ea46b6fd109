"""Every exception qtasks raises on purpose.

    QTasksError
    ├── TaskCancelError        (also a RuntimeError, as in QTasks 1.7) a task asked to be cancelled
    ├── TaskPluginTriggerError a task asked a plugin to decide its result
    ├── NotYetSupported        (also a NotImplementedError) an option that a later release implements
    ├── BackendError           a backend URL or backend failure the user must see
    │   └── BackendConnectionError  transient: the service is down, busy or unreachable; the
    │                               worker backs off and reconnects on this, and on nothing else
    ├── MalformedMessage       a queued message that cannot be decoded (worker side)
    └── errors the worker records for a task without the task raising them: UnknownTaskError,
        WorkerLostError, ResultEncodingError, ResultStorageError. The record's ``exception``
        field holds the class path (``qtasks.exceptions.WorkerLostError``) and its traceback
        text begins with the class name.

Argument validation errors stay builtin: a task argument that cannot be encoded raises
``TypeError``, a duplicate task name ``ValueError``, as users of QTasks expect.
"""

from __future__ import annotations

from typing import Any


class QTasksError(Exception):
    """Root of the exceptions defined by qtasks."""


class TaskCancelError(QTasksError, RuntimeError):
    """Raised inside a task (or by ``ctx.cancel``) to finish it with status ``cancel``."""


class TaskPluginTriggerError(QTasksError):
    """Raised inside a task to let a plugin decide its result."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args)
        self.kwargs = kwargs


class NotYetSupported(QTasksError, NotImplementedError):
    """A documented QTasks option whose behaviour this release does not implement yet."""


class BackendError(QTasksError):
    """A backend cannot be created or used (bad URL, missing extra, broken store)."""


class BackendConnectionError(BackendError):
    """The backend cannot be reached right now (down, restarting, busy); worth retrying."""


class MalformedMessage(QTasksError):
    """A queued message that is not a valid qtasks envelope."""


class UnknownTaskError(QTasksError):
    """A record's task name is not registered in the app of the worker that claimed it."""


class WorkerLostError(QTasksError):
    """The worker running a task stopped without finishing it, too many times."""


class ResultEncodingError(QTasksError, TypeError):
    """A task returned a value that cannot be stored as JSON."""


class ResultStorageError(QTasksError):
    """The result store refused a task's outcome as it was (a value it cannot hold)."""


class StaleDeliveryError(QTasksError):
    """A worker's lease on a task ran out and another worker took the task over; what the first
    worker reported for it was not stored."""


__all__ = [
    "BackendConnectionError",
    "BackendError",
    "MalformedMessage",
    "NotYetSupported",
    "QTasksError",
    "ResultEncodingError",
    "ResultStorageError",
    "StaleDeliveryError",
    "TaskCancelError",
    "TaskPluginTriggerError",
    "UnknownTaskError",
    "WorkerLostError",
]
