"""Instructions Redis spends on the backend's calls, per task, for one or more checkouts.

Timing Redis on a shared machine moves by 20 % from one minute to the next; counting the
instructions it executes does not (``valgrind --tool=callgrind``, repeatable to about 0.1 %).
For each checkout this starts a private ``redis-server`` under callgrind on a free loopback
port, loads that checkout's ``qtasks.lua`` as a function library, and counts what Redis
executes for each scenario alone (the counters are zeroed before it and dumped after it):

- ``single``: enqueues of one task each (``--tasks`` of them);
- ``bulk``: the same number of tasks in calls of 100;
- ``drain``: those tasks claimed, started and finished by a worker's round trips of 100;
- ``idle``: an idle worker's round trip with a waiting producer, per round trip (a quarter
  as many): the enqueue of one task whose producer waits for it, the claim an idle worker
  sends behind its blocking pop (``woken``), and the finish with its claim of up to 100.

Each checkout is measured in a process of its own, with its own ``protocol`` module, which
encodes the arguments its library reads::

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/redis_instructions.py --checkout /tmp/before --checkout .

Needs ``valgrind`` (``apt-get install -y valgrind``) and ``redis-server`` on ``PATH``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from qtasks.backends.base import NewTask, Outcome
from qtasks.backends.redis import protocol
from qtasks.core.codec import encode_envelope

HERE = Path(__file__).resolve().parent
PREFIX = "qtasks:{instr}:"
SETTINGS = [86_400_000, 10_000, 604_800_000]  # result TTL ms, dead-letter cap, TTL ms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tasks(n: int, queue: str = "default") -> list[NewTask]:
    out = []
    for _ in range(n):
        u, now = str(uuid.uuid4()), time.time()
        out.append(NewTask(u, "bump", 0, "[]", "{}", now,
                           encode_envelope(u, "bump", 0, "[]", "{}", now), queue=queue))
    return out


class Server:
    """A private redis-server under callgrind, with one checkout's library loaded."""

    def __init__(self, folder: Path, lua: str) -> None:
        self.folder = folder
        self.port = _free_port()
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.out.%p",
             "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True)
        for _ in range(600):  # valgrind starts slowly
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        else:
            raise SystemExit("redis-server under valgrind did not start")
        self.fn = "qtasks_instr"
        self.client.function_load(
            f"#!lua name={self.fn}\n{lua}\nredis.register_function('{self.fn}', qtasks)\n")

    def run(self, op: protocol.Op) -> Any:
        reply: Any = None
        try:
            while True:
                step = op.send(reply)
                calls = ([step.args] if isinstance(step, protocol.Script)
                         else list(step.calls) if isinstance(step, protocol.Scripts) else None)
                if calls is None:
                    reply = self.client.execute_command(*step.args)
                    continue
                replies = [self.client.fcall(self.fn, 1, PREFIX + "seq", PREFIX, args[0],
                                             *SETTINGS, *args[1:]) for args in calls]
                reply = replies[0] if isinstance(step, protocol.Script) else replies
        except StopIteration as stop:
            return stop.value

    def count(self, work: Any) -> int:
        """Instructions Redis executed while ``work()`` ran."""
        subprocess.run(["callgrind_control", "-z", str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        work()
        before = set(glob.glob(f"{self.folder}/cg.out.*"))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dumped = sorted(set(glob.glob(f"{self.folder}/cg.out.*")) - before,
                        key=os.path.getmtime)
        for line in Path(dumped[-1]).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise SystemExit(f"no totals in {dumped[-1]}")

    def stop(self) -> None:
        self.client.shutdown(nosave=True)
        self.proc.wait(60)


def measure(lua: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="redis-instr-") as folder:
        server = Server(Path(folder), lua)
        try:
            singles, bulk = _tasks(n, "singles"), _tasks(n)  # only the bulk is drained
            figures = {
                "single": server.count(lambda: [server.run(protocol.enqueue([t]))
                                                for t in singles]),
                "bulk": server.count(lambda: server.run(protocol.enqueue(bulk))),
            }

            def drain() -> None:
                done: list[Outcome] = []
                while True:
                    got, _ = server.run(protocol.exchange(
                        "w1", ["default"], 100, 30.0, done, [], 100))
                    if not got.deliveries:
                        return
                    done = [Outcome(d, d.uuid or "", "success", "bump", 0,
                                    created_at=time.time(), returning_json="null",
                                    worker="w1", started_at=time.time())
                            for d in got.deliveries]

            figures["drain"] = server.count(drain)
            out = {k: v / n for k, v in figures.items()}
            trips = max(1, n // 4)
            waited = _tasks(trips, "idle")

            def idle() -> None:
                for i, task in enumerate(waited):
                    server.run(protocol.enqueue([task], "F", watcher="l1"))
                    got, _ = server.run(protocol.exchange(
                        "w1", ["idle"], 100, 30.0, [], [], 100, abandon=f"w1:{i}:abandon"))
                    outcomes = [Outcome(d, d.uuid or "", "success", "bump", 0,
                                        created_at=task.created_at, returning_json="null",
                                        worker="w1", started_at=time.time())
                                for d in got.deliveries]
                    server.run(protocol.exchange("w1", ["idle"], 100, 30.0, outcomes, [], 100))

            out["idle"] = server.count(idle) / trips
            return out
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path,
                        help="a checkout to measure (repeat; default: this repository)")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # in a process whose PYTHONPATH picks the checkout's protocol and library
        lua = (Path(protocol.__file__).parent / "qtasks.lua").read_text()
        print(json.dumps(measure(lua, args.tasks)))
        return
    checkouts = [c.resolve() for c in (args.checkout or [HERE.parent])]
    print(f"instructions Redis executes per task, {args.tasks} tasks per scenario (idle: per "
          f"round trip, {max(1, args.tasks // 4)} of them)")
    for checkout in checkouts:
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        out = subprocess.run([sys.executable, __file__, "--child", "--tasks", str(args.tasks)],
                             env=env, capture_output=True, text=True, timeout=1800)
        if out.returncode:
            raise SystemExit(f"{checkout}: failed:\n{out.stderr}")
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{checkout}: " + ", ".join(f"{k} {v / 1000:,.1f}k" for k, v in figures.items()),
              flush=True)


if __name__ == "__main__":
    main()
