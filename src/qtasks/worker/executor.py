"""Running one delivery to an :class:`Outcome`. Never raises for anything a task or message does.

Malformed messages, unknown task names and results that cannot be stored become ``error``
records that are also dead-lettered; an exception raised by the task is an ordinary ``error``
record with its traceback, or, if the task has retries left for it, a ``retry`` record whose
next attempt is enqueued with the outcome (same transaction). ``TaskCancelError`` gives
``cancel``. Task names are looked up only in the app's own registry; nothing in a message is
ever imported.

Plain functions (and plain generators) run in the worker's thread pool; ``max_time`` stops
waiting for them at the deadline and records the timeout, but a thread cannot be interrupted:
it runs on in the background, its result is dropped, and it occupies a pool thread until it
returns. Coroutines are cancelled at the deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from qtasks.backends.base import Delivery, NewTask, Outcome
from qtasks.core.codec import Envelope, decode_envelope, dumps, encode_envelope, encode_result, loads
from qtasks.core.definition import TaskDefinition
from qtasks.core.delivery import class_path
from qtasks.core.hooks import compose, stacked
from qtasks.core.hooks import version as hooks_version
from qtasks.core.injection import Scope, inject
from qtasks.core.middleware import TaskRun
from qtasks.core.record import Task
from qtasks.core.retry import remaining_attempts, retry_delay, should_retry
from qtasks.exceptions import (
    MalformedMessage,
    ResultEncodingError,
    TaskCancelError,
    TaskPluginTriggerError,
    UnknownTaskError,
)
from qtasks.plugins.runner import trigger_async
from qtasks.worker import steps
from qtasks.worker.task_executor import executor_layer
from qtasks.worker.threads import TaskThreads

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

log = logging.getLogger("qtasks.worker")


def set_aside(delivery: Delivery, reason: str, error: type[BaseException], app: Any = None,
              **fields: object) -> Outcome:
    """An ``error`` record that is also dead-lettered, naming ``error``'s class.

    Without a task name in ``fields``, the name is read from the message if it can be.
    """
    uuid = fields.pop("uuid", None) or delivery.uuid or str(uuid4())
    name = fields.pop("task_name", None)
    if name is None:
        try:
            name = decode_envelope(delivery.payload).task_name
        except MalformedMessage:
            name = "<malformed>"
    return Outcome(delivery=delivery, uuid=str(uuid), status="error", traceback=reason,
                   dead_letter=reason, task_name=str(name), priority=delivery.priority,
                   extra_json=dumps({"exception": class_path(error)}),
                   **fields)  # type: ignore[arg-type]


async def execute(app: BaseQueueTasks, delivery: Delivery, pool: Executor,
                  worker: Any = None, run: Any = None) -> Outcome:
    """Decode, look up, run and encode one delivery. ``run`` (the worker's note of a running
    task) is told the task's name once it is known."""
    try:
        env = decode_envelope(delivery.payload)
    except MalformedMessage as exc:
        log.error("set aside a malformed message (queue id %s): %s", delivery.tag, exc)
        return set_aside(delivery, f"MalformedMessage: {exc}", MalformedMessage,
                         task_name="<malformed>")
    definition = app._definition(env.task_name)
    if definition is None:
        reason = (f"UnknownTaskError: task {env.task_name!r} is not registered in app "
                  f"{app.name!r} (is the module defining it imported by the worker?)")
        log.error("task %s: %s", env.uuid, reason)
        return set_aside(delivery, reason, UnknownTaskError, **_fields(env, with_args=True))
    if run is not None:
        run.name = env.task_name
    plugged = bool(app._plugins)
    if plugged:
        await trigger_async(app._plugins, "worker_add", worker=worker, task_name=env.task_name,
                            uuid=env.uuid, priority=env.priority, args=env.args, kw=env.kwargs,
                            created_at=env.created_at)
    events = app.events
    if not events.empty and events.has("task_running"):
        await events.fire("task_running", worker=worker, task_func=definition, task_broker=env)
    outcome = await _outcome(app, definition, env, delivery, pool, worker, plugged)
    if not events.empty:
        await _announce(app, worker, definition, env, outcome)
    if plugged:
        backend = app.backend
        for name, extra in (
            ("worker_execute_after", {"task_func": definition, "task_broker": env}),
            ("worker_remove_finished_task", {"worker": worker, "broker": backend,
                                             "task_func": definition, "task_broker": env}),
            ("broker_remove_finished_task", {"broker": backend, "storage": backend}),
            ("storage_remove_finished_task", {"storage": backend, "task_broker": env}),
        ):
            merged = await trigger_async(app._plugins, name, model=outcome, **extra)
            replaced = merged.get("model")  # a plugin may change the record (QTasks' test plugin)
            if isinstance(replaced, Outcome) and replaced.uuid == outcome.uuid:
                outcome = replaced
            elif replaced is not None and replaced is not outcome:
                log.warning("a plugin at %s returned a model that is not this task's outcome "
                            "(a %s); it is not stored: return a changed copy of the model "
                            "given (dataclasses.replace)", name, type(replaced).__name__)
    return outcome


def _fields(env: Envelope, with_args: bool = False) -> dict[str, Any]:
    # The record normally exists already (enqueue wrote it), so the arguments are sent again
    # only with the rare outcomes that might have to create it.
    fields: dict[str, Any] = {"uuid": str(env.uuid), "task_name": env.task_name,
                              "created_at": env.created_at}
    if with_args:
        fields.update(args_json=dumps(env.args), kwargs_json=dumps(env.kwargs))
    return fields


async def _outcome(app: BaseQueueTasks, definition: TaskDefinition, env: Envelope,
                   delivery: Delivery, pool: Executor, worker: Any, plugged: bool) -> Outcome:
    if definition.echo:
        handle = _echo_handle(app, definition, env, worker)
        args, ctx = [handle, *env.args], handle.ctx
    else:
        args, ctx = list(env.args), None

    worker_id = getattr(worker, "id", None)  # the record keeps it (None: run inline)
    began = time.time()

    def done(**fields: Any) -> Outcome:
        if ctx is not None and ctx._extra:  # fields an integration stored through the context
            stored = loads(fields["extra_json"]) if fields.get("extra_json") else {}
            fields["extra_json"] = dumps({**ctx._extra, **stored})
        return Outcome(delivery=delivery, priority=env.priority, worker=worker_id,
                       started_at=began, **_fields(env), **fields)

    run = TaskRun(task_func=definition, task_broker=env, args=args, kwargs=dict(env.kwargs),
                  worker=worker, pool=pool)
    plugins = app._plugins if plugged else None
    try:
        run.result = await _onion(app, definition, plugged)(run)
    except TaskCancelError as exc:
        reason = str(exc) or f"{env.task_name}.cancel"
        return done(status="cancel", extra_json=dumps({"cancel_reason": reason}))
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        # SystemExit/KeyboardInterrupt raised *by the task* are its failure, not the worker's.
        text = traceback.format_exc()
        remaining = remaining_attempts(definition, env.retry)
        if should_retry(definition, remaining, exc):
            if plugins:
                await trigger_async(plugins, "worker_task_error_retry", broker=app.backend,
                                    task_func=definition, task_broker=env, trace=text)
            return _retry(definition, env, done, text, remaining, delivery.queue)
        log.error("task %s (%s) failed:\n%s", env.task_name, env.uuid, text)
        extra: dict[str, Any] = {"exception": class_path(type(exc))}
        if definition.retry is not None:
            extra["retry"] = 0
        return done(status="error", traceback=text, extra_json=dumps(extra))
    if plugins:
        merged = await trigger_async(plugins, "task_executor_decode", task_executor=run,
                                     result=run.result)
        run.result = merged.get("result", run.result)
    try:
        returning = _encode(definition, run.result)
    except TypeError as exc:
        reason = f"ResultEncodingError: {exc}"
        log.error("task %s (%s): %s", env.task_name, env.uuid, reason)
        return set_aside(delivery, reason, ResultEncodingError, **_fields(env, with_args=True))
    return done(status="success", returning_json=returning)


def _onion(app: BaseQueueTasks, definition: TaskDefinition,
           plugged: bool) -> Callable[[TaskRun], Any]:
    """The composed execution onion of ``definition``, built once and kept until what it is
    made of changes (plugins present, the app's middlewares, any hook's layers)."""
    key = (hooks_version(), plugged, tuple(app.middlewares_before),
           tuple(app.middlewares_after), app._default_executor, definition.executor)
    cached = app._onions.get(definition.name)
    if cached is not None and cached[0] is definition and cached[1] == key:
        return cached[2]
    layers, endpoint = _layers(app, definition), _endpoint(app)
    onion = compose(layers, endpoint, awaiting=True) if layers else endpoint
    app._onions[definition.name] = (definition, key, onion)
    return onion


def _layers(app: BaseQueueTasks, definition: TaskDefinition) -> list[Any]:
    """The execution onion of one task, outermost first.

    The plugins' after-execute triggers, middlewares (with the plugin triggers around them),
    the plugins' before-execute triggers (these three are one executor layer when the task,
    or the app's worker, has an executor class), dependency injection, the plugins' run triggers, then
    the ``task_run`` hook's layers (integrations); the task itself is the centre
    (``_endpoint``). Plugin layers are there only when the app has plugins.
    """
    plugins = app._plugins
    layers: list[Any] = []
    if definition.executor is not None or app._default_executor is not None:
        # an executor class runs the plugin and middleware steps itself (task_executor.py)
        layers.append(functools.partial(executor_layer, app))
    else:
        if plugins:
            layers.append(functools.partial(_plugin_after_layer, plugins))
        if plugins or app.middlewares_before or app.middlewares_after \
                or definition.middlewares_before or definition.middlewares_after:
            layers.append(functools.partial(_middleware_layer, app))
        if plugins:
            layers.append(functools.partial(_plugin_before_layer, plugins))
    if definition.inject:
        layers.append(_injection_layer)
    if app._plugins:
        layers.append(functools.partial(_plugin_run_layer, app._plugins))
    layers.extend(stacked("task_run", app.hooks))
    return layers


def _endpoint(app: BaseQueueTasks) -> Callable[[TaskRun], Any]:
    """The centre of the onion: the task function, inside the ``task_call`` hook's layers
    when it runs in a pool thread."""
    around = stacked("task_call", app.hooks)

    async def call(run: TaskRun) -> Any:
        return await _call(run, run.pool, around)

    return call


async def _middleware_layer(app: BaseQueueTasks, run: TaskRun,
                            call_next: Callable[[], Any]) -> Any:
    """QTasks middlewares: the app's and the task's ``before`` ones, then (after the task) the
    task's and the app's ``after`` ones."""
    before, after = steps.middleware_lists(app, run.task_func)
    await steps.run_middlewares(app._plugins, run, before, "before")
    run.result = await call_next()
    await steps.run_middlewares(app._plugins, run, after, "after")
    return run.result


async def _plugin_before_layer(plugins: Any, run: TaskRun, call_next: Callable[[], Any]) -> Any:
    await steps.plugins_before(plugins, run)
    return await call_next()


async def _plugin_after_layer(plugins: Any, run: TaskRun, call_next: Callable[[], Any]) -> Any:
    run.result = await call_next()
    return await steps.plugins_after(plugins, run)


async def _injection_layer(run: TaskRun, call_next: Callable[[], Any]) -> Any:
    """``Depends``: resolve the task's dependencies; close its task-scoped ones after it."""
    definition, worker = run.task_func, run.worker
    task_scope = Scope()
    try:
        shared = worker.shared_scope if worker is not None else Scope()
        head = run.args[:1] if definition.echo else []
        rest = await inject(definition.inject, run.args[len(head):], run.kwargs, task_scope,
                            shared)
        run.args = [*head, *rest]
        return await call_next()
    finally:
        await task_scope.close()  # this run's task-scoped dependencies only


async def _plugin_run_layer(plugins: Any, run: TaskRun, call_next: Callable[[], Any]) -> Any:
    definition, env = run.task_func, run.task_broker
    try:
        await trigger_async(plugins, "worker_run_task_before", worker=run.worker,
                            task_func=definition, task_broker=env)
        result = await call_next()
        name, key = (("task_executor_run_task_gen", "results") if definition.generating
                     else ("task_executor_run_task", "result"))
        merged = await trigger_async(plugins, name, task_executor=run, **{key: result})
        return merged.get(key, result)
    except TaskPluginTriggerError as exc:
        return await _plugin_decides(plugins, run, exc)
    finally:
        await trigger_async(plugins, "task_executor_task_close", task_executor=run,
                            task_func=definition, task_broker=env)


async def _plugin_decides(plugins: Any, run: TaskRun, exc: TaskPluginTriggerError) -> Any:
    """A task raised TaskPluginTriggerError: a plugin returning {"result": x} makes x its
    result; without one, the error stands."""
    merged = await trigger_async(plugins, "task_executor_run_task_trigger_error",
                                 task_executor=run, task_func=run.task_func,
                                 task_broker=run.task_broker, e=exc)
    if "result" not in merged:
        raise exc
    return merged["result"]


_FINAL_EVENTS = {"success": "task_success", "error": "task_error", "cancel": "task_cancel"}


async def _announce(app: BaseQueueTasks, worker: Any, definition: TaskDefinition,
                    env: Envelope, outcome: Outcome) -> None:
    """Fire task_stopping and task_success/error/cancel, building the record only if needed."""
    events = app.events
    named = _FINAL_EVENTS.get(outcome.status)
    wanted = [n for n in ("task_stopping", named) if n and events.has(n)]
    if not wanted:
        return
    now = datetime.now(UTC)
    extra = loads(outcome.extra_json) if outcome.extra_json else {}
    model = Task(
        status=outcome.status, uuid=env.uuid, priority=env.priority, task_name=env.task_name,
        args=tuple(env.args), kwargs=env.kwargs,
        created_at=datetime.fromtimestamp(env.created_at, tz=UTC), updated_at=now,
        returning=loads(outcome.returning_json) if outcome.returning_json else None,
        traceback=outcome.traceback, retry=extra.pop("retry", None), extra=extra, _app=app,
    )
    for name in wanted:
        await events.fire(name, worker=worker, task_func=definition, task_broker=env,
                          model=model)


def _echo_handle(app: BaseQueueTasks, definition: TaskDefinition, env: Envelope,
                 worker: Any = None) -> Any:
    """The handle an ``echo=True`` task gets first: bound to this app, with a live ``ctx``.

    Its flavour follows the function: ``async def`` gets an ``AsyncTask`` (``await
    self.add_task``), a plain function a ``SyncTask``, whatever the app's flavour.
    """
    from qtasks.context import AsyncContext, SyncContext
    from qtasks.handles import AsyncTask, SyncTask

    is_async = definition.awaiting or definition.generating == "async"
    handle = (AsyncTask if is_async else SyncTask)(
        task_name=definition.name, priority=env.priority, echo=True,
        max_time=definition.max_time, retry=definition.retry,
        retry_on_exc=definition.retry_on_exc, decode=definition.decode, tags=definition.tags,
        description=definition.description, generate_handler=definition.generate_handler,
        extra=definition.extra, app=app, func=definition.func,
    )
    context = AsyncContext if is_async else SyncContext
    ctx: AsyncContext | SyncContext = context(app, definition.name, env.uuid,
                                              definition.generate_handler)
    ctx._worker_id = getattr(worker, "id", None)
    ctx._envelope = env
    handle.ctx = ctx
    return handle


async def _call(run: TaskRun, pool: Executor, around: tuple[Any, ...] = ()) -> Any:
    """Run the task function (or drain its generator), under ``max_time`` if it has one.

    A plain function (or plain generator) runs in a pool thread, inside ``around``: the layers
    of the ``task_call`` hook, in that thread.
    """
    definition, args, kwargs = run.task_func, run.args, run.kwargs
    func = definition.func
    if definition.generating == "async":
        running: Any = _drain_async(func(*args, **kwargs), definition.generate_handler)
    elif definition.awaiting:
        running = func(*args, **kwargs)
    else:
        loop = asyncio.get_running_loop()
        if definition.generating == "sync":
            call = functools.partial(_drain_sync, func, args, kwargs,
                                     definition.generate_handler, loop)
        else:
            call = functools.partial(func, *args, **kwargs)
        if around:
            inner = call
            call = functools.partial(compose(around, lambda _run: inner()), run)
        if isinstance(pool, TaskThreads):
            running = pool.run(functools.partial(contextvars.copy_context().run, call))
        else:
            running = loop.run_in_executor(pool, contextvars.copy_context().run, call)
    if definition.max_time is None:
        return await running
    try:
        return await asyncio.wait_for(running, definition.max_time)
    except TimeoutError:
        raise TimeoutError(
            f"Time limit exceeded for task {definition.name}: {definition.max_time} seconds"
        ) from None


async def _drain_async(gen: Any, handler: Callable[[Any], Any] | None) -> list[Any]:
    values = []
    async for value in gen:
        if handler is not None:
            value = handler(value)
            if inspect.isawaitable(value):
                value = await value
        values.append(value)
    return values


def _drain_sync(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any],
                handler: Callable[[Any], Any] | None, loop: asyncio.AbstractEventLoop) -> list[Any]:
    # Runs in a pool thread; an async handler is run on the worker's loop, which is free.
    values = []
    for value in func(*args, **kwargs):
        if handler is not None:
            value = handler(value)
            if inspect.isawaitable(value):
                value = asyncio.run_coroutine_threadsafe(steps.awaited(value), loop).result()
        values.append(value)
    return values


def _encode(definition: TaskDefinition, result: Any) -> str:
    """The stored form of a result: JSON, or what the task's ``decode`` returns (JSON text)."""
    if result is None and definition.decode is None:  # most tasks return nothing
        return "null"
    if hasattr(result, "model_dump") and hasattr(type(result), "model_fields"):
        result = result.model_dump(mode="json")  # a pydantic model
    if definition.decode is None:
        return encode_result(result)
    text = definition.decode(result)
    if not isinstance(text, str):
        raise TypeError(f"decode of task {definition.name!r} returned a {type(text).__name__}; "
                        f"it must return JSON text (a str)")
    try:
        loads(text)
    except ValueError:
        raise TypeError(f"decode of task {definition.name!r} returned text that is not JSON: "
                        f"{text[:80]!r}") from None
    return text


def _retry(definition: TaskDefinition, env: Envelope, done: Callable[..., Outcome], text: str,
           remaining: int, queue: str) -> Outcome:
    """A ``retry`` record linked to the next attempt, which is enqueued with it."""
    attempt = (definition.retry or 0) - remaining
    wait = retry_delay(definition, max(attempt, 0))
    child, now = str(uuid4()), time.time()
    args_json, kwargs_json = dumps(env.args), dumps(env.kwargs)
    follow_up = NewTask(
        uuid=child, task_name=env.task_name, priority=env.priority, args_json=args_json,
        kwargs_json=kwargs_json, created_at=now,
        envelope=encode_envelope(child, env.task_name, env.priority, args_json, kwargs_json, now,
                                 retry=remaining - 1,
                                 meta_json=dumps(env.meta) if env.meta is not None else None),
        eta=now + wait if wait > 0 else None, queue=queue,  # the retry stays in its own queue
        extra_json=dumps({"retry": remaining - 1, "retry_parent_uuid": str(env.uuid)}),
    )
    log.warning("task %s (%s) failed; retrying as %s in %.2fs (%d retries left after it)",
                env.task_name, env.uuid, child, wait, remaining - 1)
    return done(status="retry", traceback=text, follow_up=follow_up,
                extra_json=dumps({"retry": remaining, "retry_child_uuid": child}))
