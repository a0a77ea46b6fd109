"""pins: pgqueuer[asyncpg]==1.6.0 asyncpg==0.32.0 typer==0.28.0 uvloop==0.23.0 redis==8.1.0 hiredis==3.5.0

PgQueuer on asyncpg (the driver of its ``pgq run`` factory examples): one asyncpg connection
per process; the ``pgq run`` CLI (one process, on uvloop, which the CLI uses when installed).
typer is pinned below 0.29: with typer 0.29.x ``pgq run`` 1.6.0 fails at start whatever the
``--log-level`` (AttributeError: 'str' object has no attribute 'name').

- install: ``Queries.install()``, what ``pgq install`` runs (durability ``durable``, its
  default: logged tables).
- worker: ``pgq run bench_pgqueuer:create_pgqueuer --log-level WARNING`` (the CLI's default is
  INFO). It LISTENs on ``ch_pgqueuer`` (a statement trigger on the queue table NOTIFYs every
  insert, update and delete) and dequeues up to ``--batch-size`` 10 jobs per query. Its
  default concurrency is unlimited (``--max-concurrent-tasks`` unset: every queued job is
  picked, 10 per query, and started at once: 1,000 naps at once overrun redis-py's default
  pool of 100 connections); BENCH_CONCURRENCY is passed as ``--max-concurrent-tasks``.
  Finished jobs are buffered and moved to ``pgqueuer_log`` in batches (at 10 or after about
  0.1 s); each job also gets a ``queued`` and a ``picked`` row there.
- bulk: ``Queries.enqueue`` with lists (one INSERT ... SELECT over unnest-ed arrays).
- result: PgQueuer stores no return values; its documented ``CompletionWatcher`` awaits a
  job's final status (``successful``) by LISTEN/NOTIFY, with its defaults (a 50 ms debounce
  before each status query, a 5 s safety poll); one watcher, opened on the first ``result()``
  and kept for the process, on the producer's connection. With the completion buffer above,
  a round trip takes about 50-170 ms.
"""

import asyncio
from contextlib import asynccontextmanager

import asyncpg
import bench_common as c
from pgqueuer import PgQueuer
from pgqueuer.core.completion import CompletionWatcher
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries


@asynccontextmanager
async def create_pgqueuer():
    """The ``pgq run`` factory: the worker's connection and its four entrypoints."""
    connection = await asyncpg.connect(c.PG_URL)
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint("bump")
    async def bump(job: Job) -> None:
        await c.bump_async()

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("side")
    async def side(job: Job) -> None:
        await c.side_async(job.payload.decode())

    @pgq.entrypoint("nap")
    async def nap(job: Job) -> None:
        await c.nap_async()

    try:
        yield pgq
    finally:
        await connection.close()


class PgQueuerPeer(c.AsyncPeer):
    packages = ["pgqueuer", "asyncpg", "typer", "uvloop", "redis", "hiredis"]

    async def install(self):
        connection = await asyncpg.connect(c.PG_URL)
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    async def setup(self):
        self.connection = await asyncpg.connect(c.PG_URL)
        self.driver = AsyncpgDriver(self.connection)
        self.queries = Queries(self.driver)
        self.watcher = None

    async def teardown(self):
        try:
            if self.watcher is not None:
                await self.watcher.__aexit__(None, None, None)
        finally:
            await self.connection.close()

    async def single(self):
        await self.queries.enqueue("bump", None)

    async def bulk(self, k):
        await self.queries.enqueue(["bump"] * k, [None] * k, [0] * k)

    async def nap(self):
        await self.queries.enqueue("nap", None)

    async def side(self, key):
        await self.queries.enqueue("side", key.encode())

    async def result(self):
        if self.watcher is None:
            self.watcher = await CompletionWatcher(self.driver, queries=self.queries).__aenter__()
        [job_id] = await self.queries.enqueue("noop", None)
        status = await asyncio.wait_for(self.watcher.wait_for(job_id), c.WAIT_TIMEOUT)
        if status != "successful":
            raise RuntimeError(f"pgqueuer job {job_id}: {status}")

    def worker(self):
        argv = [c.bin_path("pgq"), "run", "bench_pgqueuer:create_pgqueuer", "--log-level", "WARNING"]
        if c.CONCURRENCY:
            argv += ["--max-concurrent-tasks", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = PgQueuerPeer()
