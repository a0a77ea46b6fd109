"""The application: one base for registration, config and routers; two faces for I/O.

``QueueTasks`` (sync, ``qtasks.QueueTasks``) and ``AsyncQueueTasks``
(``qtasks.asyncio.QueueTasks``) differ only in whether ``add_task``/``get``/``ping``/
``flush_all`` block or are awaited. Both can run the worker (``run_forever``), which is async.
"""

from __future__ import annotations

import logging
import time
from collections import ChainMap
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload
from uuid import UUID, uuid4

from qtasks.backends import Backend, Client, Transport, backend_from_url, connect
from qtasks.backends.base import BackendStats, DeadLetter, NewTask
from qtasks.core import apps as _state
from qtasks.core.codec import dumps, encode_arguments, encode_envelope, loads
from qtasks.core.config import QueueConfig
from qtasks.core.definition import (
    TaskDefinition,
    TaskTable,
    build_definition,
    check_middleware,
    task_decorator,
)
from qtasks.core.delays import start_at
from qtasks.core.hooks import Enqueue, Hooks, compose, stacked
from qtasks.core.hooks import version as hooks_version
from qtasks.core.plugins import PluginRegistry
from qtasks.core.record import RecordRow, Task, record_from_row
from qtasks.events import Events
from qtasks.integrations import activate as activate_integrations
from qtasks.plugins.runner import trigger_async, trigger_sync
from qtasks.shared import registry as shared_registry
from qtasks.version import __version__
from qtasks.worker.background import eager_layer, stop_worker
from qtasks.worker.lending import slot_lent

if TYPE_CHECKING:
    from qtasks.handles import AsyncTask, AsyncTaskDecorator, SyncTask, SyncTaskDecorator

P = ParamSpec("P")
R = TypeVar("R")

_DEFERRED = object()  # the endpoint of a bulk enqueue: sent later, with the others


def _deferred(ctx: Enqueue) -> object:
    return _DEFERRED


async def _adeferred(ctx: Enqueue) -> object:
    return _DEFERRED


def _as_uuid(uuid: UUID | str) -> str:
    return str(uuid if isinstance(uuid, UUID) else UUID(str(uuid)))


class BaseQueueTasks:
    """What both app flavours share. See ``QueueTasks`` for the constructor arguments."""

    _flavour = "sync"

    def __init__(
        self,
        name: str = "QueueTasks",
        broker_url: str | None = None,
        broker: Backend | None = None,
        worker: Any = None,
        log: logging.Logger | Any = None,
        config: QueueConfig | None = None,
        events: Any = None,
        storage_url: str | None = None,
        storage: Backend | None = None,
    ) -> None:
        for arg, value in (("broker", broker), ("storage", storage)):
            if value is not None and not isinstance(value, Backend):
                raise TypeError(
                    f"{arg}= takes a qtasks backend (qtasks.backends.Backend), not "
                    f"{type(value).__name__}; for a URL use {arg}_url= (see docs/migration.md)"
                )
        self.name = name
        self.version = __version__
        self.config = config or QueueConfig()
        self.broker_url = broker_url or self.config.broker_url
        self.storage_url = storage_url or self.config.storage_url
        self._backend = broker
        # a QTasks-style broker object may carry its storage (qtasks.brokers)
        self._storage = storage if storage is not None else getattr(broker, "paired_storage", None)
        if worker is None:  # QTasks apps always have a worker object (qtasks.workers)
            from qtasks.compat.components import default_worker

            worker = default_worker(self)
        self.worker = worker
        self.log = log or logging.getLogger(f"qtasks.{name}")
        self.events = events if events is not None else Events()
        self.middlewares_before: list[Any] = []
        self.middlewares_after: list[Any] = []
        self.starter = None
        self.plugins: dict[str, list[Any]] = {}  # trigger name (or "Globals") -> plugins
        self._plugins = PluginRegistry()
        self.routers: list[Any] = []
        self._own_tasks = TaskTable()
        self.tasks: ChainMap[str, TaskDefinition] = ChainMap(self._own_tasks, shared_registry)
        self._client: Client | None = None
        self._transport: Transport | None = None
        self._worker: Any = None  # the Worker that run_forever is running, if any
        self._timers: list[Any] = []  # timers created for this app (qtasks.timers)
        self._background: Any = None  # (worker, thread) of eager mode and test cases
        self.hooks = Hooks()  # this app's layers (capture, immediate mode), see qtasks.core.hooks
        self._onions: dict[str, Any] = {}  # task name -> its composed execution onion (worker)
        # (endpoint, awaiting) -> (hooks version, the enqueue layers composed around it)
        self._chains: dict[Any, tuple[int, Any]] = {}
        _state.app_main = self
        _state.log_main = self.log
        _state.apps.add(self)
        self._attach_worker(worker)

    # -- registration -------------------------------------------------------------------------

    def task(self, name: str | Callable[..., Any] | None = None, *, priority: int | None = None,
             echo: bool = False, max_time: float | None = None, retry: int | None = None,
             retry_on_exc: list[type[Exception]] | None = None,
             decode: Callable[..., Any] | None = None, tags: list[str] | None = None,
             description: str | None = None, generate_handler: Callable[..., Any] | None = None,
             executor: Any = None, middlewares_before: list[Any] | None = None,
             middlewares_after: list[Any] | None = None, **kwargs: Any) -> Any:
        """Register a task: ``@app.task``, ``@app.task()``, ``@app.task("name")``, or with options.

        ``priority`` defaults to ``config.task_default_priority``; a lower number runs first.
        Extra keyword arguments are kept in the definition's ``extra``.
        """
        from qtasks.handles import handle_class

        options = dict(kwargs, echo=echo, max_time=max_time, retry=retry,
                       retry_on_exc=retry_on_exc, decode=decode, tags=tags,
                       description=description, generate_handler=generate_handler,
                       executor=executor, middlewares_before=middlewares_before,
                       middlewares_after=middlewares_after)

        def make(func: Callable[..., Any], task_name: str | None) -> Any:
            prio = self.config.task_default_priority if priority is None else priority
            definition = build_definition(func, task_name, prio, options)
            self.check_name_free(definition, exclude=self._own_tasks)
            self._own_tasks.register(definition, f"app {self.name!r}")
            return handle_class(self._flavour).from_definition(definition, app=self)

        return task_decorator(name, make)

    def check_name_free(self, definition: TaskDefinition, exclude: TaskTable) -> None:
        """``ValueError`` if another function is known to this app under the same name."""
        for table in self.tasks.maps:
            if table is exclude:
                continue
            current = table.get(definition.name)
            if current is not None and not current.same_function(definition):
                raise ValueError(f"Task with name {definition.name} is already registered!")

    def include_router(self, router: Any) -> None:
        """Attach a router; its tasks, present and future, become tasks of this app."""
        for definition in router.tasks.values():
            self.check_name_free(definition, exclude=router.tasks)
        self.routers.append(router)
        router._apps.append(self)
        self.tasks.maps.insert(len(self.tasks.maps) - 1, router.tasks)

    def _attach_worker(self, worker: Any) -> None:
        """A QTasks worker object (``qtasks.workers``): its broker serves an app given none,
        and it learns its app (plugins added to it land on the app's worker triggers)."""
        if self._backend is None and isinstance(getattr(worker, "broker", None), Backend):
            self._backend = worker.broker
            if self._storage is None:
                self._storage = getattr(worker.broker, "paired_storage", None)
        bind = getattr(worker, "bind", None)
        if bind is not None:
            bind(self)

    @property
    def _concurrency(self) -> int:
        """Tasks a worker of this app runs at once unless told otherwise: a QTasks worker
        object's own ``config.max_tasks_process`` (``worker=``), else the app config's."""
        own = getattr(self.worker, "max_tasks_process", None)
        return int(own) if own else self.config.max_tasks_process

    @property
    def _default_executor(self) -> Any:
        """The executor class every task without its own runs through: a QTasks worker
        object's (``worker=``) ``task_executor``, when it is not the default one."""
        return getattr(self.worker, "custom_executor", None)

    # -- backend ------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The broker's backend, created on first use from ``broker_url`` (or
        ``QTASKS_BROKER_URL``)."""
        if self._backend is None:
            self._backend = backend_from_url(self.broker_url, self.name, self.config)
        if self._backend.config is None:
            self._backend.config = self.config
            _ = self.storage  # a separate result store is paired with it (broker.storage)
        return self._backend

    broker = backend  # the QTasks name

    @property
    def storage(self) -> Backend:
        """The result store's backend: ``storage_url`` (``QTASKS_STORAGE_URL``), else the
        broker's own."""
        if self._storage is None:
            separate = self.storage_url and self.storage_url != self.broker_url
            self._storage = (backend_from_url(self.storage_url, self.name, self.config)
                             if separate else self.backend)
            if self._storage is not self.backend and self.backend.paired_storage is None:
                self.backend.paired_storage = self._storage  # QTasks' broker.storage
        return self._storage

    def _swap_backend(self, backend: Backend | None, storage: Backend | None = None) -> tuple[Any, ...]:
        """Use ``backend`` (and ``storage``) from now on; returns what ``_restore_backend``
        needs to undo it (test cases, fixtures)."""
        saved = (self._backend, self._storage, self._client, self._transport)
        self._backend, self._storage = backend, storage
        self._client = self._transport = None
        return saved

    def _restore_backend(self, saved: tuple[Any, ...]) -> None:
        self._backend, self._storage, self._client, self._transport = saved

    def _connect(self) -> None:
        store = self.storage
        self._transport, self._client = connect(self.backend,
                                                None if store is self.backend else store)

    @property
    def client(self) -> Client:
        """The blocking side of the backend (the sync app, operator commands)."""
        if self._client is None:
            self._connect()
        assert self._client is not None
        return self._client

    @property
    def transport(self) -> Transport:
        """The async side of the backend (the worker, the async app)."""
        if self._transport is None:
            self._connect()
        assert self._transport is not None
        return self._transport

    # -- shared halves of the I/O methods -----------------------------------------------------

    def _prepare(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 priority: int | None, when: float | None = None, queue: str | None = None,
                 extra: dict[str, Any] | None = None, uuid: UUID | None = None) -> NewTask:
        return self._new_task(self._encoded(task_name, args, kwargs, priority, queue), when,
                              extra, uuid)

    def _encoded(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 priority: int | None, queue: str | None) -> tuple[str, int, str, str, str]:
        """What can fail in preparing a task, done: ``(name, priority, queue, args_json,
        kwargs_json)``, or ``ValueError``/``TypeError`` saying what is wrong with the call."""
        if not isinstance(task_name, str) or not task_name:
            raise ValueError("Task name is not specified.")
        if priority is None or queue is None:
            known = self._definition(task_name)
            if priority is None:
                priority = (known.priority if known is not None
                            else self.config.task_default_priority)
            if queue is None:
                queue = known.queue if known is not None else "default"
        args_json, kwargs_json = encode_arguments(task_name, args, kwargs)
        return task_name, int(priority), queue, args_json, kwargs_json

    @staticmethod
    def _new_task(encoded: tuple[str, int, str, str, str], when: float | None,
                  extra: dict[str, Any] | None = None, uuid: UUID | None = None) -> NewTask:
        """The rest of preparing a task (nothing here fails): its uuid, time and envelope."""
        task_name, priority, queue, args_json, kwargs_json = encoded
        uuid, now = uuid or uuid4(), time.time()
        text = str(uuid)
        extra_json = dumps(extra) if extra else None  # stored on the record and sent along
        envelope = encode_envelope(text, task_name, priority, args_json, kwargs_json, now,
                                   meta_json=extra_json)
        return NewTask(text, task_name, priority, args_json, kwargs_json, now, envelope,
                       eta=when, queue=queue, extra_json=extra_json, uuid_obj=uuid)

    def _new_record(self, new: NewTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        when = datetime.fromtimestamp(new.created_at, tz=UTC)
        return Task(status="new", uuid=new.uuid_obj, priority=new.priority,
                    task_name=new.task_name, args=tuple(args), kwargs=dict(kwargs),
                    created_at=when, updated_at=when,
                    extra=loads(new.extra_json) if new.extra_json else {}, _app=self)

    def _definition(self, name: str) -> TaskDefinition | None:
        """``self.tasks.get(name)``, looking in the app's own table first without the
        ``ChainMap``'s per-call scan while the own table is its first map (the answer is then
        the same)."""
        tasks = self.tasks
        maps = getattr(tasks, "maps", None)
        if maps and maps[0] is self._own_tasks:
            found = self._own_tasks.get(name)
            if found is not None:
                return found
        return tasks.get(name)

    @property
    def _final(self) -> frozenset[str]:
        return frozenset(self.config.result_statuses_end)

    def _record(self, row: RecordRow | None) -> Task | None:
        return record_from_row(row, self) if row is not None else None

    def _before_enqueue(self, merged: dict[str, Any], task_name: str, args: tuple[Any, ...],
                        kwargs: dict[str, Any], priority: int | None
                        ) -> tuple[str, tuple[Any, ...], dict[str, Any], int | None]:
        """Apply what ``qtasks_add_task_before_broker`` plugins returned, key by key."""
        return (merged.get("task_name", task_name), tuple(merged.get("args", args)),
                dict(merged.get("kw", kwargs)), merged.get("priority", priority))

    def _flush_triggers(self) -> list[tuple[str, dict[str, Any]]]:
        if not self._plugins:
            return []
        backend = self.backend
        return [("qtasks_flush_all", {"qtasks": self, "broker": backend}),
                ("broker_flush_all", {"broker": backend}),
                ("storage_flush_all", {"storage": backend})]

    def _enqueue_triggers(self, new: NewTask, before: bool) -> list[tuple[str, dict[str, Any]]]:
        """The backend-side triggers around an enqueue (the backend is broker and storage)."""
        backend = self.backend
        if before:
            return [("broker_add_before", {"broker": backend, "storage": backend, "model": new})]
        return [("storage_add", {"storage": backend, "uuid": new.uuid, "task_status": new}),
                ("broker_add_after", {"broker": backend, "storage": backend, "model": new})]

    def _add_task_steps(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                        priority: int | None, timeout: float | None, when: float | None,
                        queue: str | None = None, extra: dict[str, Any] | None = None,
                        uuid: UUID | None = None
                        ) -> Generator[tuple[Any, ...], Any, Task | None]:
        """What ``add_task`` does, written once for both flavours (and for ``add_tasks`` and
        the on-commit enqueue of ``qtasks.contrib.django``, which gives the ``uuid`` it
        returned earlier).

        Yields the I/O it needs: ``("trigger", name, kwargs)`` -> merged plugin result,
        ``("enqueue", ctx)`` -> None once sent through the ``enqueue`` hook's layers, or the
        record a layer answered with, ``("wait", uuid, timeout)`` -> stored row or None.
        ``_steps_sync`` and ``_steps_async`` carry them out with blocking calls or awaits.
        """
        if self._plugins:
            merged = yield ("trigger", "qtasks_add_task_before_broker",
                            {"qtasks": self, "broker": self.backend, "task_name": task_name,
                             "priority": priority, "args": args, "kw": kwargs})
            task_name, args, kwargs, priority = self._before_enqueue(merged, task_name, args,
                                                                     kwargs, priority)
            if isinstance(merged.get("extra"), dict):  # fields for the record (QTasks' extra)
                extra = {**(extra or {}), **merged["extra"]}
        new = self._prepare(task_name, args, kwargs, priority, when, queue, extra, uuid)
        for name, fields in self._enqueue_triggers(new, before=True) if self._plugins else ():
            yield ("trigger", name, fields)
        ctx = Enqueue(self, new, tuple(args), dict(kwargs), timeout, awaiting=False)
        kept = yield ("enqueue", ctx)
        if kept is not None:  # a layer kept it from the queue: capture or immediate mode
            return kept
        if self._plugins:
            for name, fields in self._enqueue_triggers(new, before=False):
                yield ("trigger", name, fields)
            yield ("trigger", "qtasks_add_task_after_broker",
                   {"qtasks": self, "broker": self.backend, "task_name": task_name,
                    "priority": new.priority, "args": args, "kw": kwargs,
                    "task": self._new_record(new, args, kwargs)})
        if ctx.timeout is None:
            return self._new_record(new, args, kwargs)
        return self._record((yield ("wait", new.uuid, ctx.timeout)))

    def _send_sync(self, ctx: Enqueue) -> None:
        if ctx.timeout is None:
            self.client.enqueue([ctx.new])
        else:  # the wait follows: the backend may prepare it in the same round trip
            self.client.enqueue_watched([ctx.new])

    async def _send_async(self, ctx: Enqueue) -> None:
        if ctx.timeout is None:
            await self.transport.enqueue([ctx.new])
        else:
            await self.transport.enqueue_watched([ctx.new])

    def _enqueue_chain(self, endpoint: Callable[[Enqueue], Any], awaiting: bool
                       ) -> Callable[[Enqueue], Any]:
        """``endpoint`` inside the ``enqueue`` hook's layers, composed once and kept until a
        layer is added or removed anywhere (``hooks.version``). Each chain is kept with the
        version read before its layers were: a chain composed by one thread while another
        added a layer is never used after that change."""
        activate_integrations()
        version = hooks_version()
        key = (endpoint, awaiting)
        kept = self._chains.get(key)
        if kept is not None and kept[0] == version:
            return kept[1]
        layers = stacked("enqueue", self.hooks)
        chain = compose(layers, endpoint, awaiting=awaiting) if layers else endpoint
        if len(self._chains) >= 64:  # endpoints are few; stale versions are dropped here
            self._chains.clear()
        self._chains[key] = (version, chain)
        return chain

    def _call_for(self, call: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], int | None]:
        """``(name, args, kwargs, priority)`` of one item given to ``add_tasks``."""
        if hasattr(call, "_handle") and hasattr(call, "args"):  # a pre-built call: task(1, 2)
            handle = call._handle()
            return (call.task_name or handle.task_name, tuple(call.args), dict(call.kwargs),
                    call.priority)
        if isinstance(call, tuple) and 1 <= len(call) <= 3 and isinstance(call[0], str):
            name, args, kwargs = (*call, (), {})[:3]
            return name, tuple(args), dict(kwargs or {}), None
        raise TypeError(f"add_tasks takes pre-built calls (task(1, 2)) or (task_name, args[, "
                        f"kwargs]) tuples, not {call!r}")

    def _steps_sync(self, steps: Generator[tuple[Any, ...], Any, Task | None], answer: Any = None,
                    defer: bool = False) -> tuple[str, Any]:
        """Carry out ``steps`` with blocking calls: ``("done", record)``, or with ``defer``,
        ``("enqueue", new)`` when it reaches its enqueue (``add_tasks`` sends them together)."""
        try:
            while True:
                step = steps.send(answer)
                if step[0] == "trigger":
                    answer = trigger_sync(self._plugins, step[1], **step[2])
                elif step[0] == "enqueue":
                    ctx = step[1]
                    ctx.awaiting = False
                    answer = self._enqueue_chain(_deferred if defer else self._send_sync,
                                                 False)(ctx)
                    if answer is _DEFERRED:
                        return ("enqueue", ctx.new)
                else:
                    with slot_lent():  # inside a task: do not hold a worker slot while waiting
                        answer = self.client.wait(step[1], step[2], self._final)
        except StopIteration as stop:
            return ("done", stop.value)

    async def _steps_async(self, steps: Generator[tuple[Any, ...], Any, Task | None],
                           answer: Any = None, defer: bool = False) -> tuple[str, Any]:
        """``_steps_sync`` with awaits."""
        try:
            while True:
                step = steps.send(answer)
                if step[0] == "trigger":
                    answer = await trigger_async(self._plugins, step[1], **step[2])
                elif step[0] == "enqueue":
                    ctx = step[1]
                    ctx.awaiting = True
                    answer = await self._enqueue_chain(_adeferred if defer else self._send_async,
                                                       True)(ctx)
                    if answer is _DEFERRED:
                        return ("enqueue", ctx.new)
                else:
                    with slot_lent():  # inside a task: do not hold a worker slot while waiting
                        answer = await self.transport.wait(step[1], step[2], self._final)
        except StopIteration as stop:
            return ("done", stop.value)

    def _add_task_sync(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                       priority: int | None, timeout: float | None, when: float | None = None,
                       queue: str | None = None, extra: dict[str, Any] | None = None
                       ) -> Task | None:
        steps = self._add_task_steps(task_name, args, kwargs, priority, timeout, when, queue,
                                     extra)
        return self._steps_sync(steps)[1]

    async def _add_task_async(self, task_name: str, args: tuple[Any, ...],
                              kwargs: dict[str, Any], priority: int | None,
                              timeout: float | None, when: float | None = None,
                              queue: str | None = None, extra: dict[str, Any] | None = None
                              ) -> Task | None:
        steps = self._add_task_steps(task_name, args, kwargs, priority, timeout, when, queue,
                                     extra)
        return (await self._steps_async(steps))[1]

    def _bulk_steps(self, calls: Any, when: float | None) -> list[Any]:
        return [self._add_task_steps(name, args, kwargs, prio, None, when)
                for name, args, kwargs, prio in map(self._call_for, calls)]

    def _plain_bulk(self) -> bool:
        """Whether ``add_tasks`` may take the streamed path: no plugin, and no ``enqueue``
        layer that would act (the eager one acts only in eager mode)."""
        if self._plugins or self.config.eager:
            return False
        activate_integrations()  # an integration may add a layer (trace context, say)
        return all(layer is eager_layer for layer in stacked("enqueue", self.hooks))

    def _bulk_stream(self, calls: Any, when: float | None, records: list[Task]
                     ) -> Iterator[NewTask]:
        """``add_tasks`` with no plugin and no ``enqueue`` layer: every call is checked and
        its arguments encoded first (a bad one raises before anything is sent), then the
        tasks are built as the backend takes them, so that a backend sending them in batches
        builds the next batch while the one before is written. ``records`` gets each task's
        record once the backend has taken it."""
        encoded = [(self._encoded(name, args, kwargs, prio, None), args, kwargs)
                   for name, args, kwargs, prio in map(self._call_for, calls)]

        def build() -> Iterator[NewTask]:
            for fields, args, kwargs in encoded:
                new = self._new_task(fields, when)
                yield new
                records.append(self._new_record(new, args, kwargs))

        return build()

    def _add_tasks_sync(self, calls: Any, when: float | None) -> list[Task]:
        if self._plain_bulk():
            records: list[Task] = []
            if calls:
                self.client.enqueue_stream(self._bulk_stream(calls, when, records))
            return records
        every = self._bulk_steps(calls, when)
        states = [self._steps_sync(steps, defer=True) for steps in every]
        news = [value for kind, value in states if kind == "enqueue"]
        if news:
            self.client.enqueue(news)  # one transaction / round trip for the whole batch
        return [self._steps_sync(steps)[1] if kind == "enqueue" else value
                for steps, (kind, value) in zip(every, states, strict=True)]

    async def _add_tasks_async(self, calls: Any, when: float | None) -> list[Task]:
        if self._plain_bulk():
            records: list[Task] = []
            if calls:
                await self.transport.enqueue_stream(self._bulk_stream(calls, when, records))
            return records
        every = self._bulk_steps(calls, when)
        states = [await self._steps_async(steps, defer=True) for steps in every]
        news = [value for kind, value in states if kind == "enqueue"]
        if news:
            await self.transport.enqueue(news)
        return [(await self._steps_async(steps))[1] if kind == "enqueue" else value
                for steps, (kind, value) in zip(every, states, strict=True)]

    def wait_sync(self, uuid: UUID | str, timeout: float | None) -> Task | None:
        """Block until the task is final; ``None`` when unknown or on timeout."""
        with slot_lent():
            return self._record(self.client.wait(_as_uuid(uuid), timeout, self._final))

    async def wait_async(self, uuid: UUID | str, timeout: float | None) -> Task | None:
        """Await the task's final record; ``None`` when unknown or on timeout."""
        with slot_lent():
            return self._record(await self.transport.wait(_as_uuid(uuid), timeout, self._final))

    def get_sync(self, uuid: UUID | str) -> Task | None:
        """``get`` with a blocking call, whatever the app's flavour."""
        task = self._record(self.client.get(_as_uuid(uuid)))
        if self._plugins:
            task = trigger_sync(self._plugins, "storage_get", storage=self.backend,
                                result=task).get("result", task)
            task = trigger_sync(self._plugins, "broker_get", broker=self.backend,
                                task=task).get("task", task)
            task = trigger_sync(self._plugins, "qtasks_get", qtasks=self, broker=self.backend,
                                task=task).get("task", task)
        return task

    async def get_async(self, uuid: UUID | str) -> Task | None:
        """``get`` awaited, whatever the app's flavour."""
        task = self._record(await self.transport.get(_as_uuid(uuid)))
        if self._plugins:
            task = (await trigger_async(self._plugins, "storage_get", storage=self.backend,
                                        result=task)).get("result", task)
            task = (await trigger_async(self._plugins, "broker_get", broker=self.backend,
                                        task=task)).get("task", task)
            task = (await trigger_async(self._plugins, "qtasks_get", qtasks=self,
                                        broker=self.backend, task=task)).get("task", task)
        return task

    # -- running a worker ---------------------------------------------------------------------

    def run_forever(self, concurrency: int | None = None, grace: float | None = None,
                    timers: bool = False, queues: list[str] | None = None,
                    **_compat: Any) -> None:
        """Run a worker for this app in this process until SIGTERM/SIGINT or ``stop()``.

        Blocking. After a hard stop (second signal, or grace period over) that leaves plain
        functions running in threads, the process exits at once with status 1: their tasks are
        already back in the queue. With ``timers=True`` the app's timers (``qtasks.timers``)
        run inside this worker; ``queues`` are the named queues it takes tasks from (default
        ``config.worker_queues``, ``["default"]``). QTasks' ``starter`` (a ``qtasks.starters``
        object) runs the worker instead; ``num_workers`` and ``reset_config`` are accepted and
        ignored (``concurrency`` is the number of tasks run at once).
        """
        from qtasks.worker import run_worker

        starter = _compat.get("starter")
        if starter is not None:  # a QTasks starter object (qtasks.starters): it runs us
            starter._app = self
            starter._options = {"concurrency": concurrency, "grace": grace, "timers": timers,
                                "queues": queues}
            starter.start()
            return
        run_worker(self, concurrency, grace, timers, queues)

    def _stop_worker(self) -> None:
        if self._background is not None:  # eager mode / test case worker: stop and join it
            stop_worker(self)
            return
        worker = self._worker
        if worker is not None:
            worker.request_stop()

    def add_plugin(self, plugin: Any, trigger_names: list[str] | None = None,
                   component: str | None = None) -> None:
        """Call ``plugin`` at these triggers of ``component`` (see ``qtasks.plugins.base``)."""
        if not callable(getattr(plugin, "trigger", None)):
            raise TypeError(f"{plugin!r} is not a plugin: it has no trigger() method")
        self._plugins.add(plugin, trigger_names, component)
        for name in trigger_names or ["Globals"]:
            self.plugins.setdefault(name, []).append(plugin)

    def add_middleware(self, middleware: Any, position: str = "before", **kwargs: Any) -> None:
        """Run a ``TaskMiddleware`` subclass around every task of this app.

        ``position`` is ``"before"`` (default) or ``"after"`` the task function.
        """
        check_middleware(middleware, "add_middleware")
        if position not in ("before", "after"):
            raise ValueError(f"position must be 'before' or 'after', not {position!r}")
        target = self.middlewares_before if position == "before" else self.middlewares_after
        if middleware not in target:
            target.append(middleware)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class QueueTasks(BaseQueueTasks):
    """The sync app: ``add_task``, ``get``, ``ping`` and ``flush_all`` block.

    ``name`` names the app (and its default database file); ``broker_url`` selects the backend
    (default: embedded SQLite; also ``QTASKS_BROKER_URL``); ``broker`` passes a ready backend;
    ``config`` a ``QueueConfig``; ``log`` a logger (standard, or ``qtasks.logs.Logger``);
    ``worker`` a ``qtasks.workers`` object (its concurrency, executor class and plugins);
    ``events`` an events object.
    """

    if TYPE_CHECKING:
        # @app.task keeps the function's signature: SyncTask[P, R] (see qtasks.handles)
        @overload  # type: ignore[override]  # same calls as the base, narrower results
        def task(self, name: Callable[P, R], /) -> SyncTask[P, R]: ...
        @overload
        def task(self, name: str | None = None, *, priority: int | None = None,
                 echo: bool = False, max_time: float | None = None, retry: int | None = None,
                 **options: Any) -> SyncTaskDecorator: ...
        def task(self, name: Any = None, **options: Any) -> Any: ...

    def add_task(self, task_name: str, *args: Any, priority: int | None = None,
                 timeout: float | None = None, delay: float | None = None,
                 eta: datetime | float | None = None, **kwargs: Any) -> Task | None:
        """Enqueue ``task_name(*args, **kwargs)``.

        Returns the new record (status ``new``); with ``timeout``, waits and returns the final
        record, or ``None`` if it is not final in time. ``delay`` (seconds) or ``eta`` (an aware
        datetime or epoch seconds) hold the task back until then. Arguments must be JSON values
        (``TypeError`` otherwise, nothing enqueued).
        """
        return self._add_task_sync(task_name, args, kwargs, priority, timeout, start_at(delay, eta))

    def add_tasks(self, calls: Any, *, delay: float | None = None,
                  eta: datetime | float | None = None) -> list[Task]:
        """Enqueue many tasks in one round trip (one transaction where the backend has them).

        ``calls`` holds pre-built calls (``add(1, 2)`` of a task handle) or ``(task_name, args)``
        / ``(task_name, args, kwargs)`` tuples. Returns their ``new`` records, in order. Each
        goes through the same steps as ``add_task`` (plugins, capture and eager modes).
        """
        return self._add_tasks_sync(list(calls), start_at(delay, eta))

    def cancel(self, uuid: UUID | str, reason: str = "") -> bool:
        """Cancel a task no worker has started; it will never run. False if too late/unknown."""
        return self.client.cancel(_as_uuid(uuid), reason or "cancelled before it started")

    def stats(self) -> BackendStats:
        """Counts of the queue and the store: waiting, running, records, dead letters..."""
        return self.client.stats()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Tasks set aside (malformed, unknown, worker lost too often), newest first."""
        return self.client.dead_letters(limit)

    def get(self, uuid: UUID | str) -> Task | None:
        """The task's record, or ``None`` if unknown. A malformed uuid string raises ValueError."""
        return self.get_sync(uuid)

    def ping(self, server: bool = True) -> bool:
        """Whether a worker of this app is alive (``server=False``: always True)."""
        trigger_sync(self._plugins, "qtasks_ping", qtasks=self, global_config=None)
        return self.client.ping() if server else True

    def flush_all(self) -> None:
        """Delete every record, queued task and dead letter of this app."""
        for name, extra in self._flush_triggers():
            trigger_sync(self._plugins, name, **extra)
        self.client.flush()

    def stop(self) -> None:
        """Ask the worker that ``run_forever`` runs in this process to stop gracefully."""
        trigger_sync(self._plugins, "qtasks_stop", qtasks=self, starter=None)
        self._stop_worker()


class AsyncQueueTasks(BaseQueueTasks):
    """The async app: ``add_task``, ``get``, ``ping`` and ``flush_all`` are coroutines."""

    _flavour = "async"

    if TYPE_CHECKING:
        @overload  # type: ignore[override]  # same calls as the base, narrower results
        def task(self, name: Callable[P, R], /) -> AsyncTask[P, R]: ...
        @overload
        def task(self, name: str | None = None, *, priority: int | None = None,
                 echo: bool = False, max_time: float | None = None, retry: int | None = None,
                 **options: Any) -> AsyncTaskDecorator: ...
        def task(self, name: Any = None, **options: Any) -> Any: ...

    async def add_task(self, task_name: str, *args: Any, priority: int | None = None,
                       timeout: float | None = None, delay: float | None = None,
                       eta: datetime | float | None = None, **kwargs: Any) -> Task | None:
        """Enqueue; see ``QueueTasks.add_task``."""
        return await self._add_task_async(task_name, args, kwargs, priority, timeout,
                                          start_at(delay, eta))

    async def add_tasks(self, calls: Any, *, delay: float | None = None,
                        eta: datetime | float | None = None) -> list[Task]:
        """Enqueue many tasks in one round trip; see ``QueueTasks.add_tasks``."""
        return await self._add_tasks_async(list(calls), start_at(delay, eta))

    async def cancel(self, uuid: UUID | str, reason: str = "") -> bool:
        """Cancel a task no worker has started; it will never run. False if too late/unknown."""
        return await self.transport.cancel(_as_uuid(uuid),
                                           reason or "cancelled before it started")

    async def stats(self) -> BackendStats:
        """Counts of the queue and the store; see ``QueueTasks.stats``."""
        return await self.transport.stats()

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Tasks set aside, newest first."""
        return await self.transport.dead_letters(limit)

    async def get(self, uuid: UUID | str) -> Task | None:
        """The task's record, or ``None`` if unknown."""
        return await self.get_async(uuid)

    async def ping(self, server: bool = True) -> bool:
        """Whether a worker of this app is alive (``server=False``: always True)."""
        await trigger_async(self._plugins, "qtasks_ping", qtasks=self, global_config=None)
        return await self.transport.ping() if server else True

    async def flush_all(self) -> None:
        """Delete every record, queued task and dead letter of this app."""
        for name, extra in self._flush_triggers():
            await trigger_async(self._plugins, name, **extra)
        await self.transport.flush()

    async def stop(self) -> None:
        """Ask the worker that ``run_forever`` runs in this process to stop gracefully."""
        await trigger_async(self._plugins, "qtasks_stop", qtasks=self, starter=None)
        self._stop_worker()
