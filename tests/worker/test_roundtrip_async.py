"""The async app against a real worker on the test backend."""

import asyncio
from uuid import UUID, uuid4

import pytest

from apps.async_app import add, app, routed_later
from qtasks import Task


@pytest.fixture
def worker(start_worker):
    asyncio.run(app.flush_all())
    return start_worker("apps.async_app:app")


def run(coro):
    return asyncio.run(coro)


def test_round_trip_by_name_and_by_handle(worker):
    async def scenario():
        by_name = await app.add_task("test", 5, timeout=10)
        by_handle = await add.add_task(1, b=2, timeout=10)
        prebuilt = await add(2, 3, timeout=10).add_task()
        return by_name, by_handle, prebuilt

    by_name, by_handle, prebuilt = run(scenario())
    assert (by_name.status, by_name.returning) == ("success", "User 5 recorded")
    assert by_handle.returning == 3
    assert prebuilt.returning == 5


def test_fire_and_forget_then_get(worker):
    async def scenario():
        task = await app.add_task("test", 5)
        final = await task.wait_result_async(timeout=10)
        return task, final, await app.get(str(task.uuid))

    task, final, again = run(scenario())
    assert isinstance(task, Task) and task.status == "new" and task.args == (5,)
    assert isinstance(task.uuid, UUID)
    assert final.status == "success" and final == again


def test_error_record_has_traceback(worker):
    record = run(app.add_task("error_task", timeout=10))
    assert record.status == "error"
    assert "ZeroDivisionError" in record.traceback


def test_get_unknown_uuid_is_none(worker):
    assert run(app.get(str(uuid4()))) is None


def test_wait_timeout_returns_none_while_task_still_finishes(worker):
    async def scenario():
        task = await app.add_task("slow", 1.0)
        early = await app.wait_async(task.uuid, 0.1)
        late = await app.wait_async(task.uuid, 10)
        return early, late

    early, late = run(scenario())
    assert early is None
    assert late.status == "success"


def test_blocking_sync_task_does_not_delay_async_task(worker):
    async def scenario():
        blocker = await app.add_task("block", 2.0)
        await asyncio.sleep(0.3)  # let the worker start the blocking function
        quick = await app.add_task("quick", timeout=10)
        blocked = await app.wait_async(blocker.uuid, 10)
        return quick, blocked

    quick, blocked = run(scenario())
    assert quick.status == "success" and blocked.status == "success"
    # the async task finished while the 2 s blocking function was still running
    assert quick.returning < blocked.returning - 1.0


def test_async_router_task_defined_after_include(worker):
    record = run(routed_later.add_task(7, timeout=10))
    assert (record.status, record.returning) == ("success", "routed 7")
