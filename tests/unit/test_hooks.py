"""The internal hook mechanism: one compose for sync and async onions, hooks named in one place."""

from __future__ import annotations

import asyncio

import pytest

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.core.hooks import HOOKS, Hooks, compose


def trace(tag, log):
    def layer(ctx, call_next):  # a plain layer: works in a sync and in an async onion
        log.append(f"{tag}>")
        return call_next()

    return layer


def test_one_compose_serves_a_sync_onion():
    log = []

    def around(ctx, call_next):
        log.append("around>")
        result = call_next()
        log.append("<around")
        return result * 10

    onion = compose([trace("a", log), around], lambda ctx: ctx + 1)
    assert onion(1) == 20
    assert log == ["a>", "around>", "<around"]


def test_one_compose_serves_an_async_onion():
    log = []

    async def around(ctx, call_next):
        log.append("around>")
        result = await call_next()
        log.append("<around")
        return result * 10

    async def endpoint(ctx):
        return ctx + 1

    def answers(ctx, call_next):  # a plain layer answering without call_next
        return "kept" if ctx < 0 else call_next()

    onion = compose([trace("a", log), around, answers], endpoint, awaiting=True)
    assert asyncio.run(onion(1)) == 20
    assert asyncio.run(onion(-5)) == "kept" * 10
    assert log[:3] == ["a>", "around>", "<around"]


def test_hook_names_are_listed_in_one_place():
    hooks = Hooks()
    with pytest.raises(ValueError, match="unknown hook 'enqueu'"):
        hooks.add("enqueu", lambda ctx, call_next: call_next())
    with pytest.raises(ValueError, match="provider"):
        hooks.add("commit", lambda: None)
    assert {"enqueue", "task_run", "task_call", "worker_started", "worker_stopping",
            "task_done", "commit"} == set(HOOKS)


def test_an_enqueue_layer_sees_and_can_keep_a_task_in_both_flavours():
    seen = []

    def keep(ctx, call_next):
        seen.append((ctx.new.task_name, ctx.args, ctx.awaiting))
        return "kept"

    sync_app = QueueTasks("hooks-sync", broker_url="memory://hooks-sync")
    sync_app.hooks.add("enqueue", keep)
    assert sync_app.add_task("job", 1) == "kept"

    async_app = AsyncQueueTasks("hooks-async", broker_url="memory://hooks-async")
    async_app.hooks.add("enqueue", keep)
    assert asyncio.run(async_app.add_task("job", 2)) == "kept"
    assert seen == [("job", (1,), False), ("job", (2,), True)]
    sync_app.hooks.remove("enqueue", keep)
    assert sync_app.add_task("job", 3).status == "new"  # sent again
    assert sync_app.stats().queued == 1


def test_a_layer_added_after_the_first_enqueue_is_used_by_the_next_one():
    # the composed enqueue layers are kept between calls: adding or removing a layer, on the
    # app or for the whole process, must be seen by the very next add_task / add_tasks
    from qtasks.core.hooks import process_hooks

    log = []
    app = QueueTasks("hooks-late", broker_url="memory://hooks-late")
    assert app.add_task("job", 1).status == "new"
    app.hooks.add("enqueue", trace("app", log))
    app.add_task("job", 2)
    assert log == ["app>"]
    everywhere = trace("process", log)
    process_hooks.add("enqueue", everywhere)
    try:
        app.add_tasks([("job", (3,)), ("job", (4,))])
    finally:
        process_hooks.remove("enqueue", everywhere)
    assert log == ["app>", "app>", "process>", "app>", "process>"]
    app.add_task("job", 5)
    assert log[5:] == ["app>"]  # the process layer is gone again
    assert app.stats().queued == 5


def test_the_async_app_sees_a_layer_added_after_its_first_enqueue():
    log = []
    app = AsyncQueueTasks("hooks-late-async", broker_url="memory://hooks-late-async")

    async def scenario():
        await app.add_task("job", 1)
        app.hooks.add("enqueue", trace("app", log))
        await app.add_task("job", 2)
        await app.add_tasks([("job", (3,))])
        app.hooks.remove("enqueue", app.hooks.layers("enqueue")[0])
        await app.add_task("job", 4)
        return (await app.stats()).queued

    assert asyncio.run(scenario()) == 4
    assert log == ["app>", "app>"]


def test_a_chain_composed_while_a_layer_is_added_is_not_kept(monkeypatch):
    # thread "slow" reads the layers, then another thread adds one and enqueues: the chain
    # "slow" composed from the old layers must not be the one later calls use
    import threading

    import qtasks.app as app_module

    log = []
    app = QueueTasks("hooks-race", broker_url="memory://hooks-race")
    real, entered, release = app_module.stacked, threading.Event(), threading.Event()

    def paused(name, *extra):
        layers = real(name, *extra)
        if threading.current_thread().name == "slow":
            entered.set()
            assert release.wait(10)
        return layers

    monkeypatch.setattr(app_module, "stacked", paused)
    slow = threading.Thread(target=app.add_task, args=("job", 1), name="slow")
    slow.start()
    assert entered.wait(10)
    app.hooks.add("enqueue", trace("late", log))
    app.add_task("job", 2)
    release.set()
    slow.join(10)
    app.add_task("job", 3)
    assert log == ["late>", "late>"]  # calls 2 and 3; call 1 read the layers before the add
    assert app.stats().queued == 3


def test_a_task_table_put_in_front_of_the_apps_own_wins():
    from collections import ChainMap

    app = QueueTasks("hooks-table", broker_url="memory://hooks-table")

    @app.task(name="job", priority=1)
    def job():
        return None

    @app.task(name="other", priority=7)
    def other():
        return None

    assert app._definition("job").priority == 1
    app.tasks = ChainMap({"job": app._definition("other")}, *app.tasks.maps)
    assert app._definition("job") is app._definition("other")
    assert app.add_task("job").priority == 7


def test_a_task_done_layer_sees_every_outcome_once():
    from qtasks.worker import Worker

    app = AsyncQueueTasks("hooks-done", broker_url="memory://hooks-done")
    seen = []
    app.hooks.add("task_done", lambda done: seen.append(
        (done.outcome.task_name, done.result, done.queue, done.seconds >= 0,
         done.waited is not None and done.waited >= 0)))

    @app.task
    async def fine():
        return 1

    @app.task(retry=1)
    async def broken():
        raise KeyError("no")

    async def scenario():
        worker = Worker(app, install_signals=False)
        running = asyncio.create_task(worker.run())
        try:
            await fine.add_task(timeout=5)
            return await broken.add_task(timeout=5)
        finally:
            worker.stop()
            await running

    last = asyncio.run(scenario())
    assert last.status == "error"
    assert seen == [("fine", "success", "default", True, True),
                    ("broken", "retry", "default", True, True),
                    ("broken", "error", "default", True, True)]
