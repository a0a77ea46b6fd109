"""What the worker passes to a task besides its message's arguments.

Three kinds of parameter are filled in, all by keyword, from a plan made once when the task is
registered (no signature inspection per call):

- ``Depends(func, scope="task")``, as a parameter default or in ``Annotated[T, Depends(f)]``:
  ``func()`` is called (plain, coroutine, generator, async generator, or a function returning a
  context manager) and its value passed. Cleanup (the rest of a generator, ``__exit__``) runs
  when the scope ends: after the task for ``scope="task"`` (each run has its own, so one task's
  cleanup never closes another's), when the worker stops for the other scopes, whose values
  are made once per worker process and shared.
- a parameter annotated with a ``SyncState`` / ``AsyncState`` subclass: that state's instance,
  shared by the tasks of one worker process.
- the first parameter annotated with a pydantic model: the model, built from the keyword
  arguments named like its fields, then from positional arguments in field order.

Dependencies are resolved on the worker's event loop, so a plain-function task may use async
dependencies. Injected parameters are passed by keyword: declare them after the task's own
arguments.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ScopeEnum(StrEnum):
    TASK = "task"
    WORKER = "worker"
    BROKER = "broker"
    STORAGE = "storage"
    GLOBAL_CONFIG = "global_config"


class Depends:
    """Mark a task parameter to be filled with ``func()``'s value; see the module docstring."""

    def __init__(self, func: Callable[..., Any], scope: ScopeEnum | str = ScopeEnum.TASK) -> None:
        if not callable(func):
            raise TypeError(f"Depends() needs a callable, got {func!r}")
        self.func = func
        self.scope = ScopeEnum(scope)

    def __repr__(self) -> str:
        return f"Depends({getattr(self.func, '__name__', self.func)!r}, scope={self.scope.value!r})"


# -- state -------------------------------------------------------------------------------------

_states: dict[type, dict[str, Any]] = {}
_states_lock = threading.Lock()


class _StateBase:
    """Per-process key/value state shared by the tasks of one worker process."""

    def __init__(self) -> None:
        with _states_lock:
            self._data = _states.setdefault(type(self), {})

    def _get(self, key: str | None, default: Any) -> Any:
        with _states_lock:
            return dict(self._data) if key is None else self._data.get(key, default)

    def _set(self, key: str, value: Any) -> None:
        with _states_lock:
            self._data[key] = value

    def _update(self, values: dict[str, Any]) -> dict[str, Any]:
        with _states_lock:
            self._data.update(values)
            return dict(self._data)

    def _delete(self, key: str) -> None:
        with _states_lock:
            self._data.pop(key, None)

    def _clear(self) -> None:
        with _states_lock:
            self._data.clear()


class SyncState(_StateBase):
    """Subclass it and annotate a task parameter with the subclass."""

    def get(self, key: str | None = None, default: Any = None) -> Any:
        return self._get(key, default)

    def get_all(self) -> dict[str, Any]:
        return self._get(None, None)

    def set(self, key: str, value: Any) -> None:
        self._set(key, value)

    def update(self, **values: Any) -> dict[str, Any]:
        return self._update(values)

    def delete(self, key: str) -> None:
        self._delete(key)

    def clear(self) -> None:
        self._clear()


class AsyncState(_StateBase):
    """As ``SyncState``, with coroutine methods."""

    async def get(self, key: str | None = None, default: Any = None) -> Any:
        return self._get(key, default)

    async def get_all(self) -> dict[str, Any]:
        return self._get(None, None)

    async def set(self, key: str, value: Any) -> None:
        self._set(key, value)

    async def update(self, **values: Any) -> dict[str, Any]:
        return self._update(values)

    async def delete(self, key: str) -> None:
        self._delete(key)

    async def clear(self) -> None:
        self._clear()


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    name: str
    kind: str  # "depends" | "state" | "model"
    target: Any  # the Depends, the state class, or the model class


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(bare type, Annotated metadata) of an annotation; Optional[X] gives X."""
    metadata: list[Any] = []
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            annotation = options[0]
    return annotation, metadata


def _is_model(kind: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return (pydantic is not None and isinstance(kind, type)
            and issubclass(kind, pydantic.BaseModel))


def plan_injections(func: Callable[..., Any]) -> tuple[Injection, ...]:
    """The parameters of ``func`` that the worker fills in."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable string annotations: fall back to the raw ones
        hints = {}
    plan: list[Injection] = []
    has_model = False
    for param in inspect.signature(func).parameters.values():
        annotation = hints.get(param.name, param.annotation)
        kind, metadata = _unwrap(annotation)
        marker = param.default if isinstance(param.default, Depends) else next(
            (m for m in reversed(metadata) if isinstance(m, Depends)), None)
        if marker is not None:
            plan.append(Injection(param.name, "depends", marker))
        elif isinstance(kind, type) and issubclass(kind, _StateBase):
            plan.append(Injection(param.name, "state", kind))
        elif not has_model and _is_model(kind):
            plan.append(Injection(param.name, "model", kind))
            has_model = True
    return tuple(plan)


# -- resolving ---------------------------------------------------------------------------------


class Scope:
    """Values and cleanups of one scope (one task run, or one worker process)."""

    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.values: dict[int, Any] = {}

    async def close(self) -> None:
        await self.stack.aclose()


async def _produce(dep: Depends, stack: contextlib.AsyncExitStack) -> Any:
    func = dep.func
    if inspect.isasyncgenfunction(func):
        return await stack.enter_async_context(contextlib.asynccontextmanager(func)())
    if inspect.isgeneratorfunction(func):
        return stack.enter_context(contextlib.contextmanager(func)())
    value = func()
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        return await stack.enter_async_context(value)
    if hasattr(value, "__enter__") and hasattr(value, "__exit__"):
        return stack.enter_context(value)
    return value


async def inject(plan: tuple[Injection, ...], args: list[Any], kwargs: dict[str, Any],
                 task_scope: Scope, shared: Scope) -> list[Any]:
    """Fill ``kwargs`` from ``plan``; returns the positional arguments left for the call."""
    for item in plan:
        if item.kind == "depends":
            dep: Depends = item.target
            scope = task_scope if dep.scope is ScopeEnum.TASK else shared
            key = id(dep)
            if key not in scope.values:
                scope.values[key] = await _produce(dep, scope.stack)
            kwargs[item.name] = scope.values[key]
        elif item.kind == "state":
            kwargs[item.name] = item.target()
        elif item.name not in kwargs or not isinstance(kwargs[item.name], item.target):
            args = _build_model(item, args, kwargs)
    return args


def _build_model(item: Injection, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    model = item.target
    fields = list(model.model_fields)
    values = {name: kwargs.pop(name) for name in fields if name in kwargs}
    if isinstance(kwargs.get(item.name), dict):
        values.update(kwargs.pop(item.name))
    rest = list(args)
    for name in fields:
        if name not in values and rest:
            values[name] = rest.pop(0)
    kwargs[item.name] = model(**values)
    return rest


__all__ = ["AsyncState", "Depends", "ScopeEnum", "SyncState"]
