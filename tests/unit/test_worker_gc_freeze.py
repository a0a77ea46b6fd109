"""A running worker keeps what was alive at its start out of the garbage collector's full
collections (``gc.freeze``), hands it back when it stops, and leaves a program that froze
objects itself alone."""

import asyncio
import gc

from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.worker import Worker


def _run_worker_once(name: str) -> tuple[int, int]:
    """Run a worker until one task has reported the freeze count it saw; return that count and
    the count after the worker stopped."""
    app = AsyncQueueTasks(name, broker_url=f"memory://{name}")

    @app.task
    async def frozen_now() -> int:
        return gc.get_freeze_count()

    worker = Worker(app, concurrency=2, install_signals=False)

    async def scenario() -> int:
        running = asyncio.create_task(worker.run())
        try:
            record = await frozen_now.add_task(timeout=10)
        finally:
            worker.stop()
            await running
        assert record is not None and record.status == "success"
        return record.returning

    seen = asyncio.run(scenario())
    return seen, gc.get_freeze_count()


def test_a_worker_freezes_its_start_up_objects_and_thaws_them_at_its_stop():
    gc.unfreeze()  # whatever an earlier test left frozen
    seen, after = _run_worker_once("gc-freeze")
    assert seen > 1000  # the modules, the app and the backend at least
    assert after == 0


def test_a_program_that_froze_objects_itself_keeps_them_frozen():
    gc.unfreeze()
    keep = [object() for _ in range(10)]  # noqa: F841  (alive while frozen)
    gc.freeze()
    mine = gc.get_freeze_count()
    try:
        seen, after = _run_worker_once("gc-freeze-host")
        assert seen == mine  # the worker froze nothing more
        assert after == mine  # and thawed nothing of the program's
    finally:
        gc.unfreeze()
