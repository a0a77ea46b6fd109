"""A ``django.tasks`` backend: Django's own ``@task`` functions, run by qtasks workers.

```python
TASKS = {
    "default": {
        "BACKEND": "qtasks.contrib.django.backend.QTasksBackend",
        "QUEUES": ["default", "emails"],          # optional; Django's default is ["default"]
        "OPTIONS": {"APP": "default", "ENQUEUE_ON_COMMIT": False},
    }
}
```

``OPTIONS``: ``APP`` is an alias of ``settings.QTASKS`` (default ``"default"``) or a
``"module:attribute"`` naming a qtasks app; ``ENQUEUE_ON_COMMIT`` (default False) enqueues when
the transaction of ``USING`` (default: the default database) commits, the result id being known
at once; unknown keys raise ``ImproperlyConfigured``.

Django 6's ``django.tasks`` is used where it exists; on Django 5.2 the ``django-tasks`` backport
(``pip install django-tasks``, ``"django_tasks"`` in INSTALLED_APPS).

How it fits together: when Django's ``@task`` builds a task for this backend it is validated
here, and that registers it in the qtasks app under its module path (``shop.tasks.send_mail``).
The worker of that app imports the task modules (``autodiscover_tasks``), so it knows every
such task by name; nothing named in a message is ever imported. Priorities are mapped onto
qtasks' (Django's 100 runs first, qtasks' lowest number runs first: qtasks = -Django),
``run_after`` becomes a delayed task, ``queue_name`` the qtasks queue. The worker sends
``task_started`` and ``task_finished``; the producer sends ``task_enqueued``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
else:  # Django 5.2: the django-tasks backport
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
    except ImportError as exc:
        raise ImportError(
            f"qtasks' django.tasks backend needs Django 6, or on Django {django.__version__} "
            f"the backport: pip install django-tasks (and add 'django_tasks' to "
            f"INSTALLED_APPS)") from exc

from qtasks.core.record import Task as Record
from qtasks.testing.capture import is_immediate

log = logging.getLogger("qtasks.contrib.django")

_OPTIONS = {"APP", "ENQUEUE_ON_COMMIT", "USING"}
_STATUS = {"new": TaskResultStatus.READY, "process": TaskResultStatus.RUNNING,
           "success": TaskResultStatus.SUCCESSFUL, "error": TaskResultStatus.FAILED,
           "cancel": TaskResultStatus.FAILED, "retry": TaskResultStatus.FAILED}

_known: dict[str, Task] = {}
"""Every Django task validated by a QTasksBackend in this process, by module path."""
_pending: list[tuple[QTasksBackend, Task]] = []
"""Tasks defined before their qtasks app was configured (task modules imported by models)."""
_inline: OrderedDict[str, Record] = OrderedDict()
"""Final records of tasks run inline (QTASKS_IMMEDIATE), which no backend stores."""
_INLINE_KEPT = 1000


class _NotReady(Exception):
    """The qtasks app is named by an alias that Django has not configured yet."""


class QTasksBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on qtasks workers; results are qtasks records."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = set(self.options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: unknown keys "
                                       f"{sorted(unknown)}; known: {sorted(_OPTIONS)}")
        self.app_ref: str = self.options.get("APP", "default")
        self.on_commit = bool(self.options.get("ENQUEUE_ON_COMMIT", False))
        self.using: str | None = self.options.get("USING")
        self._app: Any = None

    # -- the qtasks app -----------------------------------------------------------------------

    @property
    def app(self) -> Any:
        """The qtasks app this backend enqueues to (resolved on first use)."""
        if self._app is None:
            try:
                self._app = self._resolve()
            except _NotReady:
                raise ImproperlyConfigured(
                    f"TASKS[{self.alias!r}] uses the qtasks app {self.app_ref!r}, which is not "
                    f"configured yet: Django is still loading its apps") from None
        return self._app

    def _resolve(self) -> Any:
        from django.apps import apps

        from qtasks.app import BaseQueueTasks
        from qtasks.contrib.django import apps as qtasks_apps
        from qtasks.contrib.django.apps import configured

        ref = self.app_ref
        if ":" not in ref:
            found = configured().get(ref)
            if found is None:
                if not apps.ready and not qtasks_apps.loaded:
                    raise _NotReady(ref)  # settings.QTASKS is read in our ready(): wait
                raise ImproperlyConfigured(
                    f"TASKS[{self.alias!r}] uses the qtasks app {ref!r}, which is not in "
                    f"settings.QTASKS (configured: {sorted(configured())}; is "
                    f"'qtasks.contrib.django' in INSTALLED_APPS?)")
            return found
        module_name, _, attr = ref.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}] APP {ref!r}: {exc}") from exc
        if not isinstance(found, BaseQueueTasks):
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}] APP {ref!r} is not a qtasks app")
        return found

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        try:
            self.app  # noqa: B018 (resolving it is the check)
        except ImproperlyConfigured as exc:
            return [checks.Error(str(exc), obj=f"TASKS[{self.alias!r}]", id="qtasks.E001")]
        return []

    # -- registration -------------------------------------------------------------------------

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        self._register(task)

    def _register(self, task: Task) -> None:
        name = task.module_path
        known = _known.get(name)
        if known is None or known.func is not task.func:  # new, or its module imported again
            known = _known[name] = task  # run_after etc. are taken from each message
        try:
            app = self._app if self._app is not None else self._resolve()
        except _NotReady:
            _pending.append((self, known))
            return
        self._app = app
        current = app._own_tasks.get(name)
        if current is not None and getattr(current.func, "_django_func", None) is task.func:
            return  # registered: .using() copies and the worker's rebuilds come here too
        _define(app, self.alias, known)

    # -- enqueue ------------------------------------------------------------------------------

    def _prepare(self, task: Task) -> tuple[str, int, float | None, dict[str, Any]]:
        self.validate_task(task)
        eta = _epoch(task.run_after) if task.run_after is not None else None
        meta = {"django": {"backend": self.alias, "queue_name": task.queue_name,
                           "run_after": eta}}
        return task.module_path, -task.priority, eta, meta

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        name, priority, eta, meta = self._prepare(task)
        app, args, kwargs = self.app, tuple(args), dict(kwargs)
        if self.on_commit:
            from qtasks.contrib.django.transactions import enqueue_on_commit

            record = enqueue_on_commit(app, name, args, kwargs, priority, eta, self.using,
                                       task.queue_name, meta, then=self._enqueued)
        else:
            record = app._add_task_sync(name, args, kwargs, priority, None, eta,
                                        task.queue_name, meta)
            self._enqueued(record)
        return self._result(record, task)

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        name, priority, eta, meta = self._prepare(task)
        app, args, kwargs = self.app, tuple(args), dict(kwargs)
        if self.on_commit:
            from qtasks.contrib.django.transactions import aenqueue_on_commit

            record = await aenqueue_on_commit(app, name, args, kwargs, priority, eta,
                                              self.using, task.queue_name, meta,
                                              then=self._enqueued)
        else:
            record = await app._add_task_async(name, args, kwargs, priority, None, eta,
                                               task.queue_name, meta)
            await sync_to_async(self._enqueued)(record)  # receivers may use the ORM
        return self._result(record, task)

    def _enqueued(self, record: Record) -> None:
        """The task is in the queue (or, in immediate mode, has run): tell the receivers."""
        if is_immediate(self.app):
            if record.status == "new":
                return  # captured (capture mode wins): task_enqueued comes when it runs
            # the inline run sent task_enqueued before task_started; keep its final record
            _inline[str(record.uuid)] = record
            while len(_inline) > _INLINE_KEPT:
                _inline.popitem(last=False)
            return
        task_enqueued.send(type(self), task_result=self._result(record))

    # -- results ------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        uuid = _uuid(result_id)
        return self._found(result_id, _inline.get(str(uuid)) or self.app.get_sync(uuid))

    async def aget_result(self, result_id: str) -> TaskResult:
        uuid = _uuid(result_id)
        return self._found(result_id, _inline.get(str(uuid)) or await self.app.get_async(uuid))

    def _found(self, result_id: str, record: Record | None) -> TaskResult:
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return self._result(record)

    def _result(self, record: Record, task: Task | None = None) -> TaskResult:
        """The ``TaskResult`` a qtasks record stands for."""
        meta = dict(record.extra.get("django") or {})
        if task is None:
            task = _task_for(record.task_name, record.priority, meta, str(record.uuid))
        status = _STATUS.get(record.status, TaskResultStatus.READY)
        started = meta.get("started_at")
        if started is None and record.status == "process":
            started = record.updated_at.timestamp()
        finished = record.status in ("success", "error", "cancel", "retry")
        result = TaskResult(
            task=task, id=str(record.uuid), status=status,
            enqueued_at=_local(record.created_at.timestamp()),
            started_at=_local(started) if started is not None else None,
            finished_at=_local(record.updated_at.timestamp()) if finished else None,
            last_attempted_at=_local(started) if started is not None else None,
            args=list(record.args), kwargs=dict(record.kwargs),
            backend=meta.get("backend", self.alias),
            errors=_errors(record, meta), worker_ids=list(meta.get("worker_ids") or []),
        )
        if record.status == "success":
            object.__setattr__(result, "_return_value", record.returning)
        return result


def register_pending() -> None:
    """Register the tasks defined before their qtasks app was configured (called by ready())."""
    while _pending:
        backend, task = _pending.pop(0)
        _define(backend.app, backend.alias, task)


def _define(app: Any, alias: str, task: Task) -> None:
    """Register ``task`` in the qtasks ``app`` under its module path."""
    app.task(task.module_path, echo=True, priority=-task.priority, queue=task.queue_name,
             description=inspect.getdoc(task.func))(_runner(alias, task))


def _task_for(name: str, priority: int, meta: dict[str, Any], result_id: str) -> Task:
    base = _known.get(name)
    if base is None:
        raise TaskResultDoesNotExist(
            f"{result_id} is a record of {name!r}, which is not a django.tasks task known to "
            f"this process (is its module imported?)")
    run_after = meta.get("run_after")
    return dataclasses.replace(
        base, priority=-priority, queue_name=meta.get("queue_name", base.queue_name),
        run_after=_local(run_after) if run_after is not None else None,
        backend=meta.get("backend", base.backend))


def _errors(record: Record, meta: dict[str, Any]) -> list[TaskError]:
    if record.status == "cancel":
        reason = record.extra.get("cancel_reason") or "cancelled"
        return [TaskError(exception_class_path="qtasks.exceptions.TaskCancelError",
                          traceback=str(reason))]
    if record.status not in ("error", "retry"):
        return []
    text = record.traceback or ""
    path = meta.get("exception") or _exception_path(text)
    return [TaskError(exception_class_path=path, traceback=text)]


def _exception_path(text: str) -> str:
    """The importable class path a traceback text ends with (records the worker set aside)."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    head = last.partition(":")[0].strip()
    if head and head.isidentifier():
        import builtins

        from qtasks import exceptions

        if isinstance(getattr(builtins, head, None), type):
            return f"builtins.{head}"
        if isinstance(getattr(exceptions, head, None), type):
            return f"qtasks.exceptions.{head}"
    elif head.replace(".", "_").isidentifier():
        return head
    return "builtins.Exception"


def _runner(alias: str, base: Task) -> Callable[..., Any]:
    """The qtasks task function that runs ``base`` (``echo=True``: it gets the handle first)."""
    func = base.func
    sender = QTasksBackend

    run: Any
    if inspect.iscoroutinefunction(func):
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            result, inline = _begin(self.ctx, alias, base, args, kwargs)
            if inline:
                await task_enqueued.asend(sender, task_result=_ready(result))
            await task_started.asend(sender, task_result=result)
            try:
                if base.takes_context:
                    value = await func(TaskContext(task_result=result), *args, **kwargs)
                else:
                    value = await func(*args, **kwargs)
            except asyncio.CancelledError:
                raise  # the worker stopped hard: the task goes back to the queue, not failed
            except BaseException as exc:
                _failed(self.ctx, result, exc)
                await task_finished.asend(sender, task_result=result)
                raise
            _succeeded(result, value)
            await task_finished.asend(sender, task_result=result)
            return value
    else:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            result, inline = _begin(self.ctx, alias, base, args, kwargs)
            if inline:
                task_enqueued.send(sender, task_result=_ready(result))
            task_started.send(sender, task_result=result)
            try:
                if base.takes_context:
                    value = func(TaskContext(task_result=result), *args, **kwargs)
                else:
                    value = func(*args, **kwargs)
            except BaseException as exc:
                _failed(self.ctx, result, exc)
                task_finished.send(sender, task_result=result)  # in the handler: exc_info is set
                raise
            _succeeded(result, value)
            task_finished.send(sender, task_result=result)
            return value

    run.__module__, run.__qualname__ = func.__module__, func.__qualname__
    run.__name__, run.__doc__ = func.__name__, func.__doc__
    run._django_func = func
    return run


def _begin(ctx: Any, alias: str, base: Task, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> tuple[TaskResult, bool]:
    """The running task's ``TaskResult``; True when it runs inline (immediate mode)."""
    env = ctx._envelope
    meta = dict((env.meta or {}).get("django") or {})
    # run inline by immediate mode: nobody sent task_enqueued (it belongs before task_started)
    inline = ctx._worker_id is None and is_immediate(ctx._app)
    worker_id = ctx._worker_id or f"inline:{_host_pid()}"
    started = time.time()
    meta.update(started_at=started, worker_ids=[worker_id])
    ctx._extra["django"] = meta  # stored on the final record
    task = dataclasses.replace(
        base, priority=-env.priority, queue_name=meta.get("queue_name", base.queue_name),
        run_after=_local(meta["run_after"]) if meta.get("run_after") is not None else None,
        backend=meta.get("backend", alias))
    result = TaskResult(
        task=task, id=str(env.uuid), status=TaskResultStatus.RUNNING,
        enqueued_at=_local(env.created_at), started_at=_local(started), finished_at=None,
        last_attempted_at=_local(started), args=list(args), kwargs=dict(kwargs),
        backend=meta.get("backend", alias), errors=[], worker_ids=[worker_id],
    )
    return result, inline


def _ready(result: TaskResult) -> TaskResult:
    return dataclasses.replace(result, status=TaskResultStatus.READY, started_at=None,
                               last_attempted_at=None, worker_ids=[])


def _failed(ctx: Any, result: TaskResult, exc: BaseException) -> None:
    cls = type(exc)
    path = f"{cls.__module__}.{cls.__qualname__}"
    ctx._extra["django"]["exception"] = path
    object.__setattr__(result, "status", TaskResultStatus.FAILED)
    object.__setattr__(result, "finished_at", timezone.now())
    result.errors.append(TaskError(exception_class_path=path,
                                   traceback="".join(traceback.format_exception(exc))))


def _succeeded(result: TaskResult, value: Any) -> None:
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)


def _uuid(result_id: str) -> UUID:
    try:
        return UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None


def _epoch(when: datetime) -> float:
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return when.timestamp()


def _local(ts: float) -> datetime:
    """Epoch seconds as Django keeps times: aware UTC with USE_TZ, else naive local time."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment if settings.USE_TZ else timezone.make_naive(moment)


def _host_pid() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"

