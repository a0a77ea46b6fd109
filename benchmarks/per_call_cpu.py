"""CPU per call of qtasks' own Python on the producer's and the worker's hot paths.

Each figure is the best of several repeats (the minimum filters out a shared machine's noise
better than a mean), in microseconds per call:

- ``prepare``: an ``add_task`` up to its enqueue (plugins, layers, encoding), no I/O;
- ``prepare+record``: the same, then the ``new`` record ``add_task`` returns;
- ``execute``: the worker decoding, running and encoding a no-op coroutine task, no I/O;
- ``add_task sync`` / ``add_task async``: a whole enqueue on ``--url``, process CPU per call
  (both clients and the round trip's system calls; the wait for Redis is not CPU).

Compare checkouts with ``PYTHONPATH=<checkout>/src``, alternating them::

    .venv/bin/python benchmarks/per_call_cpu.py
    PYTHONPATH=/tmp/wt-old/src .venv/bin/python benchmarks/per_call_cpu.py
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from concurrent.futures import ThreadPoolExecutor

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks
from qtasks.backends.base import Delivery
from qtasks.worker.executor import execute


def best(seconds: list[float], calls: int) -> float:
    return min(seconds) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/8",
                        help="the backend for the two add_task figures (its 'percall' app is "
                             "flushed)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    n, repeats = args.calls, args.repeats

    app = QueueTasks("percall", broker_url=args.url)

    @app.task(name="noop")
    def noop() -> None:
        return None

    def prepare() -> None:
        app._steps_sync(app._add_task_steps("noop", (), {}, None, None, None), defer=True)

    def prepare_record() -> None:
        steps = app._add_task_steps("noop", (), {}, None, None, None)
        app._steps_sync(steps, defer=True)
        app._steps_sync(steps)

    figures = {
        "prepare": best(timeit.repeat(prepare, number=n, repeat=repeats), n),
        "prepare+record": best(timeit.repeat(prepare_record, number=n, repeat=repeats), n),
    }

    aapp = AsyncQueueTasks("percall", broker_url=args.url)

    @aapp.task(name="noop")
    async def anoop() -> None:
        return None

    new = aapp._prepare("noop", (), {}, None)
    delivery = Delivery("1", new.uuid, new.envelope, 0, 0, "default", 1, True)
    pool = ThreadPoolExecutor(1)

    async def executes() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await execute(aapp, delivery, pool, None)
        return time.perf_counter() - started

    async def enqueues() -> float:
        started = time.process_time()
        for _ in range(n // 5):
            await aapp.add_task("noop")
        return time.process_time() - started

    async def on_loop() -> tuple[list[float], list[float]]:
        await aapp.add_task("noop")  # connect first
        return ([await executes() for _ in range(repeats)],
                [await enqueues() for _ in range(repeats)])

    app.flush_all()
    executed, async_enqueued = asyncio.run(on_loop())
    figures["execute"] = best(executed, n)

    def sync_enqueues() -> float:
        started = time.process_time()
        for _ in range(n // 5):
            app.add_task("noop")
        return time.process_time() - started

    app.add_task("noop")
    figures["add_task sync"] = best([sync_enqueues() for _ in range(repeats)], n // 5)
    figures["add_task async"] = best(async_enqueued, n // 5)
    app.flush_all()
    for name, value in figures.items():
        print(f"{name:16} {value:8.1f} us")


if __name__ == "__main__":
    main()
