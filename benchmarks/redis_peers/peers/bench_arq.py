"""arq: ``WorkerSettings`` run by the ``arq`` CLI; results kept (arq's default)."""

import bench_common as c
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import func

REDIS = RedisSettings.from_dsn(c.URL)

# --custom-log-dict: the CLI's way to set its logging; arq's logger at WARNING (no per-job lines).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"h": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["h"], "level": "WARNING"}},
}


async def bump(ctx) -> None:
    await c.bump_async()


async def noop(ctx) -> None:
    return None


async def side(ctx, key: str) -> None:
    await c.side_async(key)


async def nap(ctx) -> None:
    await c.nap_async()


class WorkerSettings:
    functions = [func(bump, name="bump"), func(noop, name="noop"), func(side, name="side"),
                 func(nap, name="nap")]
    redis_settings = REDIS
    max_jobs = c.CONCURRENCY or 10  # arq's default is 10


class ArqPeer(c.AsyncPeer):
    packages = ["arq", "redis", "hiredis"]

    async def setup(self):
        self.pool = await create_pool(REDIS)

    async def teardown(self):
        await self.pool.aclose()

    async def single(self):
        await self.pool.enqueue_job("bump")

    def bulk(self, k):
        raise c.NotAvailable("arq has no bulk enqueue API")

    async def nap(self):
        await self.pool.enqueue_job("nap")

    async def side(self, key):
        await self.pool.enqueue_job("side", key)

    async def result(self):
        job = await self.pool.enqueue_job("noop")
        await job.result(timeout=c.WAIT_TIMEOUT)  # polls, poll_delay 0.5 s by default

    def worker(self):
        c.exec_worker([c.bin_path("arq"), "--custom-log-dict", "bench_arq.LOG_CONFIG",
                       "bench_arq.WorkerSettings"])


PEER = ArqPeer()
