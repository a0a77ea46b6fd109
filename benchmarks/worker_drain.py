"""Drain rate and CPU per task of one in-process worker on the embedded backend.

Enqueues N no-op tasks (``add_tasks`` when the checkout has it), runs a ``Worker`` in this
process until all of them ran, and prints tasks per second and the process's CPU per task.
Run it against another checkout with ``PYTHONPATH=<checkout>/src`` to compare versions::

    .venv/bin/python benchmarks/worker_drain.py --tasks 20000
    .venv/bin/python benchmarks/worker_drain.py --tasks 20000 --url redis://127.0.0.1:6379/8
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
from qtasks.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--url", help="a backend URL (default: a fresh SQLite file); its "
                        "'drain' app is flushed first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtasks-drain-") as folder:
        app = QueueTasks("drain", broker_url=args.url
                         or f"sqlite:///{Path(folder) / 'drain.sqlite3'}")
        app.client.flush()
        lock, finished, count = threading.Lock(), threading.Event(), [0]

        @app.task(name="noop")
        def noop(i: int) -> int:
            with lock:
                count[0] += 1
                if count[0] >= args.tasks:
                    finished.set()
            return i

        if hasattr(app, "add_tasks"):
            app.add_tasks([("noop", (i,)) for i in range(args.tasks)])
        else:  # a checkout from before bulk enqueue
            for i in range(args.tasks):
                app.add_task("noop", i)
        worker = Worker(app, concurrency=args.concurrency, install_signals=False)

        def stop_when_done() -> None:
            finished.wait()
            worker.request_stop()

        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        threading.Thread(target=stop_when_done, daemon=True).start()
        asyncio.run(worker.run())
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{args.tasks / seconds:,.0f} tasks/s, {cpu / args.tasks * 1e6:.0f} us CPU per task "
              f"({args.tasks} tasks, concurrency {args.concurrency})")


if __name__ == "__main__":
    main()
