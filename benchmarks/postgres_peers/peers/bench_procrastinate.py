"""pins: procrastinate==3.10.0 psycopg[binary]==3.3.9 psycopg-pool==3.3.3 redis==8.1.0 hiredis==3.5.0

procrastinate: an ``App`` on ``PsycopgConnector`` (psycopg 3, an ``AsyncConnectionPool``);
coroutine tasks; the ``procrastinate worker`` CLI (one process).

- install: ``app.schema_manager.apply_schema()`` (procrastinate's schema.sql, logged tables).
- worker: ``procrastinate --app=bench_procrastinate.app --log-level=warning worker`` (the
  CLI's default level is INFO, two lines per job). It LISTENs for new jobs (``listen_notify``,
  on by default, with a 5 s safety poll) and fetches one job per query, one fetch after
  another. Its default concurrency is 1 (one job at a time); BENCH_CONCURRENCY is passed as
  ``--concurrency``. The pool stays at psycopg_pool's default (4 connections; the docs advise
  up to concurrency + 1 for short jobs, which made no difference to the 1,000 naps here, the
  fetches being sequential), and every checkout first checks its connection (a round trip).
  A wake-up can be lost: a NOTIFY that lands while the worker's fetch after a finished job is
  in flight is cleared with it, so that job waits for the 5 s poll (a few percent of the
  sequential side round trips here; with ``--fetch-job-polling-interval 1`` they wait 1 s).
- bulk: ``Task.batch_defer_async`` (one query: procrastinate_defer_jobs_v1 over an array).
- result: n/a, procrastinate keeps no task results (a task's return value is only logged).
- Finished jobs stay in ``procrastinate_jobs`` (``--delete-jobs`` defaults to never).
"""

import bench_common as c
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=c.PG_URL))


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


class ProcrastinatePeer(c.AsyncPeer):
    packages = ["procrastinate", "psycopg", "psycopg-binary", "psycopg-pool", "redis", "hiredis"]

    def install(self):
        with app.open():  # a sync psycopg connection, closed on leaving
            app.schema_manager.apply_schema()

    async def setup(self):
        await app.open_async()

    async def teardown(self):
        await app.close_async()

    async def single(self):
        await bump.defer_async()

    async def bulk(self, k):
        await bump.batch_defer_async(*({} for _ in range(k)))

    async def nap(self):
        await nap.defer_async()

    async def side(self, key):
        await side.defer_async(key=key)

    def result(self):
        raise c.NotAvailable("procrastinate keeps no task results (return values are only logged)")

    def worker(self):
        argv = [c.bin_path("procrastinate"), "--app=bench_procrastinate.app", "--log-level=warning", "worker"]
        if c.CONCURRENCY:
            argv += ["--concurrency", str(c.CONCURRENCY)]
        c.exec_worker(argv)


PEER = ProcrastinatePeer()
