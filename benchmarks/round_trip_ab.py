"""Idle round trips of two or more checkouts, interleaved, on one backend: an A/B test.

On a shared machine the same code's round trip moves by 30 % from one minute to the next, so
comparing two runs made minutes apart says little. This runs rounds of each checkout in turn
(A, B, A, B, ...) and reports each checkout's median of the rounds' p50s, and of the
producer's CPU per round trip (steadier than the times). A round starts a worker process
(``python -m qtasks -A app:app run``, one task ``noop``) with that checkout's ``src`` first on
``PYTHONPATH``, lets it go idle, then times ``--trips`` sequential
``add_task("noop", timeout=5)`` calls from a producer of the same checkout, each after a 2 ms
pause so that the worker is blocked in the backend when the task arrives (``--pause 0``: back
to back, as ``redis_peers.py`` makes them; the CPUs then never sit idle between trips).
The producer is the asyncio app with a coroutine task, or with ``--flavour sync`` the sync
app (a blocking producer, the task a plain function run in the worker's threads)::

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/round_trip_ab.py --checkout /tmp/before --checkout .
    .venv/bin/python benchmarks/round_trip_ab.py --flavour sync --url redis://127.0.0.1:6390/0
    .venv/bin/python benchmarks/round_trip_ab.py --url postgresql://postgres@127.0.0.1/test

The URL's app (``rtt_ab``) is flushed before each round; on PostgreSQL, each checkout's
``qtasks migrate`` runs first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent

APP = '''\
import os

from qtasks.asyncio import QueueTasks

app = QueueTasks(name="rtt_ab", broker_url=os.environ["RTT_AB_URL"])


@app.task(name="noop")
async def noop():
    return 1
'''

SYNC_APP = '''\
import os

from qtasks import QueueTasks

app = QueueTasks(name="rtt_ab", broker_url=os.environ["RTT_AB_URL"])


@app.task(name="noop")
def noop():
    return 1
'''


def child(trips: int, pause: float) -> None:
    """In a process whose ``PYTHONPATH`` picks the checkout: one round, printed as JSON."""
    import asyncio

    from app import app  # type: ignore[import-not-found]

    url = os.environ["RTT_AB_URL"]
    if url.startswith(("postgresql:", "postgres:")):  # this checkout's tables
        subprocess.run([sys.executable, "-m", "qtasks", "migrate", "--url", url], check=True,
                       stdout=subprocess.DEVNULL)

    @contextlib.contextmanager
    def worker() -> Iterator[None]:
        process = subprocess.Popen(
            [sys.executable, "-m", "qtasks", "-A", "app:app", "run", "--loop", "asyncio"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            process.terminate()
            process.wait(30)

    def timed(began: float, record: object, times: list[float]) -> None:
        times.append(time.perf_counter() - began)
        if getattr(record, "returning", None) != 1:
            raise SystemExit(f"unexpected record {record!r}")

    async def run() -> list[float]:
        await app.flush_all()
        times: list[float] = []
        with worker():
            for _ in range(30):  # the worker is up and has claimed once
                await app.add_task("noop", timeout=30)
            for _ in range(trips):
                if pause:
                    await asyncio.sleep(pause)
                began = time.perf_counter()
                timed(began, await app.add_task("noop", timeout=5), times)
        return times

    def run_sync() -> list[float]:  # the sync app: the producer waits, blocking
        app.flush_all()
        times: list[float] = []
        with worker():
            for _ in range(30):
                app.add_task("noop", timeout=30)
            for _ in range(trips):
                if pause:
                    time.sleep(pause)
                began = time.perf_counter()
                timed(began, app.add_task("noop", timeout=5), times)
        return times

    used = time.process_time()  # the producer's CPU (the worker is another process)
    times = sorted(run_sync() if os.environ.get("RTT_AB_FLAVOUR") == "sync"
                   else asyncio.run(run()))
    used = time.process_time() - used
    print(json.dumps({"p50": times[len(times) // 2], "p90": times[len(times) * 9 // 10],
                      "cpu": used / (trips + 30)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path,
                        help="a checkout to measure (repeat; default: this repository)")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--trips", type=int, default=300)
    parser.add_argument("--pause", type=float, default=0.002,
                        help="seconds before each round trip (default 0.002; 0: none)")
    parser.add_argument("--flavour", choices=("async", "sync"), default="async",
                        help="the asyncio app with a coroutine task (default), or the sync app "
                             "with a plain one (run in the worker's threads)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.trips, args.pause)
        return
    checkouts = [c.resolve() for c in (args.checkout or [HERE.parent])]
    p50s: dict[Path, list[float]] = {c: [] for c in checkouts}
    cpus: dict[Path, list[float]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="rtt-ab-") as folder:
        (Path(folder) / "app.py").write_text(SYNC_APP if args.flavour == "sync" else APP)
        for round_ in range(args.rounds):
            for checkout in checkouts:
                env = {**os.environ, "RTT_AB_URL": args.url, "RTT_AB_FLAVOUR": args.flavour,
                       "PYTHONPATH": os.pathsep.join([str(checkout / "src"), folder])}
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--trips", str(args.trips),
                     "--pause", str(args.pause)],
                    env=env, cwd=folder, capture_output=True, text=True, timeout=600)
                if out.returncode:
                    raise SystemExit(f"{checkout}: round failed:\n{out.stderr}")
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                p50s[checkout].append(figures["p50"])
                cpus[checkout].append(figures["cpu"])
                print(f"round {round_ + 1}  {checkout}: p50 {figures['p50'] * 1e3:.3f} ms, "
                      f"p90 {figures['p90'] * 1e3:.3f} ms, producer CPU "
                      f"{figures['cpu'] * 1e6:.0f} us per trip", flush=True)
    print()
    for checkout, values in p50s.items():
        print(f"{checkout}: median p50 {statistics.median(values) * 1e3:.3f} ms over "
              f"{len(values)} rounds of {args.trips} (min {min(values) * 1e3:.3f}, "
              f"max {max(values) * 1e3:.3f}); producer CPU {statistics.median(cpus[checkout]) * 1e6:.0f}"
              " us per trip")


if __name__ == "__main__":
    main()
