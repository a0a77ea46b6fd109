"""streaq: a ``Worker`` run by ``streaq run``. Its client is coredis (no redis-py in this
venv), so the task bodies and the producer's BLPOP use the worker's coredis connection."""

import time
from contextlib import AsyncExitStack

import anyio
import bench_common as c
from streaq import Worker

worker = Worker(redis_url=c.URL, queue_name="bench", concurrency=c.CONCURRENCY or 16)


@worker.task(name="bump")
async def bump() -> None:
    await worker.redis.incr(c.DONE_KEY)


@worker.task(name="noop")
async def noop() -> None:
    return None


@worker.task(name="side")
async def side(key: str) -> None:
    await worker.redis.rpush(key, ["1"])


@worker.task(name="nap")
async def nap() -> None:
    start = time.time()
    await anyio.sleep(c.NAP_SECONDS)
    end = time.time()
    if not c.record_nap(start, end):  # streaq's own client: this venv has no redis-py
        await worker.redis.rpush(c.NAPS_KEY, [f"{start} {end}"])


class StreaqPeer(c.AsyncPeer):
    packages = ["streaq", "coredis", "anyio"]

    async def setup(self):
        self.stack = AsyncExitStack()
        await self.stack.enter_async_context(worker)  # connects; tasks enqueue through it

    async def teardown(self):
        await self.stack.aclose()

    async def single(self):
        await bump.enqueue()

    async def bulk(self, k):
        await worker.enqueue_many([bump.enqueue() for _ in range(k)])

    async def nap(self):
        await nap.enqueue()

    async def side(self, key):
        await side.enqueue(key)

    async def wait_side(self, key):
        return await worker.redis.blpop([key], timeout=c.WAIT_TIMEOUT) is not None

    async def result(self):
        task = await noop.enqueue()
        res = await task.result(timeout=int(c.WAIT_TIMEOUT))  # pub/sub on the task's channel
        if not res.success:
            raise RuntimeError(f"streaq result: {res!r}")

    def worker(self):
        c.exec_worker([c.bin_path("streaq"), "run", "bench_streaq:worker"])


PEER = StreaqPeer()
