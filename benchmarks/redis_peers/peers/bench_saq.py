"""saq: a Redis ``Queue``; the ``saq`` CLI with its default single worker process."""

import bench_common as c
from saq import Queue, Status

queue = Queue.from_url(c.URL, name="bench")


async def bump(ctx) -> None:
    await c.bump_async()


async def noop(ctx) -> None:
    return None


async def side(ctx, *, dest: str) -> None:  # "key" is a Job field in saq (the job's key)
    await c.side_async(dest)


async def nap(ctx) -> None:
    await c.nap_async()


settings = {
    "queue": queue,
    "functions": [bump, noop, side, nap],
    "concurrency": c.CONCURRENCY or 10,  # saq's default is 10
}


class SaqPeer(c.AsyncPeer):
    packages = ["saq", "redis", "hiredis"]

    async def setup(self):
        await queue.connect()

    async def teardown(self):
        await queue.disconnect()

    async def single(self):
        await queue.enqueue("bump")

    def bulk(self, k):
        raise c.NotAvailable("saq has no bulk enqueue API (map/batch enqueue one by one)")

    async def nap(self):
        await queue.enqueue("nap")

    async def side(self, key):
        await queue.enqueue("side", dest=key)

    async def result(self):
        # job.refresh(until_complete=...) waits on saq's pub/sub job updates; queue.apply()
        # would poll every 0.5 s instead (and sleep once more after seeing the result).
        job = await queue.enqueue("noop")
        await job.refresh(until_complete=c.WAIT_TIMEOUT)
        if job.status != Status.COMPLETE:
            raise RuntimeError(f"saq job: {job.status}")

    def worker(self):
        c.exec_worker([c.bin_path("saq"), "bench_saq.settings"])


PEER = SaqPeer()
