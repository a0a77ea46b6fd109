"""``shared_task``: tasks defined without an app, known to every app of the process.

Shared tasks live in one process-wide table that every app consults when it looks a task up, so
a module defining them may be imported before or after the app is created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from qtasks.core import apps as _state
from qtasks.core.definition import TaskTable, build_definition, task_decorator

registry = TaskTable()


if TYPE_CHECKING:
    from qtasks.handles import AsyncTaskDecorator, SyncTask, SyncTaskDecorator

P = ParamSpec("P")
R = TypeVar("R")


@overload
def shared_task(name: Callable[P, R], /) -> SyncTask[P, R]: ...
@overload
def shared_task(name: str | None = None, *, priority: int | None = None,
                awaiting: Literal[True], **options: Any) -> AsyncTaskDecorator: ...
@overload
def shared_task(name: str | None = None, *, priority: int | None = None,
                awaiting: Literal[False] | None = None, **options: Any) -> SyncTaskDecorator: ...
def shared_task(
    name: str | Callable[..., Any] | None = None,
    *,
    priority: int | None = None,
    awaiting: bool | None = None,
    **options: Any,
) -> Any:
    """Register a task for every app. Returns an ``AsyncTask`` if ``awaiting=True``, else ``SyncTask``.

    Options are those of ``app.task``.
    """
    from qtasks.handles import AsyncTask, SyncTask

    def make(func: Callable[..., Any], task_name: str | None) -> Any:
        definition = build_definition(func, task_name, priority or 0, options)
        for app in list(_state.apps):
            app.check_name_free(definition, exclude=registry)
        registry.register(definition, "shared tasks")
        handle_cls = AsyncTask if awaiting else SyncTask
        return handle_cls.from_definition(definition, app=None)

    return task_decorator(name, make)
