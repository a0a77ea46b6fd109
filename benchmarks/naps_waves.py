"""The Redis benchmark's ``naps`` scenario alone, wave by wave: 1,000 tasks that sleep 50 ms,
one worker at concurrency 100, on a local Redis.

Enqueues the tasks with ``benchmarks/redis_peers/peers/bench_qtasks.py``'s app (the same
bodies as ``redis_peers.py``), starts ``qtasks run --concurrency 100`` in that venv, and prints
the span from the first start to the last end, the worker's CPU time, then each wave of 100
tasks (in start order) as "first start-last end", in ms from the first start. The tasks record
their times in a file, as ``redis_peers.py`` has them do by default (``--record redis``: in
``bench:naps``, with an RPUSH of the venv's redis-py, as before 2026-12-08). Needs
``.bench-venvs/qtasks`` (made by ``redis_peers.py``). ``--pythonpath`` puts another checkout's
``src`` first, to compare::

    .venv/bin/python benchmarks/naps_waves.py async --runs 3
    .venv/bin/python benchmarks/naps_waves.py sync --pythonpath /tmp/wt-base/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "redis_peers" / "peers"
PYTHON = ROOT / ".bench-venvs" / "qtasks" / "bin" / "python"
ENQUEUE = """\
import asyncio
import bench_qtasks as b
if b.ASYNC:
    asyncio.run(b.app.add_tasks([("nap", ())] * {n}))
else:
    b.app.add_tasks([("nap", ())] * {n})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=("sync", "async"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/12",
                        help="a Redis database this script may flush")
    parser.add_argument("--pythonpath", default="", help="put this before the peers' folder")
    parser.add_argument("--record", choices=("file", "redis"), default="file",
                        help="where the tasks record their times (see above)")
    args = parser.parse_args()
    env = dict(os.environ, BENCH_REDIS_URL=args.url, BENCH_VARIANT=args.variant,
               PYTHONPATH=os.pathsep.join(p for p in (args.pythonpath, str(PEERS)) if p))
    env.pop("BENCH_NAPS_FILE", None)  # only the worker gets one, and only with --record file
    client = redis.Redis.from_url(args.url)
    with tempfile.TemporaryDirectory() as folder:
        naps_file = Path(folder) / "naps.txt"
        for _ in range(args.runs):
            client.flushdb()
            naps_file.unlink(missing_ok=True)
            run(args, env, client, naps_file if args.record == "file" else None)


def run(args: argparse.Namespace, env: dict[str, str], client: redis.Redis,
        naps_file: Path | None) -> None:
    def recorded() -> list[str]:
        if naps_file is None:
            return [item.decode() for item in client.lrange("bench:naps", 0, -1)]
        return naps_file.read_text().split("\n")[:-1] if naps_file.exists() else []

    subprocess.run([str(PYTHON), "-c", ENQUEUE.format(n=args.tasks)], env=env, check=True)
    worker_env = dict(env, BENCH_NAPS_FILE=str(naps_file)) if naps_file else env
    worker = subprocess.Popen([str(PYTHON), "-m", "qtasks", "-A", "bench_qtasks:app", "run",
                               "--loglevel", "WARNING", "--concurrency", "100"], env=worker_env)
    try:
        while len(recorded()) < args.tasks:
            time.sleep(0.01)
        cpu = _cpu_seconds(worker.pid)
    finally:
        worker.terminate()
        worker.wait(30)
    spans = sorted(tuple(map(float, line.split())) for line in recorded())
    first = spans[0][0]
    waves = [spans[i:i + 100] for i in range(0, len(spans), 100)]
    shown = " ".join(f"{(wave[0][0] - first) * 1e3:.0f}-"
                     f"{(max(end for _, end in wave) - first) * 1e3:.0f}" for wave in waves)
    print(f"{args.variant} span {max(end for _, end in spans) - first:.3f} s, worker CPU "
          f"{cpu:.2f} s (start-up included); waves {shown}", flush=True)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
