"""The one mechanism internal integrations plug into: named hooks, each a stack of layers.

Every hook qtasks calls is listed in ``HOOKS``, with what its context is; nothing calls a hook
that is not listed there. There are three kinds:

- an **onion** (``enqueue``, ``task_run``, ``task_call``): each layer is called as
  ``layer(ctx, call_next)`` and returns what the hook returns, usually ``call_next()``. A layer
  may act before and after ``call_next()``, change ``ctx``, or answer without calling it. One
  ``compose`` serves both flavours: in a sync onion ``call_next()`` returns the value, in an
  async one it returns an awaitable that an ``async def`` layer awaits, and a plain layer that
  only passes through (``return call_next()``) works in either;
- a **notification** (``worker_started``, ``worker_stopping``): each layer is called as
  ``layer(ctx)``; what it returns is awaited if it is awaitable;
- a **provider** (``commit``): one function that does the job, or none.

Layers live in a ``Hooks``: one for the whole process (``process_hooks``: integrations such as
Django's, installed by ``qtasks.integrations``) and one per app (``app.hooks``: modes such as
capture, switched on for one app). The app's layers are outside the process's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOOKS: dict[str, tuple[str, str]] = {
    # name: (kind, what the context is and when it runs)
    "enqueue": ("onion", "an Enqueue; around the send of one task by the app. Answering without "
                         "call_next() keeps the task from the queue: return its record (capture, "
                         "immediate mode). Sync in the sync app, awaited in the async app."),
    "task_run": ("onion", "a TaskRun; async, on the worker's loop, around the call of one task "
                          "(after middlewares, plugins and dependency injection)."),
    "task_call": ("onion", "a TaskRun; sync, in the pool thread that calls a plain task "
                           "function (or drives a plain generator)."),
    "worker_started": ("notification", "the Worker, before it claims its first task; "
                                       "``ctx.pool`` is its thread pool."),
    "worker_stopping": ("notification", "the Worker, after its last task; its pool is alive."),
    "task_done": ("notification", "a TaskDone; on the worker's loop, after each task's outcome "
                                  "is decided (before it is written); a task set aside counts "
                                  "too. Layers are plain functions, called, never awaited: "
                                  "keep them cheap. Looked up once per worker: with no layer "
                                  "it costs nothing."),
    "commit": ("provider", "enqueue_on_commit(app, task_name, args, kwargs, priority, when, "
                           "using, sync=True): defer an enqueue to a transaction's commit."),
}

Layer = Callable[..., Any]


@dataclass
class Enqueue:
    """The context of the ``enqueue`` hook: one task the app is about to send."""

    app: Any
    new: Any  # the NewTask (uuid, name, priority, encoded arguments, envelope, queue)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None  # how long add_task waits for the final record; a layer may set it
    awaiting: bool  # True in the async app: call_next() returns an awaitable


@dataclass(slots=True)
class TaskDone:
    """The context of the ``task_done`` hook: one task a worker has run (or set aside)."""

    worker: Any
    outcome: Any  # the Outcome: uuid, task_name, status, dead_letter, follow_up (a retry)
    queue: str
    deliveries: int  # earlier starts of this message that did not finish (0: first run)
    started_at: float  # epoch seconds the run began
    seconds: float  # how long it ran

    @property
    def waited(self) -> float | None:
        """Seconds from enqueue to start, when the record's creation time is known."""
        created = self.outcome.created_at
        return max(0.0, self.started_at - created) if created else None

    @property
    def result(self) -> str:
        """``success``, ``error``, ``cancel``, ``retry`` (failed, another attempt queued) or
        ``dead_letter`` (set aside)."""
        if self.outcome.dead_letter:
            return "dead_letter"
        if self.outcome.follow_up is not None:
            return "retry"
        return str(self.outcome.status)


def compose(layers: list[Layer] | tuple[Layer, ...], endpoint: Callable[[Any], Any],
            awaiting: bool = False) -> Callable[[Any], Any]:
    """``ctx -> result``: ``layers[0]`` outermost, ``endpoint(ctx)`` at the centre.

    With ``awaiting``, every ``call_next()`` returns an awaitable, even where a plain layer (or
    the endpoint) answered with a value, so an ``async def`` layer can always await it.
    """
    call = _ensure_awaitable(endpoint) if awaiting else endpoint
    for layer in reversed(layers):
        call = _wrap(layer, call, awaiting)
    return call


def _wrap(layer: Layer, inner: Callable[[Any], Any], awaiting: bool) -> Callable[[Any], Any]:
    def call(ctx: Any) -> Any:
        result = layer(ctx, lambda: inner(ctx))
        if awaiting and not inspect.isawaitable(result):
            return _ready(result)
        return result

    return call


def _ensure_awaitable(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(ctx: Any) -> Any:
        result = function(ctx)
        return result if inspect.isawaitable(result) else _ready(result)

    return call


async def _ready(value: Any) -> Any:
    return value


def _known(name: str, kind: str | None = None) -> None:
    entry = HOOKS.get(name)
    if entry is None:
        raise ValueError(f"unknown hook {name!r}; the hooks are: {', '.join(HOOKS)}")
    if kind is not None and entry[0] != kind:
        raise ValueError(f"hook {name!r} is a {entry[0]}, not a {kind}")


_version = [0]  # bumped by every change to any Hooks: what is built from layers can be cached


def version() -> int:
    """A number that changes whenever a layer is added or removed anywhere in the process."""
    return _version[0]


class Hooks:
    """Layers by hook name; a layer added later is outside the earlier ones."""

    def __init__(self) -> None:
        self._layers: dict[str, tuple[Layer, ...]] = {}
        self._providers: dict[str, Callable[..., Any]] = {}

    def add(self, name: str, layer: Layer) -> None:
        _known(name)
        if HOOKS[name][0] == "provider":
            raise ValueError(f"hook {name!r} takes one provider: use provide()")
        current = self._layers.get(name, ())
        if layer not in current:
            self._layers[name] = (layer, *current)
            _version[0] += 1

    def remove(self, name: str, layer: Layer) -> None:
        _known(name)
        self._layers[name] = tuple(x for x in self._layers.get(name, ()) if x is not layer)
        _version[0] += 1

    def has(self, name: str, layer: Layer) -> bool:
        return layer in self._layers.get(name, ())

    def layers(self, name: str) -> tuple[Layer, ...]:
        return self._layers.get(name, ())

    def provide(self, name: str, function: Callable[..., Any]) -> None:
        _known(name, "provider")
        self._providers[name] = function

    def provider(self, name: str) -> Callable[..., Any] | None:
        _known(name, "provider")
        return self._providers.get(name)


process_hooks = Hooks()


def stacked(name: str, *extra: Hooks) -> tuple[Layer, ...]:
    """The layers of ``name``: those of ``extra`` (outermost first), then the process's."""
    found: tuple[Layer, ...] = ()
    for hooks in extra:
        found += hooks.layers(name)
    return found + process_hooks.layers(name)


async def notify(name: str, ctx: Any, *extra: Hooks) -> None:
    """Call every layer of the notification ``name`` with ``ctx``, awaiting what needs it."""
    _known(name, "notification")
    for layer in stacked(name, *extra):
        result = layer(ctx)
        if inspect.isawaitable(result):
            await result
