"""Many producers waiting for results at once, on Redis: results per second, and the producers'
CPU per result.

``--threads`` threads of one sync app (each thread is a producer with its own subscription,
as each web process would be) each call ``add_task("noop", timeout=10)`` ``--waits`` times in
turn, against one worker process at concurrency ``--threads``. Before each thread had a
notice channel of its own, every waiting thread was told of every result any of them waited
for. Run it against another checkout with ``PYTHONPATH=<checkout>/src`` (the worker process
inherits it)::

    .venv/bin/python benchmarks/waiting_producers.py --threads 20 --waits 50
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/waiting_producers.py
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

APP = '''\
from qtasks import QueueTasks

app = QueueTasks(name="waiting_producers", broker_url={url!r})


@app.task
def noop():
    return None
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--waits", type=int, default=50, help="results each thread waits for")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13",
                        help="a Redis URL whose 'waiting_producers' app may be flushed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qtasks-waiting-") as folder:
        Path(folder, "waiting_app.py").write_text(APP.format(url=args.url))
        sys.path.insert(0, folder)
        from waiting_app import app  # type: ignore[import-not-found]

        app.flush_all()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (folder, os.environ.get("PYTHONPATH", "")) if p))
        worker = subprocess.Popen(
            [sys.executable, "-m", "qtasks", "-A", "waiting_app:app", "run", "--loglevel",
             "WARNING", "--concurrency", str(args.threads)], env=env)
        try:
            if app.add_task("noop", timeout=30) is None:  # the worker is up
                raise SystemExit("the worker did not answer within 30 s")
            failures: list[str] = []

            def producer() -> None:
                for _ in range(args.waits):
                    task = app.add_task("noop", timeout=10)
                    if task is None or task.status != "success":
                        failures.append(repr(task))

            threads = [threading.Thread(target=producer) for _ in range(args.threads)]
            before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            worker.terminate()
            worker.wait(30)
    if failures:
        raise SystemExit(f"{len(failures)} waits failed, e.g. {failures[0]}")
    total = args.threads * args.waits
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"{args.threads} producers x {args.waits} waits: {total / wall:,.0f} results/s, "
          f"producers' CPU {cpu / total * 1e6:.0f} us per result")


if __name__ == "__main__":
    main()
