"""An idle worker's claim goes out right behind its blocking pop of the wake markers, on the same
connection, so that Redis runs it the moment a task arrives. These tests drive two workers'
round trips (the worker's side of the backend contract, ``transport.exchange``) on a private
Redis, and check that giving such a wait up never loses a task nor hands it out twice."""

from __future__ import annotations

import asyncio
import random

import pytest

from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.backends.redis import connection
from qtasks.backends.redis.connection import AsyncConn

pytestmark = pytest.mark.slow

QUEUES = ["default"]


def _waiting(app: AsyncQueueTasks, worker: str, block: float = 5.0) -> asyncio.Future:
    return asyncio.ensure_future(app.transport.exchange(worker, QUEUES, limit=4, lease=30,
                                                        block=block))


async def _uuids(call) -> list[str]:
    return [d.uuid for d in (await call).deliveries]


@pytest.mark.parametrize("direct", [True, False], ids=["pipelined", "redis-py"])
def test_a_given_up_wait_hands_each_task_to_exactly_one_worker(redis_server, monkeypatch,
                                                                 direct):
    """The task arrives as the first worker gives its wait up: either that worker's claim ran
    first (its next round trip hands the task over), or the claim was skipped and the second
    worker, waiting behind it, gets the task at once. Both ways of sending: the claim written
    behind the pop, and (as for Cluster and Sentinel) the pop, then the claim."""
    monkeypatch.setattr(connection, "_direct_ok", lambda settings: direct)

    async def run() -> dict[str, int]:
        one = AsyncQueueTasks(name="idle", broker_url=redis_server.url)
        two = AsyncQueueTasks(name="idle", broker_url=redis_server.url)
        paths = {"first": 0, "second": 0}
        try:
            for i in range(40):
                first = _waiting(one, "w1")
                await asyncio.sleep(0.03)  # both wait in Redis, the first one longest
                second = _waiting(two, "w2")
                await asyncio.sleep(0.03)
                # the task and the first worker's giving up, close together, in either order
                if i % 2:
                    task = await one.add_task("mark", i)
                    await asyncio.sleep(random.random() * 0.001)
                    first.cancel()  # too late if its claim already came back with the task
                else:
                    first.cancel()
                    await asyncio.sleep(random.random() * 0.001)
                    task = await one.add_task("mark", i)
                await asyncio.wait([first])  # cancelled, or done before the cancel came
                taken_first = [] if first.cancelled() else await _uuids(first)
                taken_first += await _uuids(
                    one.transport.exchange("w1", QUEUES, limit=4, lease=30, block=0))
                if str(task.uuid) in taken_first:
                    paths["first"] += 1
                    second.cancel()  # it waits on: nothing is left for it
                    taken_second = await _uuids(
                        two.transport.exchange("w2", QUEUES, limit=4, lease=30, block=0))
                else:
                    paths["second"] += 1
                    # woken by the marker the skipped claim put back, long before its 5 s
                    taken_second = await _uuids(asyncio.wait_for(second, 3))
                assert (taken_first + taken_second).count(str(task.uuid)) == 1, (i, paths)
                assert len(taken_first) + len(taken_second) == 1
            return paths
        finally:
            await one.transport.close()
            await two.transport.close()

    print("who took the task:", asyncio.run(run()))


def test_a_skipped_claim_puts_the_marker_back_for_the_next_worker(redis_server, monkeypatch):
    """The worst order: the wait is given up (its claim will be skipped), but the pop returns
    with the marker of a task that arrived just before the poke. The marker must not be lost
    with the skipped claim: the next idle worker is woken for the task."""
    waits = []
    new_wait = AsyncConn.new_wait

    def recorded(self: AsyncConn):
        wait = new_wait(self)
        waits.append((self, wait))
        return wait

    monkeypatch.setattr(AsyncConn, "new_wait", recorded)

    async def run() -> None:
        one = AsyncQueueTasks(name="marker", broker_url=redis_server.url)
        two = AsyncQueueTasks(name="marker", broker_url=redis_server.url)
        try:
            first = _waiting(one, "w1")
            await asyncio.sleep(0.05)
            second = _waiting(two, "w2")
            await asyncio.sleep(0.05)
            conn, wait = waits[0]
            # what abandon() sets first, without the poke that would end the pop
            await conn.redis.set(conn.keys.prefix + wait.abandon, 1, px=60_000)
            task = await one.add_task("mark", 1)  # the first worker's pop takes its marker
            assert await _uuids(asyncio.wait_for(second, 3)) == [str(task.uuid)]
            assert not first.done()  # its claim took nothing; it waits again
            first.cancel()
            assert await _uuids(
                one.transport.exchange("w1", QUEUES, limit=4, lease=30, block=0)) == []
        finally:
            await one.transport.close()
            await two.transport.close()

    asyncio.run(run())
