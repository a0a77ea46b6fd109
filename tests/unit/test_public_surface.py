"""The public surface: what ``qtasks`` and ``qtasks.asyncio`` export (the QTasks 1.7 import
paths are in test_qtasks_import_paths.py).

A name added to or dropped from the public modules must be a decision: update the lists here.
"""

from __future__ import annotations

import importlib
import inspect

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


# Every QTasks 1.7 import path is exercised in test_qtasks_import_paths.py.


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
