"""Task definitions (``TaskExecSchema`` in QTasks) and the decorator forms that create them.

``@x.task``, ``@x.task()``, ``@x.task("name")`` and ``@x.task(name=..., ...)`` are parsed once,
here, for the app, routers and ``shared_task``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# Options that change how the worker runs the task, all validated here.
_RUN_OPTIONS = (
    "echo", "max_time", "retry", "retry_on_exc", "retry_delay", "decode", "generate_handler",
    "middlewares_before", "middlewares_after", "executor",
)


@dataclass
class TaskDefinition:
    """Everything the worker needs to run one registered task."""

    priority: int
    name: str
    func: Callable[..., Any]
    awaiting: bool = False
    generating: Literal["async", "sync", False] = False
    echo: bool = False
    max_time: float | None = None
    retry: int | None = None
    retry_on_exc: list[type[Exception]] | None = None
    retry_delay: float | Callable[[int], float] | None = None
    decode: Callable[..., Any] | None = None
    tags: list[str] | None = None
    description: str | None = None
    generate_handler: Callable[..., Any] | None = None
    executor: Any = None
    middlewares_before: list[Any] = field(default_factory=list)
    middlewares_after: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    inject: tuple[Any, ...] = ()
    """Parameters the worker fills in (Depends, states, a pydantic model); see qtasks.injection."""
    queue: str = "default"
    """The named queue its tasks go to; a worker takes those of the queues it was given."""

    def same_function(self, other: TaskDefinition) -> bool:
        """True when ``other`` is this function defined again (a module imported twice)."""
        a, b = self.func, other.func
        return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def build_definition(
    func: Callable[..., Any], name: str | None, priority: int, options: dict[str, Any]
) -> TaskDefinition:
    """Validate decorator options for ``func`` and return its definition."""
    if not callable(func):
        raise TypeError(f"@task expects a function, got {type(func).__name__}")
    task_name = name or getattr(func, "__name__", None)
    if not task_name:
        raise ValueError("Task name is not specified.")
    generating: Literal["async", "sync", False] = (
        "async" if inspect.isasyncgenfunction(func)
        else "sync" if inspect.isgeneratorfunction(func) else False
    )
    run = {k: options.get(k) for k in _RUN_OPTIONS}
    _check_run_options(task_name, run, generating)
    from qtasks.core.injection import plan_injections

    queue = options.get("queue") or "default"
    if not isinstance(queue, str):
        raise TypeError(f"task {task_name!r}: queue must be a queue name (str)")
    known = {"tags", "description", "awaiting", "queue", *_RUN_OPTIONS}
    extra = {k: v for k, v in options.items() if k not in known}
    return TaskDefinition(
        priority=int(priority),
        name=task_name,
        func=func,
        awaiting=inspect.iscoroutinefunction(func),
        generating=generating,
        tags=options.get("tags"),
        description=options.get("description"),
        extra=extra,
        **{k: v for k, v in run.items() if k not in _FLAGS},
        echo=bool(run["echo"]),
        middlewares_before=list(run["middlewares_before"] or []),
        middlewares_after=list(run["middlewares_after"] or []),
        inject=plan_injections(func),
        queue=queue,
    )


_FLAGS = ("echo", "middlewares_before", "middlewares_after")


def _check_run_options(name: str, run: dict[str, Any], generating: object) -> None:
    max_time, retry = run["max_time"], run["retry"]
    if max_time is not None and (not isinstance(max_time, int | float) or max_time <= 0):
        raise ValueError(f"task {name!r}: max_time must be a positive number of seconds")
    if retry is not None and (not isinstance(retry, int) or isinstance(retry, bool) or retry < 0):
        raise ValueError(f"task {name!r}: retry must be a whole number >= 0 (extra attempts)")
    on_exc = run["retry_on_exc"]
    if on_exc is not None:
        if isinstance(on_exc, type):
            on_exc = run["retry_on_exc"] = [on_exc]
        if not all(isinstance(e, type) and issubclass(e, BaseException) for e in on_exc):
            raise TypeError(f"task {name!r}: retry_on_exc must list exception classes")
    delay = run["retry_delay"]
    if delay is not None and not callable(delay) and (
        not isinstance(delay, int | float) or delay < 0
    ):
        raise ValueError(f"task {name!r}: retry_delay must be seconds >= 0 or a function")
    for option in ("decode", "generate_handler"):
        if run[option] is not None and not callable(run[option]):
            raise TypeError(f"task {name!r}: {option} must be callable")
    for option in ("middlewares_before", "middlewares_after"):
        for middleware in run[option] or []:
            check_middleware(middleware, f"task {name!r}: {option}")
    executor = run["executor"]
    if executor is not None and not (isinstance(executor, type)
                                     and callable(getattr(executor, "execute", None))):
        raise TypeError(f"task {name!r}: executor= takes an executor class (a subclass of "
                        f"qtasks.executors.AsyncTaskExecutor or SyncTaskExecutor), not "
                        f"{executor!r}")
    if run["generate_handler"] is not None and not generating:
        raise ValueError(f"task {name!r}: generate_handler needs a generator function (yield)")


def task_decorator(
    name_or_func: str | Callable[..., Any] | None,
    make: Callable[[Callable[..., Any], str | None], Any],
) -> Any:
    """Serve the four decorator forms; ``make(func, name)`` registers and returns the handle."""
    if callable(name_or_func):
        return make(name_or_func, None)

    def decorator(func: Callable[..., Any]) -> Any:
        return make(func, name_or_func)

    return decorator


class TaskTable(dict[str, TaskDefinition]):
    """A name -> definition table that refuses a second, different task of the same name."""

    def register(self, definition: TaskDefinition, owner: str) -> None:
        current = self.get(definition.name)
        if current is not None and not current.same_function(definition):
            raise ValueError(f"Task with name {definition.name} is already registered in {owner}!")
        self[definition.name] = definition


def check_middleware(middleware: Any, where: str) -> None:
    """``TypeError`` unless ``middleware`` is a ``TaskMiddleware`` subclass."""
    from qtasks.core.middleware import TaskMiddleware

    if not (isinstance(middleware, type) and issubclass(middleware, TaskMiddleware)):
        raise TypeError(f"{where}: {middleware!r} is not a TaskMiddleware subclass")
