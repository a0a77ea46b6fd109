"""A bulk enqueue on Redis, the client's part and Redis' part apart.

Runs ``--calls`` sync-app ``add_tasks`` calls of ``--batch`` no-op tasks and prints, per task:
the wall time, this process's CPU time, and the time Redis spent in the backend's ``FCALL``s
(from ``INFO commandstats``, read before and after: the other clients of that Redis add to it,
so use a Redis nothing else is using). When the two parts add up to the wall time, they ran
one after the other; when the wall time is near the larger one, they overlapped::

    .venv/bin/python benchmarks/bulk_enqueue.py --url redis://127.0.0.1:6379/12
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/bulk_enqueue.py

The URL's app (``bulk``) is flushed first.
"""

from __future__ import annotations

import argparse
import time

import redis

from qtasks import QueueTasks


def fcall_usec(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    app = QueueTasks(name="bulk", broker_url=args.url)

    @app.task(name="bump")
    def bump() -> None:
        return None

    app.flush_all()
    app.add_task("bump")  # connected, the library loaded
    server = redis.Redis.from_url(args.url)
    redis_before, cpu_before = fcall_usec(server), time.process_time()
    began = time.perf_counter()
    for _ in range(args.calls):
        app.add_tasks([("bump", ())] * args.batch)
    wall = time.perf_counter() - began
    cpu, spent = time.process_time() - cpu_before, (fcall_usec(server) - redis_before) / 1e6
    n = args.calls * args.batch
    print(f"{n / wall:,.0f} tasks/s: per task {wall / n * 1e6:.1f} us wall, "
          f"client CPU {cpu / n * 1e6:.1f} us, Redis {spent / n * 1e6:.1f} us")
    app.flush_all()
    app.client.close()


if __name__ == "__main__":
    main()
