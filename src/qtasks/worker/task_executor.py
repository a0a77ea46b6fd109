"""Executor classes: a task's run as an object with overridable steps (QTasks' ``executor=``).

``@app.task(executor=MyExecutor)`` runs that task through an instance of ``MyExecutor``, a
subclass of :class:`AsyncTaskExecutor` (``async def`` steps) or :class:`SyncTaskExecutor`
(plain steps). ``execute()`` calls, in order::

    execute_middlewares_before()  the app's and the task's before-middlewares
    before_execute()              plugin triggers; may change self._args / self._kwargs
    run_task()                    the rest of the run: dependency injection, the task itself
    after_execute()               plugin triggers; may change self._result
    execute_middlewares_after()   the after-middlewares, in reverse order
    decode()                      the value to store (qtasks encodes it as JSON afterwards)

An executor takes the place of the middleware and plugin layers of the execution onion
(``qtasks.worker.executor``); ``run_task()`` calls the layers inside them, so ``max_time``,
``Depends``, retries and cancel behave as without an executor.

The hard part is the sync flavour. Its steps are plain functions that may block, so its
``execute()`` runs in a thread of its own (not the pool that runs plain tasks: the task itself
needs a pool thread while ``execute()`` waits for it). From that thread, ``run_task()``,
plugin triggers and async middlewares are handed to the worker's loop and waited for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from qtasks.core.middleware import TaskRun
from qtasks.plugins.runner import trigger_async

# execute() of sync executors: one thread per task running through one (see the docstring)
# (threads are made as needed, up to the most tasks a process runs at once in practice)
_threads = concurrent.futures.ThreadPoolExecutor(256, thread_name_prefix="qtasks-executor")


class BaseTaskExecutor:
    """What both executor flavours share: the task, its message and its run's state.

    ``task_func`` is the task's definition (``TaskExecSchema``); ``task_broker`` the message
    (uuid, ``name``, priority, args, kwargs, created_at). ``_args``, ``_kwargs`` and ``_result``
    (also ``args``, ``kwargs``, ``result``) are the arguments the task will get and its result.
    """

    def __init__(self, task_func: Any, task_broker: Any, log: Any = None,
                 plugins: Any = None) -> None:
        self.task_func = task_func
        self.task_broker = task_broker
        self.log = log if log is not None else logging.getLogger(
            f"qtasks.executor.{type(self).__name__}")
        self.plugins = plugins if plugins is not None else {}
        self.echo: Any = None  # the task's own handle, for echo=True tasks
        self._run = TaskRun(task_func=task_func, task_broker=task_broker,
                            args=list(task_broker.args), kwargs=dict(task_broker.kwargs))
        self._next: Callable[[], Awaitable[Any]] | None = None
        self._app: Any = None

    def _bind(self, app: Any, run: TaskRun, call_next: Callable[[], Awaitable[Any]]) -> None:
        """Attach the worker's run: from now on the steps read and change it."""
        self._app, self._run, self._next = app, run, call_next
        if getattr(self.task_func, "echo", False) and run.args:
            self.echo = run.args[0]

    # the run's state, under QTasks' names and qtasks' (TaskRun) names
    @property
    def _args(self) -> list[Any]:
        return self._run.args

    @_args.setter
    def _args(self, value: Any) -> None:
        self._run.args = list(value)

    @property
    def _kwargs(self) -> dict[str, Any]:
        return self._run.kwargs

    @_kwargs.setter
    def _kwargs(self, value: Any) -> None:
        self._run.kwargs = dict(value)

    @property
    def _result(self) -> Any:
        return self._run.result

    @_result.setter
    def _result(self, value: Any) -> None:
        self._run.result = value

    args = _args
    kwargs = _kwargs
    result = _result

    @property
    def worker(self) -> Any:
        return self._run.worker

    @property
    def extra(self) -> dict[str, Any]:
        return self._run.extra

    def _middleware_classes(self) -> tuple[list[Any], list[Any]]:
        app, definition = self._app, self.task_func
        before = [*getattr(app, "middlewares_before", ()), *definition.middlewares_before]
        after = [*definition.middlewares_after, *getattr(app, "middlewares_after", ())][::-1]
        return before, after

    def _plugins(self) -> Any:
        return getattr(self._app, "_plugins", None)


class AsyncTaskExecutor(BaseTaskExecutor):
    """The asyncio executor: override any step with an ``async def`` (call ``super()`` to keep
    what it does)."""

    async def _trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
        plugins = self._plugins()
        return await trigger_async(plugins, name, **kwargs) if plugins else {}

    async def execute_middlewares_before(self) -> None:
        """Run the before-middlewares (the app's, then the task's), each given this executor."""
        before, _ = self._middleware_classes()
        await self._trigger("task_executor_middlewares_execute", task_executor=self,
                            middlewares_before=before)
        for cls in before:
            await _maybe_await(cls(self)())

    async def before_execute(self) -> None:
        """The plugins' before-execute triggers; ``task_executor_args_replace`` may change the
        arguments."""
        await self._trigger("worker_execute_before", worker=self.worker,
                            task_broker=self.task_broker, task_func=self.task_func, model=None)
        merged = await self._trigger("task_executor_args_replace", task_executor=self,
                                     args=self._args, kw=self._kwargs, args_info=None)
        self._args = merged.get("args", self._args)
        self._kwargs = merged.get("kw", self._kwargs)
        await self._trigger("task_executor_before_execute", task_executor=self)

    async def run_task(self) -> Any:
        """Run the task (with its dependencies, ``max_time`` and ``run`` plugin triggers) and
        return its result."""
        if self._next is None:  # built by hand, outside a worker: just call the function
            result = self.task_func.func(*self._args, **self._kwargs)
            return await _maybe_await(result)
        return await self._next()

    async def after_execute(self) -> None:
        """The plugins' after-execute triggers; ``..._result_replace`` may change the result."""
        await self._trigger("task_executor_after_execute", task_executor=self)
        merged = await self._trigger("task_executor_after_execute_result_replace",
                                     task_executor=self, result=self._result)
        self._result = merged.get("result", self._result)

    async def execute_middlewares_after(self) -> None:
        """Run the after-middlewares (the task's, then the app's, in reverse order)."""
        _, after = self._middleware_classes()
        await self._trigger("task_executor_middlewares_execute", task_executor=self,
                            middlewares_after=after)
        for cls in after:
            await _maybe_await(cls(self)())

    async def decode(self) -> Any:
        """The value to store; the worker encodes it (with the task's ``decode=`` if set)."""
        return self._result

    async def execute(self, decode: bool = True) -> Any:
        """Every step in order; returns what ``decode()`` gives (the result if not ``decode``)."""
        await self.execute_middlewares_before()
        await self.before_execute()
        self._result = await self.run_task()
        await self.after_execute()
        await self.execute_middlewares_after()
        if decode:
            self._result = await self.decode()
        return self._result


class SyncTaskExecutor(BaseTaskExecutor):
    """The blocking executor: override any step with a plain method. ``execute()`` runs in a
    thread; ``run_task()`` waits there for the task."""

    _loop: asyncio.AbstractEventLoop | None = None

    def _on_loop(self, awaitable: Awaitable[Any]) -> Any:
        loop = self._loop
        if loop is None:  # built by hand, outside a worker
            return asyncio.run(_awaited(awaitable))
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop).result()

    def _trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
        plugins = self._plugins()
        return self._on_loop(trigger_async(plugins, name, **kwargs)) if plugins else {}

    def _middlewares(self, classes: list[Any]) -> None:
        for cls in classes:
            result = cls(self)()
            if inspect.isawaitable(result):
                self._on_loop(result)

    def execute_middlewares_before(self) -> None:
        """Run the before-middlewares (the app's, then the task's), each given this executor."""
        before, _ = self._middleware_classes()
        self._trigger("task_executor_middlewares_execute", task_executor=self,
                      middlewares_before=before)
        self._middlewares(before)

    def before_execute(self) -> None:
        """The plugins' before-execute triggers; ``task_executor_args_replace`` may change the
        arguments."""
        self._trigger("worker_execute_before", worker=self.worker,
                      task_broker=self.task_broker, task_func=self.task_func, model=None)
        merged = self._trigger("task_executor_args_replace", task_executor=self,
                               args=self._args, kw=self._kwargs, args_info=None)
        self._args = merged.get("args", self._args)
        self._kwargs = merged.get("kw", self._kwargs)
        self._trigger("task_executor_before_execute", task_executor=self)

    def run_task(self) -> Any:
        """Run the task (with its dependencies, ``max_time`` and ``run`` plugin triggers) and
        return its result."""
        if self._next is None:
            result = self.task_func.func(*self._args, **self._kwargs)
            return self._on_loop(result) if inspect.isawaitable(result) else result
        return self._on_loop(self._next())

    def after_execute(self) -> None:
        """The plugins' after-execute triggers; ``..._result_replace`` may change the result."""
        self._trigger("task_executor_after_execute", task_executor=self)
        merged = self._trigger("task_executor_after_execute_result_replace",
                               task_executor=self, result=self._result)
        self._result = merged.get("result", self._result)

    def execute_middlewares_after(self) -> None:
        """Run the after-middlewares (the task's, then the app's, in reverse order)."""
        _, after = self._middleware_classes()
        self._trigger("task_executor_middlewares_execute", task_executor=self,
                      middlewares_after=after)
        self._middlewares(after)

    def decode(self) -> Any:
        """The value to store; the worker encodes it (with the task's ``decode=`` if set)."""
        return self._result

    def execute(self, decode: bool = True) -> Any:
        """Every step in order; returns what ``decode()`` gives (the result if not ``decode``)."""
        self.execute_middlewares_before()
        self.before_execute()
        self._result = self.run_task()
        self.after_execute()
        self.execute_middlewares_after()
        if decode:
            self._result = self.decode()
        return self._result


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


@functools.lru_cache(maxsize=64)
def _takes_plugins(cls: type) -> bool:
    """Whether ``cls(...)`` accepts ``plugins=`` (QTasks' own examples define executors whose
    ``__init__`` does not)."""
    params = inspect.signature(cls).parameters.values()
    return any(p.name == "plugins" or p.kind is p.VAR_KEYWORD for p in params)


async def executor_layer(app: Any, run: TaskRun, call_next: Callable[[], Any]) -> Any:
    """The onion layer of a task with an executor class: the executor runs the middleware and
    plugin steps itself, and calls ``call_next`` from ``run_task()``."""
    cls = run.task_func.executor or app._default_executor
    extra = {"plugins": getattr(app, "plugins", None)} if _takes_plugins(cls) else {}
    executor = cls(run.task_func, run.task_broker, **extra)
    executor._bind(app, run, call_next)
    if inspect.iscoroutinefunction(cls.execute):
        return await executor.execute()
    loop = asyncio.get_running_loop()
    executor._loop = loop
    return await loop.run_in_executor(_threads, executor.execute)


__all__ = ["AsyncTaskExecutor", "BaseTaskExecutor", "SyncTaskExecutor"]
