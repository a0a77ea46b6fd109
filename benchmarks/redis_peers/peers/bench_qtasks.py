"""This repository's qtasks on its Redis backend, or on PostgreSQL when ``BENCH_PG_URL`` is set
(``benchmarks/postgres_peers.py``). BENCH_VARIANT=sync: ``qtasks.QueueTasks`` with plain task
functions; BENCH_VARIANT=async: ``qtasks.asyncio.QueueTasks`` with coroutine tasks. The worker is
the ``qtasks -A bench_qtasks:app run`` CLI at --loglevel WARNING."""

import contextlib
import importlib
import sys

import bench_common as c

ASYNC = c.VARIANT == "async"
BROKER = c.PG_URL or c.URL

# qtasks imports a backend (and its client library) on the app's first call. Every other peer
# imports its client with its own module, before any timed loop; so does this adapter, or the
# first timed call of the single and bulk scenarios would carry the import of redis-py or
# psycopg (60-100 ms here). The first call still opens the connections (saq, arq, taskiq and
# streaq connect in their adapters' setup instead).
importlib.import_module("qtasks.backends.postgres" if c.PG_URL else "qtasks.backends.redis")

if ASYNC:
    from qtasks.asyncio import QueueTasks

    app = QueueTasks(name="bench", broker_url=BROKER)

    @app.task(name="bump")
    async def bump() -> None:
        await c.bump_async()

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="side")
    async def side(key: str) -> None:
        await c.side_async(key)

    @app.task(name="nap")
    async def nap() -> None:
        await c.nap_async()
else:
    from qtasks import QueueTasks

    app = QueueTasks(name="bench", broker_url=BROKER)

    @app.task(name="bump")
    def bump() -> None:
        c.bump_sync()

    @app.task(name="noop")
    def noop() -> None:
        return None

    @app.task(name="side")
    def side(key: str) -> None:
        c.side_sync(key)

    @app.task(name="nap")
    def nap() -> None:
        c.nap_sync()


def _check(record) -> None:
    if record is None or record.status != "success":
        raise RuntimeError(f"qtasks result: {record!r}")


def _worker_argv() -> list[str]:
    argv = [sys.executable, "-m", "qtasks", "-A", "bench_qtasks:app", "run",
            "--loglevel", "WARNING"]
    if c.CONCURRENCY:
        argv += ["--concurrency", str(c.CONCURRENCY)]
    return argv


def _install() -> None:
    if c.PG_URL:
        from qtasks.backends.postgres import migrate

        migrate(c.PG_URL)


PACKAGES = ["qtasks", "psycopg", "psycopg-binary", "uvloop"] if c.PG_URL else ["qtasks", "redis", "hiredis"]


class SyncQTasksPeer(c.Peer):
    packages = PACKAGES

    def install(self):
        _install()

    def teardown(self):
        with contextlib.suppress(Exception):
            app.client.close()

    def single(self):
        app.add_task("bump")

    def bulk(self, k):
        app.add_tasks([("bump", ())] * k)

    def nap(self):
        app.add_task("nap")

    def side(self, key):
        app.add_task("side", key)

    def result(self):
        _check(app.add_task("noop", timeout=c.WAIT_TIMEOUT))

    def worker(self):
        c.exec_worker(_worker_argv())


class AsyncQTasksPeer(c.AsyncPeer):
    packages = PACKAGES

    def install(self):
        _install()

    async def teardown(self):
        with contextlib.suppress(Exception):
            await app.transport.close()

    async def single(self):
        await app.add_task("bump")

    async def bulk(self, k):
        await app.add_tasks([("bump", ())] * k)

    async def nap(self):
        await app.add_task("nap")

    async def side(self, key):
        await app.add_task("side", key)

    async def result(self):
        _check(await app.add_task("noop", timeout=c.WAIT_TIMEOUT))

    def worker(self):
        c.exec_worker(_worker_argv())


PEER = AsyncQTasksPeer() if ASYNC else SyncQTasksPeer()
