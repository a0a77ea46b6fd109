"""Routers: groups of tasks defined in one module and attached to an app with ``include_router``.

An app reads a router's table live, so tasks added to a router after ``include_router`` are
seen too; a name that clashes with a task already known to an attached app raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from qtasks.core.definition import TaskTable, build_definition, task_decorator

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks
    from qtasks.handles import AsyncTask, AsyncTaskDecorator, SyncTask, SyncTaskDecorator

P = ParamSpec("P")
R = TypeVar("R")


class _Router:
    _handle_flavour = "sync"

    def __init__(self) -> None:
        self.tasks = TaskTable()
        self.plugins: dict[str, list[Any]] = {}
        self._apps: list[BaseQueueTasks] = []

    def task(self, name: str | Callable[..., Any] | None = None, *, priority: int | None = None,
             **options: Any) -> Any:
        """Register a task on this router; same options as ``app.task``."""
        from qtasks.handles import handle_class

        def make(func: Callable[..., Any], task_name: str | None) -> Any:
            definition = build_definition(func, task_name, priority or 0, options)
            for app in self._apps:
                app.check_name_free(definition, exclude=self.tasks)
            self.tasks.register(definition, f"{type(self).__name__}")
            handle = handle_class(self._handle_flavour).from_definition(definition, app=None)
            handle._router = self
            return handle

        return task_decorator(name, make)


class SyncRouter(_Router):
    """A router whose handles enqueue with blocking calls."""

    if TYPE_CHECKING:
        @overload  # type: ignore[override]  # same calls as the base, narrower results
        def task(self, name: Callable[P, R], /) -> SyncTask[P, R]: ...
        @overload
        def task(self, name: str | None = None, *, priority: int | None = None,
                 **options: Any) -> SyncTaskDecorator: ...
        def task(self, name: Any = None, **options: Any) -> Any: ...


class AsyncRouter(_Router):
    """A router whose handles enqueue with ``await``."""

    _handle_flavour = "async"

    if TYPE_CHECKING:
        @overload  # type: ignore[override]  # same calls as the base, narrower results
        def task(self, name: Callable[P, R], /) -> AsyncTask[P, R]: ...
        @overload
        def task(self, name: str | None = None, *, priority: int | None = None,
                 **options: Any) -> AsyncTaskDecorator: ...
        def task(self, name: Any = None, **options: Any) -> Any: ...


__all__ = ["AsyncRouter", "SyncRouter"]
