"""Task middlewares: code that runs around every execution of a task.

``@app.task(middlewares_before=[A], middlewares_after=[B])`` per task, and
``app.add_middleware(C, position="before"|"after")`` for every task of the app. Each class is
instantiated with the running :class:`~qtasks.middlewares.TaskRun` and called (awaited if
``__call__`` is a coroutine). A "before" middleware may change ``run.args`` / ``run.kwargs``;
an "after" one sees ``run.result`` and may replace it. Before-middlewares run in the order
given (per-task ones after the app's); after-middlewares in the reverse order. An exception
raised by a middleware fails the task like one raised by the task itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskRun:
    """What a middleware sees: the task's definition, its message, arguments and result."""

    task_func: Any
    task_broker: Any
    args: list[Any]
    kwargs: dict[str, Any]
    result: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    worker: Any = None  # the Worker running it; None when run inline (capture, immediate mode)
    pool: Any = field(default=None, repr=False)  # the executor a plain function runs in

    # QTasks' executor attribute names, for middlewares written for QTasks
    @property
    def _args(self) -> list[Any]:
        return self.args

    @_args.setter
    def _args(self, value: Any) -> None:
        self.args = list(value)

    @property
    def _kwargs(self) -> dict[str, Any]:
        return self.kwargs

    @_kwargs.setter
    def _kwargs(self, value: Any) -> None:
        self.kwargs = dict(value)

    @property
    def _result(self) -> Any:
        return self.result

    @_result.setter
    def _result(self, value: Any) -> None:
        self.result = value


class BaseMiddleware:
    def __init__(self, name: str) -> None:
        self.name = name


class TaskMiddleware(BaseMiddleware):
    """Subclass and override ``__call__`` (plain or ``async``)."""

    def __init__(self, task_executor: TaskRun) -> None:
        super().__init__("TaskMiddleware")
        self.task_executor = task_executor

    def __call__(self) -> Any:
        """Do nothing; subclasses act on ``self.task_executor``."""
        return self.task_executor


__all__ = ["BaseMiddleware", "TaskMiddleware", "TaskRun"]
