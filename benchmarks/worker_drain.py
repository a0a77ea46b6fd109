"""Drain rate and CPU per task of one in-process worker on the embedded backend.

Enqueues N no-op tasks (``add_tasks`` when the checkout has it), runs a ``Worker`` in this
process until all of them ran, and prints tasks per second and the process's CPU per task.
Run it against another checkout with ``PYTHONPATH=<checkout>/src`` to compare versions::

    .venv/bin/python benchmarks/worker_drain.py --tasks 20000
    .venv/bin/python benchmarks/worker_drain.py --tasks 20000 --url redis://127.0.0.1:6379/8

``--loop`` picks the event loop as ``qtasks run --loop`` does (a checkout from before that
option runs on asyncio's own); ``--flavour async`` runs coroutine tasks on the asyncio app;
``--body incr`` gives each task a Redis ``INCR`` (redis-py, on 127.0.0.1:6379 database 8, or
``--incr-url``), the body ``redis_peers.py`` and ``postgres_peers.py`` drain; ``redis_peers.py``
sends it to the queue's own Redis (``--incr-url`` the same as ``--url``), where it waits behind
the worker's scripts. On a Redis ``--url`` it also prints the
time Redis spent running the worker's calls (``FCALL``/``EVALSHA`` in ``INFO commandstats``,
reset once the tasks are enqueued), per task: use a server of its own, since that counts every
client's calls.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import threading
import time
from pathlib import Path

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.worker import Worker

try:
    from qtasks.worker import LOOPS, loop_factory
except ImportError:  # a checkout from before --loop
    LOOPS = ("asyncio",)

    def loop_factory(choice):  # type: ignore[no-redef]
        return "asyncio", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--flavour", choices=("sync", "async"), default="sync")
    parser.add_argument("--body", choices=("noop", "incr"), default="noop")
    parser.add_argument("--metrics", action="store_true",
                        help="count with the Prometheus metrics of qtasks run --metrics-port "
                             "(not served)")
    parser.add_argument("--loop", choices=LOOPS, default="auto",
                        help="the event loop, as qtasks run --loop (default auto)")
    parser.add_argument("--url", help="a backend URL (default: a fresh SQLite file); its "
                        "'drain' app is flushed first")
    parser.add_argument("--incr-url", default=REDIS,
                        help=f"the Redis of --body incr (default {REDIS}); give --url's to "
                             "drain as redis_peers.py does, the tasks' commands on the queue's "
                             "own server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtasks-drain-") as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'drain.sqlite3'}"
        lock, finished, count = threading.Lock(), threading.Event(), [0]

        def done() -> None:
            with lock:
                count[0] += 1
                if count[0] >= args.tasks:
                    finished.set()

        if args.flavour == "async":
            app = AsyncQueueTasks("drain", broker_url=url)
            bump = _async_incr(args.incr_url) if args.body == "incr" else None

            @app.task(name="noop")
            async def anoop(i: int) -> int:
                if bump is not None:
                    await bump()
                done()
                return i

            app.client.flush()
            calls = [("noop", (i,)) for i in range(args.tasks)]

            async def prepare() -> None:  # the worker's own loop: the backend's connections
                await app.add_tasks(calls)
        else:
            app = QueueTasks("drain", broker_url=url)
            sync_bump = _sync_incr(args.incr_url) if args.body == "incr" else None

            @app.task(name="noop")
            def noop(i: int) -> int:
                if sync_bump is not None:
                    sync_bump()
                done()
                return i

            app.client.flush()
            if hasattr(app, "add_tasks"):
                app.add_tasks([("noop", (i,)) for i in range(args.tasks)])
            else:  # a checkout from before bulk enqueue
                for i in range(args.tasks):
                    app.add_task("noop", i)

            async def prepare() -> None:
                return None

        if args.metrics:
            from qtasks.metrics import WorkerMetrics

            WorkerMetrics().install(app)
        worker = Worker(app, concurrency=args.concurrency, install_signals=False)

        def stop_when_done() -> None:
            finished.wait()
            worker.request_stop()

        async def drain() -> tuple[float, resource.struct_rusage]:
            await prepare()
            _script_usec(url, reset=True)
            before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            threading.Thread(target=stop_when_done, daemon=True).start()
            await worker.run()
            return time.perf_counter() - started, before

        name, factory = loop_factory(args.loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            seconds, before = runner.run(drain())
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{args.tasks / seconds:,.0f} tasks/s, {cpu / args.tasks * 1e6:.0f} us CPU per task "
              f"({args.tasks} tasks, concurrency {args.concurrency}, {args.flavour}, {args.body}, "
              f"{name}{', metrics' if args.metrics else ''})")
        usec = _script_usec(url)
        if usec is not None:
            print(f"Redis ran the worker's calls {usec / args.tasks:.1f} us per task")


REDIS = "redis://127.0.0.1:6379/8"
SCRIPT_CALLS = ("fcall", "fcall_ro", "evalsha", "evalsha_ro", "eval", "eval_ro")


def _script_usec(url: str, reset: bool = False) -> int | None:
    """Microseconds Redis spent in script and function calls since the last reset."""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    with redis.Redis.from_url(url) as client:
        if reset:
            client.config_resetstat()
            return None
        stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in SCRIPT_CALLS)


def _async_incr(url: str):
    import redis.asyncio as aredis

    client = None

    async def bump() -> None:
        nonlocal client
        if client is None:  # made on the worker's loop
            client = aredis.Redis.from_url(url)
        await client.incr("qtasks-drain-bench")
    return bump


def _sync_incr(url: str):
    import redis

    client = redis.Redis.from_url(url)
    return lambda: client.incr("qtasks-drain-bench")


if __name__ == "__main__":
    main()
