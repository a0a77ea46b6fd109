"""The plugin and middleware steps around a task, shared by the execution onion's layers
(``worker/executor.py``) and the executor classes (``worker/task_executor.py``).

``run`` is whatever plugins and middlewares are shown as the task's executor: the
:class:`~qtasks.core.middleware.TaskRun`, or an executor object, which has the same
attributes (``task_func``, ``task_broker``, ``args``, ``kwargs``, ``result``, ``worker``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from qtasks.plugins.runner import trigger_async


def middleware_lists(app: Any, definition: Any) -> tuple[list[Any], list[Any]]:
    """The before-middlewares (the app's, then the task's) and the after-middlewares (the
    task's, then the app's, reversed: an onion)."""
    before = [*app.middlewares_before, *definition.middlewares_before]
    after = [*definition.middlewares_after, *app.middlewares_after][::-1]
    return before, after


async def run_middlewares(plugins: Any, run: Any, classes: list[Any], which: str) -> None:
    """Run ``classes`` on ``run`` (``which``: ``before`` or ``after``), telling the plugins."""
    if plugins:
        await trigger_async(plugins, "task_executor_middlewares_execute", task_executor=run,
                            **{f"middlewares_{which}": classes})
    for cls in classes:
        result = cls(run)()
        if inspect.isawaitable(result):
            await result


@functools.lru_cache(maxsize=512)
def _parameters(func: Any) -> tuple[list[str], dict[str, Any]]:
    """A function's parameter names in order, and its annotations."""
    try:
        names = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        names = []
    return names, dict(getattr(func, "__annotations__", {}))


def args_info(func: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """QTasks' ``args_info`` for ``task_executor_args_replace``: one ``ArgMeta`` per argument
    the task will get (name, value, annotation, and the annotation's origin and first type
    argument)."""
    from qtasks.compat.schemas import ArgMeta

    names, annotations = _parameters(func)

    def meta(name: str, value: Any, **where: Any) -> Any:
        hint = annotations.get(name)
        type_args = typing.get_args(hint)
        return ArgMeta(name=name, value=value, origin=typing.get_origin(hint),
                       raw_type=type_args[0] if type_args else hint, annotation=hint,
                       **where)

    found = [meta(names[i] if i < len(names) else f"arg{i}", value, is_kwarg=False, index=i)
             for i, value in enumerate(args)]
    found += [meta(key, value, is_kwarg=True, key=key) for key, value in kwargs.items()]
    return found


async def plugins_before(plugins: Any, run: Any) -> None:
    """The plugins' before-execute triggers; ``task_executor_args_replace`` may change the
    arguments."""
    if not plugins:
        return
    await trigger_async(plugins, "worker_execute_before", worker=run.worker,
                        task_broker=run.task_broker, task_func=run.task_func, model=None)
    merged = await trigger_async(plugins, "task_executor_args_replace", task_executor=run,
                                 args=run.args, kw=run.kwargs,
                                 args_info=args_info(run.task_func.func, run.args, run.kwargs))
    run.args = list(merged.get("args", run.args))
    run.kwargs = dict(merged.get("kw", run.kwargs))
    await trigger_async(plugins, "task_executor_before_execute", task_executor=run)


async def plugins_after(plugins: Any, run: Any) -> Any:
    """The plugins' after-execute triggers; returns the result, which
    ``task_executor_after_execute_result_replace`` may have changed."""
    if not plugins:
        return run.result
    await trigger_async(plugins, "task_executor_after_execute", task_executor=run)
    merged = await trigger_async(plugins, "task_executor_after_execute_result_replace",
                                 task_executor=run, result=run.result)
    return merged.get("result", run.result)


async def awaited(awaitable: Any) -> Any:
    """A coroutine that awaits ``awaitable`` (for APIs that take coroutines only)."""
    return await awaitable
