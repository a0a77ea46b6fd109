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
(``qtasks.worker.executor``) and runs the same steps (``qtasks.worker.steps``); ``run_task()``
calls the layers inside them, so ``max_time``, ``Depends``, retries and cancel behave as
without an executor.

The hard part is the sync flavour. Its steps are plain functions that may block, so its
``execute()`` runs in a thread of its own, not in the pool that runs plain tasks: the task
itself needs a pool thread while ``execute()`` waits for it. From that thread, ``run_task()``,
plugin triggers and async middlewares are handed to the worker's loop and waited for, in the
worker's context (slot lending depends on it). When the worker cancels the run (a hard stop,
``max_time`` of an outer layer), what the thread waits for on the loop is cancelled too, so
the thread returns at its next step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from qtasks.core.middleware import TaskRun
from qtasks.plugins.runner import trigger_async
from qtasks.worker import steps

# execute() of sync executors: one thread per run in progress. Threads are made as they are
# needed; the bound only has to exceed the tasks one process runs at once (slots and lending).
_threads = concurrent.futures.ThreadPoolExecutor(4096, thread_name_prefix="qtasks-executor")


class BaseTaskExecutor:
    """What both executor flavours share: the task, its message and its run's state.

    ``task_func`` is the task's definition (``TaskExecSchema``); ``task_broker`` the message
    (uuid, ``name``, priority, args, kwargs, created_at). ``_args``, ``_kwargs`` and ``_result``
    (also ``args``, ``kwargs``, ``result``) are the arguments the task will get and its result;
    ``echo`` is the task's own handle for ``echo=True`` tasks.
    """

    def __init__(self, task_func: Any, task_broker: Any, log: Any = None,
                 plugins: Any = None) -> None:
        self.task_func = task_func
        self.task_broker = task_broker
        self.log = log if log is not None else logging.getLogger(
            f"qtasks.executor.{type(self).__name__}")
        self.plugins = plugins if plugins is not None else {}
        self.echo: Any = None
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

    @property
    def _registry(self) -> Any:
        return getattr(self._app, "_plugins", None)

    # QTasks' helpers, for executors written for it
    @staticmethod
    def decode_cls(result: Any) -> str:
        """QTasks' default encoding of a result: JSON text."""
        return json.dumps(result, ensure_ascii=False)

    def _extract_args_kwargs_from_func(self, func: Any) -> tuple[list[Any], dict[str, Any]]:
        """``(args, kwargs)`` of a function's parameters: ``None`` for each positional one
        without a default, and the defaults by name."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, param in inspect.signature(func).parameters.items():
            if param.default is not param.empty:
                kwargs[name] = param.default
            elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                args.append(None)
        return args, kwargs

    def _build_args_info(self, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        """``ArgMeta`` for these arguments of the task's function."""
        return steps.args_info(self.task_func.func, list(args), dict(kwargs))

    def _lists(self) -> tuple[list[Any], list[Any]]:
        if self._app is None:  # built by hand: the task's own middlewares only
            return list(self.task_func.middlewares_before), \
                list(self.task_func.middlewares_after)[::-1]
        return steps.middleware_lists(self._app, self.task_func)


class AsyncTaskExecutor(BaseTaskExecutor):
    """The asyncio executor: override any step with an ``async def`` (call ``super()`` to keep
    what it does)."""

    async def _plugin_trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """Call the app's plugins registered for trigger ``name``; their results, merged."""
        registry = self._registry
        return await trigger_async(registry, name, **kwargs) if registry else {}

    async def execute_middlewares_before(self) -> None:
        """Run the before-middlewares (the app's, then the task's), each given this executor."""
        await steps.run_middlewares(self._registry, self, self._lists()[0], "before")

    async def before_execute(self) -> None:
        """The plugins' before-execute triggers; ``task_executor_args_replace`` may change the
        arguments."""
        await steps.plugins_before(self._registry, self)

    async def run_task(self) -> Any:
        """Run the task (with its dependencies, ``max_time`` and ``run`` plugin triggers) and
        return its result."""
        if self._next is None:  # built by hand, outside a worker: just call the function
            result = self.task_func.func(*self._args, **self._kwargs)
            return await result if inspect.isawaitable(result) else result
        return await self._next()

    async def after_execute(self) -> None:
        """The plugins' after-execute triggers; ``..._result_replace`` may change the result."""
        self._result = await steps.plugins_after(self._registry, self)

    async def execute_middlewares_after(self) -> None:
        """Run the after-middlewares (the task's, then the app's, in reverse order)."""
        await steps.run_middlewares(self._registry, self, self._lists()[1], "after")

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
    _waiting: concurrent.futures.Future[Any] | None = None
    _cancelled = False

    def _on_loop(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` on the worker's loop, in the worker's context, and wait for it."""
        loop = self._loop
        if loop is None:  # built by hand, outside a worker
            return asyncio.run(steps.awaited(awaitable))
        if self._cancelled:
            raise concurrent.futures.CancelledError()
        # execute() runs inside the worker's context (executor_layer), and the loop's task is
        # made in a copy of the context of this call
        future = asyncio.run_coroutine_threadsafe(steps.awaited(awaitable), loop)
        self._waiting = future
        try:
            return future.result()
        finally:
            self._waiting = None

    def _cancel(self) -> None:
        """The worker gave up on this run: stop what the thread waits for, and what it would
        wait for next."""
        self._cancelled = True
        waiting = self._waiting
        if waiting is not None:
            waiting.cancel()

    def _plugin_trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
        """Call the app's plugins registered for trigger ``name``; their results, merged."""
        registry = self._registry
        return self._on_loop(trigger_async(registry, name, **kwargs)) if registry else {}

    def execute_middlewares_before(self) -> None:
        """Run the before-middlewares (the app's, then the task's), each given this executor;
        their plain ``__call__`` runs in this thread, an ``async`` one on the loop."""
        self._run_middlewares(self._lists()[0], "before")

    def _run_middlewares(self, classes: list[Any], which: str) -> None:
        if self._registry:
            self._plugin_trigger("task_executor_middlewares_execute", task_executor=self,
                                 **{f"middlewares_{which}": classes})
        for cls in classes:
            result = cls(self)()
            if inspect.isawaitable(result):
                self._on_loop(result)

    def before_execute(self) -> None:
        """The plugins' before-execute triggers; ``task_executor_args_replace`` may change the
        arguments."""
        if self._registry:
            self._on_loop(steps.plugins_before(self._registry, self))

    def run_task(self) -> Any:
        """Run the task (with its dependencies, ``max_time`` and ``run`` plugin triggers) and
        return its result."""
        if self._next is None:
            result = self.task_func.func(*self._args, **self._kwargs)
            return self._on_loop(result) if inspect.isawaitable(result) else result
        return self._on_loop(self._next())

    def after_execute(self) -> None:
        """The plugins' after-execute triggers; ``..._result_replace`` may change the result."""
        if self._registry:
            self._result = self._on_loop(steps.plugins_after(self._registry, self))

    def execute_middlewares_after(self) -> None:
        """Run the after-middlewares (the task's, then the app's, in reverse order)."""
        self._run_middlewares(self._lists()[1], "after")

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


@functools.lru_cache(maxsize=64)
def _takes_plugins(cls: type) -> bool:
    """Whether ``cls(...)`` accepts ``plugins=`` (QTasks' own examples define executors whose
    ``__init__`` does not)."""
    params = inspect.signature(cls).parameters.values()
    return any(p.name == "plugins" or p.kind is p.VAR_KEYWORD for p in params)


@functools.lru_cache(maxsize=64)
def _check_overrides(cls: type) -> None:
    """Say once per class that QTasks' ``run_task_gen`` is not a step here."""
    if callable(getattr(cls, "run_task_gen", None)):
        logging.getLogger("qtasks.worker").warning(
            "%s.run_task_gen is never called by qtasks: a generator task is drained inside "
            "run_task() (its items pass through the task's generate_handler=); override "
            "run_task() or use generate_handler= instead (docs/migration.md)", cls.__qualname__)


async def executor_layer(app: Any, run: TaskRun, call_next: Callable[[], Any]) -> Any:
    """The onion layer of a task with an executor class: the executor runs the middleware and
    plugin steps itself, and calls ``call_next`` from ``run_task()``. A class of one's own
    that is not a ``BaseTaskExecutor`` is built and its ``execute()`` called; it runs the
    function itself."""
    cls = run.task_func.executor or app._default_executor
    _check_overrides(cls)
    extra = {"plugins": app.plugins} if _takes_plugins(cls) else {}
    executor = cls(run.task_func, run.task_broker, **extra)
    if isinstance(executor, BaseTaskExecutor):
        executor._bind(app, run, call_next)
    if inspect.iscoroutinefunction(cls.execute):
        return await executor.execute()
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()  # the worker's: slot lending, hooks' state
    if isinstance(executor, SyncTaskExecutor):
        executor._loop = loop
    running = loop.run_in_executor(_threads, context.run, executor.execute)
    try:
        return await running
    except asyncio.CancelledError:
        if isinstance(executor, SyncTaskExecutor):
            executor._cancel()
        raise


__all__ = ["AsyncTaskExecutor", "BaseTaskExecutor", "SyncTaskExecutor"]
