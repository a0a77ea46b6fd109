"""Hand-over cost of a plain task function: ``loop.run_in_executor`` against ``TaskThreads``.

Ten no-op calls at a time, as a worker of concurrency 10 hands them over, awaited together::

    .venv/bin/python benchmarks/task_threads.py
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from qtasks.worker.threads import TaskThreads

CALLS = 20_000


def noop() -> None:
    return None


async def executor() -> tuple[float, float]:
    loop, pool = asyncio.get_running_loop(), ThreadPoolExecutor(10)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(CALLS // 10):
        await asyncio.gather(*[loop.run_in_executor(pool, noop) for _ in range(10)])
    pool.shutdown()
    return time.perf_counter() - wall, time.process_time() - cpu


async def task_threads() -> tuple[float, float]:
    pool = TaskThreads(10)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(CALLS // 10):
        await asyncio.gather(*[pool.run(noop) for _ in range(10)])
    pool.shutdown()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    for name, run in (("run_in_executor", executor), ("TaskThreads", task_threads)) * 2:
        wall, cpu = asyncio.run(run())
        print(f"{name:16} {wall / CALLS * 1e6:5.1f} us wall, {cpu / CALLS * 1e6:5.1f} us CPU per call")


if __name__ == "__main__":
    main()
