"""The worker lets the tasks it has just started take their first step before its next round
trip goes out, so that a task's own I/O is not queued behind the worker's call (on one Redis,
a task's command would otherwise wait for the worker's whole script)."""

import asyncio
import inspect

from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.worker import Worker


def test_started_tasks_take_a_step_before_the_next_writing_round_trip():
    app = AsyncQueueTasks("first-steps", broker_url="memory://first-steps")
    steps = []

    @app.task
    async def tick(i):
        steps.append(i)  # the task's first step: where its own I/O would begin
        await asyncio.sleep(0)
        return i

    worker = Worker(app, concurrency=5, install_signals=False)
    transport = app.transport
    real_exchange = transport.exchange
    writing, unstepped = [], []

    async def exchange(*args, **kwargs):
        if kwargs.get("finished"):
            writing.append(len(kwargs["finished"]))
            # asyncio tasks the worker made for its deliveries that have not run at all yet
            unstepped.extend(task for task in worker._running
                             if inspect.getcoroutinestate(task.get_coro()) == "CORO_CREATED")
        return await real_exchange(*args, **kwargs)

    transport.exchange = exchange

    async def scenario():
        await app.add_tasks([("tick", (i,)) for i in range(200)])
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(500):
                if len(steps) == 200 and not worker._running and not worker._done:
                    break
                await asyncio.sleep(0.01)
        finally:
            worker.stop()
            await running

    asyncio.run(scenario())
    assert sorted(steps) == list(range(200))
    assert sum(writing) >= 200 and len(writing) > 1  # outcomes went out in several trips
    assert unstepped == []
