"""Custom executor classes (QTasks' ``executor=``) through real workers, in both flavours."""

import asyncio

import pytest

from apps import executor_app
from helpers import clear_marks, marks
from qtasks import QueueTasks
from qtasks.executors import AsyncTaskExecutor


def test_sync_app_executors(start_worker):
    app = executor_app.app
    app.flush_all()
    clear_marks()
    start_worker("apps.executor_app:app")
    # the executor doubled the arguments and wrapped the result; the middleware saw the
    # executor object, after it had run (middlewares come first, then before_execute)
    assert app.add_task("add", 2, 3, timeout=10).returning == {"wrapped": 10}
    assert "middleware Doubling add [2, 3]" in marks()
    # the plugin registered on the worker was called with the executor
    assert app.add_task("shout", "hey", timeout=10).returning == {"wrapped": "HEYHEY"}
    assert "plugin sees Doubling" in marks()
    assert "args_info word:str" in marks()  # QTasks' ArgMeta for each argument
    # a blocking executor runs in a thread of its own and its decode() is what is stored
    assert app.add_task("mul", 4, 5, timeout=10).returning == "decoded 120"
    assert any(m.startswith("run_task in qtasks-executor") for m in marks())
    # max_time and retries work as without an executor
    slow = app.add_task("too_slow", timeout=10)
    assert slow.status == "error" and "Time limit exceeded" in slow.traceback
    failed = app.add_task("fails_once", "x", timeout=10)
    assert failed.status == "error"
    assert marks().count("attempt X") == 2  # the plugin upper-cased it, both times


def test_async_app_executors(start_worker):
    app = executor_app.aapp
    asyncio.run(app.flush_all())
    clear_marks()
    start_worker("apps.executor_app:aapp")
    assert asyncio.run(app.add_task("aadd", 1, 2, timeout=10)).returning == {"wrapped": 6}
    assert "middleware Doubling aadd [1, 2]" in marks()
    # a coroutine task under a blocking executor
    assert asyncio.run(app.add_task("amul", 2, 3, timeout=10)).returning == "decoded 106"


def test_executor_must_be_an_executor_class():
    app = QueueTasks("texec_bad", broker_url="memory://")
    with pytest.raises(TypeError, match="executor= takes an executor class"):
        @app.task(executor="AsyncTaskExecutor")  # a name, not the class
        def task():
            pass


def test_executor_built_by_hand_runs_the_function():
    # QTasks' docs build one directly: executor = AsyncTaskExecutor(task_func, task_broker)
    from qtasks.core.codec import Envelope

    app = QueueTasks("texec_hand", broker_url="memory://")

    @app.task
    async def double_by_hand(x):
        return x * 2

    envelope = Envelope(uuid=__import__("uuid").uuid4(), task_name="double_by_hand", priority=0,
                        args=[21], kwargs={}, created_at=0.0)
    executor = AsyncTaskExecutor(app.tasks["double_by_hand"], envelope)
    assert asyncio.run(executor.execute()) == 42


def test_blocking_executors_keep_the_workers_rules(start_worker):
    app = executor_app.app
    app.flush_all()
    clear_marks()
    worker = start_worker("apps.executor_app:app", "--concurrency", "1")
    # an override of QTasks' run_task_gen would never be called: the worker says so
    assert app.add_task("counts", 3, timeout=20).returning == [0, 1, 2]
    assert "OldStyle.run_task_gen is never called" in worker.output
    # a parent waiting for its child in the only slot: the slot is lent, no deadlock
    assert app.add_task("parent", 4, timeout=20).returning == 8
    slow = app.add_task("blocks_too_long", timeout=20)
    assert slow.status == "error" and "Time limit exceeded" in slow.traceback
    refused = app.add_task("never_runs", timeout=20)
    assert refused.status == "error" and "refused before the task" in refused.traceback
    assert "never_runs ran" not in marks()


def test_a_blocking_executor_built_by_hand_runs_the_function():
    from qtasks.core.codec import Envelope
    from qtasks.executors import SyncTaskExecutor

    app = QueueTasks("texec_hand_sync", broker_url="memory://")

    @app.task
    def triple_by_hand(x):
        return x * 3

    envelope = Envelope(uuid=__import__("uuid").uuid4(), task_name="triple_by_hand",
                        priority=0, args=[5], kwargs={}, created_at=0.0)
    assert SyncTaskExecutor(app.tasks["triple_by_hand"], envelope).execute() == 15
