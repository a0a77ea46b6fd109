"""Where an idle worker's result round trip spends its time, phase by phase, on Redis.

A worker process (``qtasks run``, concurrency 10) waits on an empty queue; this process makes
``--trips`` sequential round trips through the result API (``await add_task("noop",
timeout=5)`` on the asyncio app, whose ``noop`` is a coroutine, or ``add_task(...,
timeout=5)`` on the sync one, whose ``noop`` runs in a worker thread) while a
``MONITOR`` connection records when Redis began each of the backend's calls. Each trip is cut
at three of them: the producer's ``enqueue``, the worker's claim (the call it sent behind its
blocking pop, which Redis runs the moment the enqueue wakes it) and the worker's call that
writes the outcome (and, inside it, tells the producer). Prints the median and p90 of:

- *producer, before its call*: from ``add_task`` until Redis runs its enqueue (the app's
  preparation, the encoding, the write and Redis reading it);
- *enqueue until claim*: Redis running the enqueue, then the worker's claim;
- *claim until finish*: the claim's reply to the worker, the worker starting and running the
  task, and its call with the outcome reaching Redis;
- *finish until returned*: Redis running that call, the notice reaching the producer, and
  ``add_task`` returning the record.

``MONITOR`` costs Redis some time per command, so the total runs a little above what
``redis_peers.py`` measures; the split is what this is for. Use a server nothing else uses::

    redis-server --port 6390 --save "" --appendonly no --daemonize yes
    .venv/bin/python benchmarks/round_trip_phases.py --url redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks

APP = """\
from qtasks import QueueTasks
from qtasks.asyncio import QueueTasks as AsyncQueueTasks

app = QueueTasks("phases", broker_url={url!r})
async_app = AsyncQueueTasks("phases", broker_url={url!r})


@app.task(name="noop")
def noop():
    return None


@async_app.task(name="noop")
async def async_noop():
    return None
"""


def _op(args: tuple) -> str | None:
    """The backend operation of a ``FCALL``/``EVALSHA`` as MONITOR shows it: the name, the key
    count, one key, the key prefix, then the operation."""
    if args and str(args[0]).upper() in ("FCALL", "EVALSHA") and len(args) > 5:
        return str(args[5])
    return None


def _monitor(url: str, calls: list[tuple[float, str]], stop: threading.Event) -> None:
    client = redis.Redis.from_url(url, socket_timeout=60)
    with client.monitor() as monitor, contextlib.suppress(redis.TimeoutError):
        for event in monitor.listen():
            if stop.is_set():
                return
            op = _op(tuple(event["command"].split(" ", 6)))
            if op is not None:
                calls.append((float(event["time"]), op))


def _phases(trips: list[tuple[float, float]], calls: list[tuple[float, str]]) -> dict[str, list]:
    phases: dict[str, list[float]] = {"producer, before its call": [], "enqueue until claim": [],
                                      "claim until finish": [], "finish until returned": [],
                                      "whole round trip": []}
    index = 0
    for began, ended in trips:
        while index < len(calls) and calls[index][0] < began:
            index += 1
        marks: dict[str, float] = {}
        for at, op in calls[index:]:
            if at > ended:
                break
            if "enqueue" not in marks:
                if op == "enqueue":
                    marks["enqueue"] = at
            elif "claim" not in marks:
                if op in ("woken", "exchange", "fetch"):
                    marks["claim"] = at
            elif op in ("exchange", "fetch"):
                marks["finish"] = at
                break
        if len(marks) < 3:
            continue
        phases["producer, before its call"].append(marks["enqueue"] - began)
        phases["enqueue until claim"].append(marks["claim"] - marks["enqueue"])
        phases["claim until finish"].append(marks["finish"] - marks["claim"])
        phases["finish until returned"].append(ended - marks["finish"])
        phases["whole round trip"].append(ended - began)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6390/0",
                        help="a Redis database this script may flush")
    parser.add_argument("--trips", type=int, default=300)
    parser.add_argument("--flavour", choices=("async", "sync"), default="async")
    args = parser.parse_args()
    redis.Redis.from_url(args.url).flushdb()
    with tempfile.TemporaryDirectory(prefix="qtasks-phases-") as folder:
        Path(folder, "phases_app.py").write_text(APP.format(url=args.url))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([folder, *sys.path[1:]]))
        spec = "phases_app:" + ("app" if args.flavour == "sync" else "async_app")
        worker = subprocess.Popen([sys.executable, "-m", "qtasks", "-A", spec, "run",
                                   "--loglevel", "WARNING"], env=env)
        calls: list[tuple[float, str]] = []
        stop = threading.Event()
        try:
            threading.Thread(target=_monitor, args=(args.url, calls, stop), daemon=True).start()
            time.sleep(0.5)  # MONITOR is on before the timed trips
            trips = _sync_trips(args) if args.flavour == "sync" else asyncio.run(
                _async_trips(args))
            time.sleep(0.2)
        finally:
            stop.set()
            worker.terminate()
            worker.wait(10)
    phases = _phases(trips, sorted(calls))
    print(f"{len(phases['whole round trip'])} of {len(trips)} round trips matched "
          f"({args.flavour} producer), ms:")
    for name, values in phases.items():
        if values:
            ordered = sorted(values)
            p90 = ordered[int(0.9 * (len(ordered) - 1))]
            print(f"  {name:28} median {statistics.median(values) * 1e3:6.3f}   "
                  f"p90 {p90 * 1e3:6.3f}")


async def _async_trips(args: argparse.Namespace) -> list[tuple[float, float]]:
    app = AsyncQueueTasks("phases", broker_url=args.url)
    trips = []
    try:
        for _ in range(3):
            await app.add_task("noop", timeout=5)
        for _ in range(args.trips):
            began = time.time()
            record = await app.add_task("noop", timeout=5)
            trips.append((began, time.time()))
            assert record is not None and record.status == "success", record
    finally:
        await app.transport.close()
    return trips


def _sync_trips(args: argparse.Namespace) -> list[tuple[float, float]]:
    app = QueueTasks("phases", broker_url=args.url)
    trips = []
    for _ in range(3):
        app.add_task("noop", timeout=5)
    for _ in range(args.trips):
        began = time.time()
        record = app.add_task("noop", timeout=5)
        trips.append((began, time.time()))
        assert record is not None and record.status == "success", record
    return trips


if __name__ == "__main__":
    main()
