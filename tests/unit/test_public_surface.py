"""The public surface: what ``qtasks`` and ``qtasks.asyncio`` export, and the QTasks 1.7 import
paths qtasks keeps (reference section 0), each imported and exercised once.

A name added to or dropped from the public modules must be a decision: update the lists here.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from helpers import run_script

QTASKS_EXPORTS = {
    "AsyncRouter", "AsyncTask", "Depends", "QueueConfig", "QueueTasks", "SyncRouter", "SyncTask",
    "Task", "TaskCancelError", "TaskStatusEnum", "__version__", "shared_task",
}
ASYNCIO_EXPORTS = {"QueueTasks"}


def _public(module: str) -> set[str]:
    loaded = importlib.import_module(module)
    return {name for name in dir(loaded) if not name.startswith("_")
            and not inspect.ismodule(getattr(loaded, name))} | set(getattr(loaded, "__all__", ()))


def test_qtasks_exports_exactly_these_names():
    import qtasks

    assert set(qtasks.__all__) == QTASKS_EXPORTS
    assert _public("qtasks") == QTASKS_EXPORTS


def test_qtasks_asyncio_exports_exactly_these_names():
    import qtasks.asyncio

    assert set(qtasks.asyncio.__all__) == ASYNCIO_EXPORTS
    assert _public("qtasks.asyncio") == ASYNCIO_EXPORTS


def test_the_two_faces_are_the_two_app_flavours():
    from qtasks import QueueTasks
    from qtasks.asyncio import QueueTasks as AsyncQueueTasks

    assert inspect.iscoroutinefunction(AsyncQueueTasks.add_task)
    assert not inspect.iscoroutinefunction(QueueTasks.add_task)


def _is_class(obj):
    return inspect.isclass(obj)


def _callable(obj):
    return callable(obj)


# (module, name, check): the QTasks 1.7 import paths qtasks keeps; issue 12 covers the rest
KEPT = [
    ("qtasks", "QueueTasks", _is_class),
    ("qtasks.asyncio", "QueueTasks", _is_class),
    ("qtasks.asyncio.qtasks", "QueueTasks", _is_class),
    ("qtasks", "AsyncRouter", _is_class),
    ("qtasks", "SyncRouter", _is_class),
    ("qtasks.routers", "AsyncRouter", _is_class),
    ("qtasks.routers", "SyncRouter", _is_class),
    ("qtasks", "shared_task", _callable),
    ("qtasks.utils", "shared_task", _callable),
    ("qtasks", "Depends", _is_class),
    ("qtasks.plugins", "Depends", _is_class),
    ("qtasks.plugins.depends", "Depends", _is_class),
    ("qtasks.plugins.depends", "ScopeEnum", _is_class),
    ("qtasks", "__version__", lambda v: isinstance(v, str)),
    ("qtasks.registries", "AsyncTask", _is_class),
    ("qtasks.registries", "SyncTask", _is_class),
    ("qtasks.registries.async_task_decorator", "AsyncTask", _is_class),
    ("qtasks.registries.sync_task_decorator", "SyncTask", _is_class),
    ("qtasks.results", "AsyncResult", _is_class),
    ("qtasks.results", "SyncResult", _is_class),
    ("qtasks.schemas.task", "Task", _is_class),
    ("qtasks.enums.task_status", "TaskStatusEnum", _is_class),
    ("qtasks.enums", "TaskStatusEnum", _is_class),
    ("qtasks.configs", "QueueConfig", _is_class),
    ("qtasks.configs.config", "QueueConfig", _is_class),
    ("qtasks.middlewares", "TaskMiddleware", _is_class),
    ("qtasks.middlewares.base", "BaseMiddleware", _is_class),
    ("qtasks.timers", "AsyncTimer", _is_class),
    ("qtasks.timers", "SyncTimer", _is_class),
    ("qtasks.stats", "AsyncStats", _is_class),
    ("qtasks.stats", "SyncStats", _is_class),
    ("qtasks.stats.inspect", "InspectStats", _is_class),
    ("qtasks.plugins.base", "BasePlugin", _is_class),
    ("qtasks.plugins", "AsyncState", _is_class),
    ("qtasks.plugins", "SyncState", _is_class),
    ("qtasks.plugins.states", "AsyncState", _is_class),
    ("qtasks.plugins.states", "SyncState", _is_class),
    ("qtasks.exc", "TaskCancelError", _is_class),
    ("qtasks.exc", "TaskPluginTriggerError", _is_class),
    ("qtasks.tests", "SyncTestCase", _is_class),
    ("qtasks.tests", "AsyncTestCase", _is_class),
    ("qtasks.schemas.test", "TestConfig", _is_class),
    ("qtasks.schemas", "TestConfig", _is_class),
    ("qtasks.schemas", "TaskExecSchema", _is_class),
    ("qtasks.contexts", "AsyncContext", _is_class),
    ("qtasks.contexts", "SyncContext", _is_class),
    ("qtasks.events", "AsyncEvents", _is_class),
    ("qtasks.events", "SyncEvents", _is_class),
    ("qtasks.contrib.django", "autodiscover_tasks", _callable),
    ("qtasks.utils", "get_app", _callable),
    ("qtasks.utils", "AsyncTaskUtils", _is_class),
    ("qtasks.utils.tasks.async_task_utils", "AsyncTaskUtils", _is_class),
    ("qtasks.utils.tasks.sync_task_utils", "SyncTaskUtils", _is_class),
    ("qtasks._state", "app_main", lambda v: True),
    ("qtasks._state", "log_main", lambda v: True),
]


@pytest.mark.parametrize(("module", "name", "check"), KEPT,
                         ids=[f"{m}.{n}" for m, n, _ in KEPT])
def test_kept_qtasks_import_path(module, name, check):
    value = getattr(importlib.import_module(module), name)
    assert check(value), f"{module}.{name} is {value!r}"


def test_kept_paths_name_the_same_objects():
    import qtasks
    from qtasks.plugins.depends import Depends
    from qtasks.registries import AsyncTask, SyncTask

    assert Depends is qtasks.Depends
    assert (SyncTask, AsyncTask) == (qtasks.SyncTask, qtasks.AsyncTask)


def test_state_app_main_is_the_latest_app_and_assignable():
    """``qtasks._state.app_main`` is QTasks' binding of shared tasks: the latest app, or the one
    assigned there."""
    script = (
        "import qtasks._state\n"
        "from qtasks import QueueTasks, shared_task\n"
        "a = QueueTasks('a', broker_url='memory://a')\n"
        "b = QueueTasks('b', broker_url='memory://b')\n"
        "assert qtasks._state.app_main is b and qtasks._state.log_main is b.log\n"
        "qtasks._state.app_main = a\n"
        "@shared_task\n"
        "def job():\n    pass\n"
        "job.add_task()\n"
        "assert (a.stats().queued, b.stats().queued) == (1, 0)\n"
        "print('ok')\n"
    )
    run_script(script)
