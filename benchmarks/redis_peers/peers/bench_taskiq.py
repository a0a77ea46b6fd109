"""taskiq with taskiq-redis: RedisStreamBroker (consumer groups, acks) and
RedisAsyncResultBackend; the ``taskiq worker`` CLI with one worker process."""

import bench_common as c
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

broker = RedisStreamBroker(url=c.URL).with_result_backend(RedisAsyncResultBackend(redis_url=c.URL))


@broker.task(task_name="bump")
async def bump() -> None:
    await c.bump_async()


@broker.task(task_name="noop")
async def noop() -> None:
    return None


@broker.task(task_name="side")
async def side(key: str) -> None:
    await c.side_async(key)


@broker.task(task_name="nap")
async def nap() -> None:
    await c.nap_async()


class TaskiqPeer(c.AsyncPeer):
    packages = ["taskiq", "taskiq-redis", "redis", "hiredis"]

    async def setup(self):
        # Declares the stream's consumer group (at "$") before anything is sent, so the worker
        # started later reads every message sent after this.
        await broker.startup()

    async def teardown(self):
        await broker.shutdown()

    async def single(self):
        await bump.kiq()

    def bulk(self, k):
        raise c.NotAvailable("taskiq has no bulk enqueue API")

    async def nap(self):
        await nap.kiq()

    async def side(self, key):
        await side.kiq(key)

    async def result(self):
        task = await noop.kiq()
        res = await task.wait_result(timeout=c.WAIT_TIMEOUT)  # polls, check_interval 0.2 s
        if res.is_err:
            raise RuntimeError(f"taskiq result: {res!r}")

    def worker(self):
        argv = [c.bin_path("taskiq"), "worker", "bench_taskiq:broker", "--workers", "1",
                "--log-level", "WARNING"]
        if c.CONCURRENCY:
            argv += ["--max-async-tasks", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = TaskiqPeer()
