"""Task handles: what ``@app.task`` returns (``SyncTask`` / ``AsyncTask``) and pre-built calls.

A handle enqueues; it does not run the function (``handle.func`` is the function itself). The
flavour of the handle decides whether ``add_task`` blocks or is awaited. The task goes to the app
the handle is bound to; for a router task, the first app that included the router; otherwise
(shared tasks, routers not yet included) the most recently created app, as in QTasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from qtasks.core.definition import TaskDefinition
from qtasks.core.delays import start_at
from qtasks.core.hooks import process_hooks
from qtasks.integrations import activate as activate_integrations

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks
    from qtasks.core.record import Task


P = ParamSpec("P")
R = TypeVar("R")


class _Handle(Generic[P, R]):
    """What both handle flavours share. Generic in the function's parameters ``P`` and result
    ``R``, so ``handle.func`` and ``handle(...)`` keep the decorated function's signature for
    type checkers."""

    func: Callable[P, R] | None

    def __init__(
        self,
        task_name: str | None = None,
        priority: int | None = None,
        echo: bool = False,
        max_time: float | None = None,
        retry: int | None = None,
        retry_on_exc: list[type[Exception]] | None = None,
        decode: Callable[..., Any] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        generate_handler: Callable[..., Any] | None = None,
        executor: Any = None,
        middlewares_before: list[Any] | None = None,
        middlewares_after: list[Any] | None = None,
        extra: dict[str, Any] | None = None,
        app: BaseQueueTasks | None = None,
        func: Callable[P, R] | None = None,
    ) -> None:
        self.task_name = task_name
        self.priority = priority
        self.echo = echo
        self.max_time = max_time
        self.retry = retry
        self.retry_on_exc = retry_on_exc
        self.decode = decode
        self.tags = tags
        self.description = description
        self.generate_handler = generate_handler
        self.executor = executor
        self.middlewares_before = middlewares_before or []
        self.middlewares_after = middlewares_after or []
        self.extra = extra or {}
        self.func = func
        self.ctx: Any = None  # the live context of an echo=True task (set by the worker)
        self._app = app
        self._router: Any = None  # set for router tasks: they go to the app that includes the router
        if func is not None:
            self.__doc__ = func.__doc__
            self.__name__ = getattr(func, "__name__", task_name)

    @classmethod
    def from_definition(cls, definition: TaskDefinition, app: BaseQueueTasks | None) -> Any:
        return cls(
            task_name=definition.name,
            priority=definition.priority,
            tags=definition.tags,
            description=definition.description,
            extra=definition.extra,
            app=app,
            func=definition.func,
        )

    def _target(self, task_name: str | None) -> tuple[BaseQueueTasks, str]:
        from qtasks.core.apps import resolve_app

        name = task_name or self.task_name
        if not name:
            raise ValueError("Task name is not specified.")
        app = self._app
        if app is None and self._router is not None and self._router._apps:
            app = self._router._apps[0]
        return resolve_app(app), name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_name!r}>"


def _on_commit() -> Any:
    """The ``commit`` hook's provider (the Django integration's enqueue at commit)."""
    activate_integrations()
    provider = process_hooks.provider("commit")
    if provider is None:
        raise RuntimeError("add_task_on_commit needs a transaction integration: it works in a "
                           "Django project (pip install 'qtasks[django]', then import Django "
                           "and configure it before enqueuing)")
    return provider


class SyncTask(_Handle[P, R]):
    """Handle whose ``add_task`` blocks."""

    def add_task(self, *args: Any, priority: int | None = None, timeout: float | None = None,
                 task_name: str | None = None, delay: float | None = None,
                 eta: datetime | float | None = None, **kwargs: Any) -> Task | None:
        """Enqueue; with ``timeout``, wait for and return the final record (``None`` on timeout).

        ``delay``/``eta`` as in ``QueueTasks.add_task``.
        """
        app, name = self._target(task_name)
        prio = self.priority if priority is None and name == self.task_name else priority
        return app._add_task_sync(name, args, kwargs, prio, timeout, start_at(delay, eta))

    def add_task_on_commit(self, *args: Any, priority: int | None = None,
                           task_name: str | None = None, using: str | None = None,
                           delay: float | None = None, eta: datetime | float | None = None,
                           **kwargs: Any) -> Task:
        """Django: enqueue when the transaction of database ``using`` commits.

        Returns the task's record (status ``new``, uuid known) at once; after a rollback the
        task is never enqueued. See ``qtasks.contrib.django.transactions``.
        """
        app, name = self._target(task_name)
        prio = self.priority if priority is None and name == self.task_name else priority
        return _on_commit()(app, name, args, kwargs, prio, start_at(delay, eta), using)

    if TYPE_CHECKING:
        # for type checkers, the call takes the function's own arguments (the options below
        # are QTasks' and still work; give them to add_task to keep the check)
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> SyncTaskCls: ...
    else:
        def __call__(self, *args: Any, priority: int | None = None,
                     timeout: float | None = None, task_name: str | None = None,
                     **kwargs: Any) -> SyncTaskCls:
            """Build the call without enqueuing it; ``.add_task()`` on the result enqueues."""
            cls = SyncTaskCls(task_name or self.task_name, priority if priority is not None
                              else self.priority, timeout, args, kwargs)
            cls.bind(self)
            return cls


class AsyncTask(_Handle[P, R]):
    """Handle whose ``add_task`` is a coroutine."""

    async def add_task(self, *args: Any, priority: int | None = None,
                       timeout: float | None = None, task_name: str | None = None,
                       delay: float | None = None, eta: datetime | float | None = None,
                       **kwargs: Any) -> Task | None:
        """Enqueue; with ``timeout``, wait for and return the final record (``None`` on timeout).

        ``delay``/``eta`` as in ``QueueTasks.add_task``.
        """
        app, name = self._target(task_name)
        prio = self.priority if priority is None and name == self.task_name else priority
        return await app._add_task_async(name, args, kwargs, prio, timeout, start_at(delay, eta))

    async def add_task_on_commit(self, *args: Any, priority: int | None = None,
                                 task_name: str | None = None, using: str | None = None,
                                 delay: float | None = None,
                                 eta: datetime | float | None = None, **kwargs: Any) -> Task:
        """Django: as ``SyncTask.add_task_on_commit``, awaited."""
        app, name = self._target(task_name)
        prio = self.priority if priority is None and name == self.task_name else priority
        return await _on_commit()(app, name, args, kwargs, prio, start_at(delay, eta), using,
                                  awaiting=True)

    if TYPE_CHECKING:
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskCls: ...
    else:
        def __call__(self, *args: Any, priority: int | None = None,
                     timeout: float | None = None, task_name: str | None = None,
                     **kwargs: Any) -> AsyncTaskCls:
            """Build the call without enqueuing it; ``await .add_task()`` on the result
            enqueues."""
            cls = AsyncTaskCls(task_name or self.task_name, priority if priority is not None
                               else self.priority, timeout, args, kwargs)
            cls.bind(self)
            return cls


@dataclass
class BaseTaskCls:
    """A call prepared by ``handle(*args, ...)``: name, priority, timeout, arguments."""

    task_name: str | None = None
    priority: int | None = None
    timeout: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    _task_deco: Any = field(default=None, repr=False)

    def bind(self, deco: _Handle[Any, Any]) -> None:
        self._task_deco = deco

    def _handle(self) -> Any:
        if self._task_deco is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a task handle.")
        return self._task_deco


class SyncTaskCls(BaseTaskCls):
    def add_task(self) -> Task | None:
        return self._handle().add_task(*self.args, priority=self.priority, timeout=self.timeout,
                                       task_name=self.task_name, **self.kwargs)


class AsyncTaskCls(BaseTaskCls):
    async def add_task(self) -> Task | None:
        return await self._handle().add_task(*self.args, priority=self.priority,
                                             timeout=self.timeout, task_name=self.task_name,
                                             **self.kwargs)


def handle_class(flavour: str) -> type[_Handle[Any, Any]]:
    return AsyncTask if flavour == "async" else SyncTask


class SyncTaskDecorator(Protocol):
    """What ``@app.task(...)`` (with options) returns in the sync app."""

    def __call__(self, func: Callable[P, R], /) -> SyncTask[P, R]: ...


class AsyncTaskDecorator(Protocol):
    """What ``@app.task(...)`` (with options) returns in the async app."""

    def __call__(self, func: Callable[P, R], /) -> AsyncTask[P, R]: ...


__all__ = ["AsyncTask", "AsyncTaskCls", "AsyncTaskDecorator", "BaseTaskCls", "SyncTask",
           "SyncTaskCls", "SyncTaskDecorator"]
