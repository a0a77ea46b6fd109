"""Python task queues side by side on one private Redis: enqueue, drain, round trip, sleep, RSS.

Run from the repository root with any Python 3.11+ (this script needs only the standard
library; every peer runs in its own virtualenv)::

    python3 benchmarks/redis_peers.py                        # every peer, ~30 min
    python3 benchmarks/redis_peers.py --quick                # smoke test, small numbers
    python3 benchmarks/redis_peers.py --peers rq,huey --json out.json
    python3 benchmarks/redis_peers.py --list                 # the peer names

Set-up, done by the script:

- Each peer lives in ``.bench-venvs/<venv>/`` at the repository root, created with
  ``python -m venv`` and filled with ``pip install`` of the exact pins in ``PEERS`` below (plus
  ``hiredis`` wherever the client is redis-py, as ``qtasks[redis]`` has it). A venv whose
  ``bench-pins.txt`` matches the pins is reused as it is. This repository's qtasks gets
  ``.bench-venvs/qtasks`` with ``pip install -e .[redis]`` (editable: it runs the checkout's
  code), never the development ``.venv``, whose extras (OpenTelemetry's SDK, which redis-py
  imports when present, Django, ...) would add to the worker's memory. ``pip freeze`` of
  every venv goes into the JSON.
- The peers' redis-py differ: saq wants ``redis<8`` and arq ``redis<6``, and qtasks gets the
  newest. ``--redis-py 7.4.1`` puts one version in every peer that can take it (in venvs
  named ``<venv>-redis7.4.1``), so that the figures, the worker's memory above all (redis-py
  8 imports about 2.8 MB more than 7.4), differ only by the queue.
- A private ``redis-server`` (``/usr/bin/redis-server``) on a free loopback port, with
  ``--save "" --appendonly no`` and its own temporary directory; ``FLUSHALL`` before each
  scenario group and each peer; shut down at the end (also on Ctrl-C / SIGTERM).
- Each peer's app, tasks, producer calls and worker command are in
  ``benchmarks/redis_peers/peers/bench_<peer>.py`` (shared helpers in ``bench_common.py``).
  Each measurement is one subprocess of that peer's venv python (``bench_<peer>.py
  <command>``), which prints its figures as a ``BENCH_RESULT {json}`` line. The worker is
  another subprocess (``bench_<peer>.py worker``, which ``exec``\\ s the peer's own CLI, or runs
  the worker in-process where the peer has no CLI), in its own session; it is stopped with
  SIGTERM, then its whole process group is killed.

The tasks (the same bodies for every peer, plain functions for sync frameworks and coroutines
for async ones): ``bump()`` does ``INCR bench:done``; ``noop()`` returns None; ``side(key)`` does
``RPUSH key 1``; ``nap()`` sleeps 50 ms (``time.sleep`` / ``asyncio.sleep``) and then appends its
start and end times (``time.time()``) to a file (scenario 5). Every peer stores a result per task
(Celery with its Redis result backend, Dramatiq's Results middleware with
``store_results=True``, Huey with ``store_none=True``; the others do by default).

Scenarios, per peer, in this order (one worker process, the peer's default concurrency, except 5):

1. single enqueue: ``--tasks`` (10,000) ``bump()`` enqueued one call per task by one producer
   process, no worker running; ``perf_counter`` around the loop in that process; tasks/s.
   Every adapter imports its peer's client before the loop (qtasks' adapter imports its
   backend module, which qtasks itself imports on an app's first call). Where a peer's API
   has a connect step (saq, arq, taskiq, streaq) the adapter's ``setup`` takes it before the
   loop; the others, qtasks included, connect on their first call, inside it.
2. bulk enqueue: the same count through the peer's own bulk API in batches of ``--batch``
   (1,000): Celery ``group(...).apply_async()``, Dramatiq ``group(...).run()``, RQ
   ``enqueue_many``, streaq ``enqueue_many`` (a pipeline), qtasks ``add_tasks``. Huey, arq,
   taskiq, saq and QTasks 1.7.3 have none: "n/a". Run before 1, and flushed away after.
3. drain: the backlog of scenario 1 is drained by one worker started after it. This script
   polls ``GET bench:done`` every ``--poll`` s (10 ms); the rate is ``(N - count at the first
   poll that saw one) / (time of the poll that saw N - time of that first poll)``, so
   interpreter start-up and imports are excluded (reported apart as ``startup_s``). A drain
   still running after ``--timeout`` (300 s) gives the rate so far, marked partial; the round
   trips then run on a fresh worker over an emptied Redis.
4. round trips with the worker idle (1 s after the drain), ``--repeats`` (200) sequential
   ones after 3 untimed warm-ups, timed with ``perf_counter`` in the producer process:
   (a) side effect: enqueue ``side(key)``, then ``BLPOP key``; (b) the framework's result
   API: Celery ``AsyncResult.get``, Dramatiq ``get_result(block=True)``, RQ
   ``job.latest_result(timeout=...)``, Huey ``result.get(blocking=True)``, arq
   ``job.result()``, taskiq ``wait_result()``, saq ``queue.apply()``, streaq
   ``task.result()``, QTasks ``add_task(..., timeout=5)``; p50/p99 in ms. Every wait uses
   the framework's default polling settings (arq polls every 0.5 s, taskiq every 0.2 s,
   QTasks 1.7.3 every 1 s, Huey backs off from 0.1 s: those rows measure that interval).
   A round trip that times out (5 s) is counted with its time and noted; the loop stops early,
   marked partial, after 80% of ``--timeout``.
5. 1,000 ``nap()`` tasks enqueued (single calls, worker stopped, Redis flushed), then one
   worker with concurrency 100 (Celery ``--pool threads -c 100``, Dramatiq ``--threads 100``,
   Huey ``-w 100``, arq ``max_jobs``, taskiq ``--max-async-tasks``, saq/streaq
   ``concurrency``, QTasks ``max_tasks_process``, qtasks ``--concurrency``); seconds from the
   earliest task start to the latest task end, from the times the tasks recorded. Celery's
   solo pool and RQ run one task at a time per process: "n/a". Each task appends its times to
   a file, one ``write`` (``--naps-record file``, the default). Until 2026-12-08 it pushed them
   to Redis with the peer's Redis client (``--naps-record redis``). That push is the
   harness's, not the peer's: it made the first wave open 100 pool connections, at a cost
   that depends on the client version in the peer's venv (100 pushes at once on a new client:
   7-22 ms with redis-py 5.3.1, 85-116 ms with 7.4.1 and 8.2.0), and it added 0.25-0.63 s to
   every peer's span on 2026-12-08 (``docs/benchmarks.md``).
6. peak RSS of the drain's worker: ``VmHWM`` from ``/proc/<pid>/status`` of the worker process
   and all its descendants, sampled every 0.25 s during the drain and once after it. The
   table shows the largest single process (the one running the tasks; a forking peer's
   supervisor or work horse is a separate process) and the sum over the process tree. Two
   more rows take the Redis client's share out: the peak RSS of the peer's venv python that
   only imports ``asyncio`` and its client (``redis`` and ``redis.asyncio``; ``coredis`` for
   streaq), and the worker's figure above that, which is what the framework itself adds.
   The peers pin different redis-py releases, and the import alone differs by about 3 MB
   between them (5.3: 28.7 MB, 8.2: 31.8 MB here).

Logging: each worker runs as its quick-start does, at WARNING where a CLI flag allows it:
Celery ``--loglevel WARNING``, RQ ``--logging_level WARNING``, Huey ``-q``, taskiq
``--log-level WARNING``, arq ``--custom-log-dict`` (arq logger at WARNING), qtasks
``--loglevel WARNING``. Dramatiq and saq log no line per task by default. streaq
(``streaq run`` has only ``-v``) and QTasks 1.7.3 (no CLI log option; its server logger is at
INFO) keep their default INFO level, which writes lines per task to the worker's log file.

The table has a row per scenario and a column per peer; under each row, one ratio row per
qtasks flavour that has figures. Ratio = qtasks/peer for rates (higher is better) and
peer/qtasks for milliseconds, seconds and MB; either way >1 means qtasks is better.
A peer or scenario that fails is shown as "failed [n]" with the reason under the table and
does not stop the others; each subprocess has a timeout (``--timeout``).

The ``bare`` column is no queue (``bench_bare.py``): ``RPUSH`` of a JSON message, an asyncio
loop that pops (``LPOP``) up to 10 at a time and runs the same bodies, nothing acknowledged,
recorded, leased or retried. It shows what the round trips and bodies cost alone here, a
ceiling for every row, not a peer to beat.

The machine matters: with 2 CPUs the producer or worker, Redis and this script share them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(__file__).resolve().parent / "redis_peers" / "peers"
VENVS = REPO / ".bench-venvs"
REDIS_SERVER = "/usr/bin/redis-server"
HIREDIS = "hiredis==3.5.0"
REDIS_PY = "redis==8.1.0"


@dataclass(frozen=True)
class PeerSpec:
    name: str  # the column
    adapter: str  # bench_<adapter>.py
    venv: str  # .bench-venvs/<venv>
    pins: tuple[str, ...]
    variant: str = ""
    qtasks_row: bool = False  # one of this repository's rows (the ratios' reference)
    note: str = ""  # drain concurrency and the APIs used, printed under the table
    client: str = "redis"  # the Redis client module, for the RSS row "above its client"


# kombu 5.7.0 imports packaging without declaring it (celery -A fails without it)
CELERY = ("celery==5.7.0", "packaging==26.4", REDIS_PY, HIREDIS)
QTASKS_HERE = ("-e", f"{REPO}[redis]")
PEERS = [
    PeerSpec("celery-solo", "celery", "celery", CELERY, "solo",
             note="drain: --pool solo, one task at a time; bulk: group(...).apply_async(); "
                  "result: AsyncResult.get() (the Redis backend's pub/sub)"),
    PeerSpec("celery-threads", "celery", "celery", CELERY, "threads",
             note="drain: --pool threads at its default concurrency, the CPU count (2 here); "
                  "bulk and result as celery-solo"),
    PeerSpec("dramatiq", "dramatiq", "dramatiq", ("dramatiq==2.2.1", REDIS_PY, HIREDIS),
             note="drain: --processes 1 with the default 8 threads; bulk: group(...).run(); "
                  "result: message.get_result(block=True)"),
    PeerSpec("rq", "rq", "rq", ("rq==3.0.0", REDIS_PY, HIREDIS),
             note="drain: the stock worker, one job at a time in a work horse forked per job; "
                  "bulk: Queue.enqueue_many; result: job.latest_result(timeout=5) (XREAD BLOCK)"),
    PeerSpec("huey", "huey", "huey", ("huey==3.5.4", REDIS_PY, HIREDIS),
             note="drain: the default single worker thread; result: result.get(blocking=True), "
                  "client-side polling with backoff"),
    PeerSpec("arq", "arq", "arq", ("arq==0.28.0", "redis==5.3.1", HIREDIS),  # arq: redis<6
             note="drain: the default max_jobs=10; an idle worker polls every 0.5 s "
                  "(poll_delay); result: job.result(), polling every 0.5 s"),
    PeerSpec("taskiq", "taskiq", "taskiq",
             ("taskiq==0.13.0", "taskiq-redis==1.2.4", REDIS_PY, HIREDIS),
             note="RedisStreamBroker; drain: --workers 1, default --max-async-tasks 100; "
                  "result: wait_result(), polling every 0.2 s"),
    # saq's redis extra wants redis<8; saq imports typing_extensions without declaring it.
    PeerSpec("saq", "saq", "saq",
             ("saq==0.26.4", "redis==7.4.1", HIREDIS, "typing_extensions==4.16.0"),
             note="drain: the default concurrency 10; result: job.refresh(until_complete=5) "
                  "(pub/sub; queue.apply() would poll every 0.5 s)"),
    PeerSpec("streaq", "streaq", "streaq", ("streaq==7.2.0", "coredis==6.9.0"), client="coredis",
             note="drain: the default concurrency 16; bulk: Worker.enqueue_many (a pipeline); "
                  "result: task.result() (pub/sub); INFO log lines per task"),
    PeerSpec("qtasks-1.7.3", "qtasks173", "qtasks173", ("qtasks==1.7.3", REDIS_PY, HIREDIS),
             note="sync app, app.run_forever() (4 dispatcher threads, max_tasks_process 10); "
                  "result: add_task(timeout=5), polling every 1 s; INFO log lines per task"),
    PeerSpec("bare", "bare", "bare", (REDIS_PY, HIREDIS),
             note="no framework, a ceiling rather than a peer: RPUSH of a JSON message, an "
                  "asyncio loop that LPOPs up to 10 at a time and runs 10 at once, no "
                  "acknowledgement, record, lease or retry (bench_bare.py); result: RPUSH to a "
                  "reply list the producer BLPOPs"),
    PeerSpec("qtasks-sync", "qtasks", "qtasks", QTASKS_HERE, "sync", True,
             note="this repository, sync app; drain: qtasks run at the default concurrency "
                  "(config.max_tasks_process, 10); bulk: add_tasks; result: add_task(timeout=5)"),
    PeerSpec("qtasks-async", "qtasks", "qtasks", QTASKS_HERE, "async", True,
             note="this repository, asyncio app with coroutine tasks; otherwise as qtasks-sync"),
]
BY_NAME = {p.name: p for p in PEERS}


def with_redis_py(spec: PeerSpec, version: str) -> PeerSpec:
    """``spec`` installing redis-py ``version`` in a venv of its own (``--redis-py``).

    Peers on redis-py get that version in place of their pin, and this repository's rows get it
    added to ``-e .[redis]``. A peer that cannot take it keeps its own pin, and says so:
    arq wants redis<6, saq's extra redis<8. streaq is on coredis, not redis-py.
    """
    pinned = [p for p in spec.pins if p.startswith("redis==")]
    if (not pinned and spec.pins != QTASKS_HERE) or pinned == [f"redis=={version}"]:
        return spec  # not on redis-py, or on that version already
    major = int(version.split(".")[0])
    if (spec.adapter == "arq" and major >= 6) or (spec.adapter == "saq" and major >= 8):
        return replace(spec, note=f"{spec.note}; --redis-py {version} not installable here: "
                                  f"kept {pinned[0]}")
    pins = tuple(f"redis=={version}" if p.startswith("redis==") else p for p in spec.pins)
    if not pinned:
        pins = (*pins, f"redis=={version}")
    return replace(spec, pins=pins, venv=f"{spec.venv}-redis{version}",
                   note=f"{spec.note}; redis-py {version} (--redis-py)")


@dataclass
class Suite:
    """What one benchmark compares: the peers, where their adapters are, what their processes
    are told, and how a clean start is made before each group of scenarios (``prepare``).
    ``postgres_peers.py`` is this harness with another suite."""

    title: str
    peers: list[PeerSpec]
    adapter_dirs: tuple[Path, ...] = (PEERS_DIR,)
    env: Callable[[], dict[str, str]] = dict
    prepare: Callable[[PeerRunner], None] | None = None  # default: FLUSHALL the Redis
    describe: Callable[[], str] = lambda: ""  # the servers, for the report's first line
    logging_note: str = ""

    @property
    def by_name(self) -> dict[str, PeerSpec]:
        return {p.name: p for p in self.peers}

    def reset(self, runner: PeerRunner) -> None:
        if self.prepare is None:
            runner.redis.flush()
        else:
            self.prepare(runner)


class Failed(Exception):
    """A scenario failed; the message is what the table's footnote says."""


class NotAvailable(Exception):
    """The peer has no such feature."""


# -- progress and small helpers ------------------------------------------------------------


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def short_reason(text: str) -> str:
    """The last meaningful line of a traceback or log, for a footnote."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("^", "~")):
            return line[:300]
    return text.strip()[:300] or "no output"


# -- a minimal Redis client (RESP2), enough for FLUSHALL, GET, LLEN, LRANGE, INFO ----------


class MiniRedis:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def call(self, *args: str | int) -> Any:
        parts = [str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts)
                          + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


class RedisServer:
    """A private redis-server on a free loopback port, no persistence, its own directory."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.log),
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client = MiniRedis(self.port)
                self.client.call("PING")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start:\n{tail(self.log)}") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        info = self.client.call("INFO", "server").decode()
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def flush(self) -> None:
        self.client.call("FLUSHALL")

    def count(self, key: str) -> int:
        value = self.client.call("GET", key)
        return int(value) if value else 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.call("SHUTDOWN", "NOSAVE")
        self.client.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# -- virtualenvs ------------------------------------------------------------------------------


def _venv_ok(python: Path, pins_file: Path, want: str) -> bool:
    return python.exists() and pins_file.exists() and pins_file.read_text() == want


def ensure_venv(spec: PeerSpec, log_dir: Path) -> Path:
    """The venv python of ``spec``, installing its pins if the venv is missing or differs."""
    folder = VENVS / spec.venv
    python = folder / "bin" / "python"
    pins_file = folder / "bench-pins.txt"
    want = "\n".join(spec.pins) + "\n"
    if _venv_ok(python, pins_file, want):
        return python
    say(f"  installing {spec.venv} venv: {' '.join(spec.pins)}")
    log = log_dir / f"pip-{spec.venv}.log"
    with log.open("ab") as out:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True,
                           stdout=out, stderr=subprocess.STDOUT, timeout=300)
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               "-q", *spec.pins], stdout=out, stderr=subprocess.STDOUT,
                              timeout=900)
    if done.returncode != 0:
        raise Failed(f"pip install failed: {short_reason(tail(log))}")
    pins_file.write_text(want)
    return python


def pip_freeze(python: Path) -> list[str]:
    try:
        out = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line and not line.startswith("#")]


# -- running one peer's processes ---------------------------------------------------------------


class PeerRunner:
    def __init__(self, spec: PeerSpec, python: Path, redis: RedisServer, work: Path,
                 timeout: float, suite: Suite) -> None:
        self.spec, self.python, self.redis, self.work, self.timeout, self.suite = (
            spec, python, redis, work, timeout, suite)
        self.script = [str(PEERS_DIR / "run_peer.py"), spec.adapter]
        self.logs: list[Path] = []

    def env(self, concurrency: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("QTASKS_", "PYTHON", "VIRTUAL_ENV", "CELERY_", "DRAMATIQ_"))
               and k != "BENCH_NAPS_FILE"}  # only the naps' worker gets one (Worker)
        env.update(PYTHONPATH=":".join(str(d) for d in self.suite.adapter_dirs),
                   PYTHONUNBUFFERED="1", BENCH_REDIS_URL=self.redis.url,
                   BENCH_VARIANT=self.spec.variant, **self.suite.env())
        if concurrency:
            env["BENCH_CONCURRENCY"] = str(concurrency)
        return env

    def produce(self, command: str, **options: int) -> dict[str, Any]:
        """Run one measurement subprocess and return its BENCH_RESULT."""
        argv = [str(self.python), *self.script, command]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        log = self.work / f"{self.spec.name}-{command}.log"
        self.logs.append(log)
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, cwd=self.work, env=self.env(), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True)
            try:
                out, _ = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise Failed(f"{command}: timed out after {self.timeout:.0f}s") from None
        text = out.decode(errors="replace")
        for line in reversed(text.splitlines()):
            if line.startswith("BENCH_RESULT "):
                result = json.loads(line[len("BENCH_RESULT "):])
                if "na" in result:
                    raise NotAvailable(result["na"])
                return result
        raise Failed(f"{command}: exit {proc.returncode}: "
                     f"{short_reason(tail(log, 30) or text)}")


class Worker:
    """The worker subprocess in its own session, with its process tree's peak RSS."""

    def __init__(self, runner: PeerRunner, label: str, concurrency: int | None,
                 naps_file: Path | None = None) -> None:
        self.log = runner.work / f"{runner.spec.name}-worker-{label}.log"
        runner.logs.append(self.log)
        self._out = self.log.open("wb")
        env = runner.env(concurrency)
        if naps_file is not None:
            env["BENCH_NAPS_FILE"] = str(naps_file)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([str(runner.python), *runner.script, "worker"],
                                     cwd=runner.work, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.peaks: dict[int, tuple[str, float]] = {}
        self.tree_peak = 0.0
        self._sampled = 0.0

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise Failed(f"worker exited with code {code}: {short_reason(tail(self.log, 30))}")

    def sample_rss(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._sampled < 0.25:
            return
        self._sampled = now
        live = 0.0
        for pid in process_tree(self.proc.pid):
            hwm = vm_hwm_mb(pid)
            if hwm is None:
                continue
            live += hwm
            name = process_name(pid)
            seen = self.peaks.get(pid)
            # After an exec (the adapter becoming the peer's CLI) VmHWM starts afresh: the
            # figure of the image before it is dropped.
            if seen is None or seen[0] != name or hwm > seen[1]:
                self.peaks[pid] = (name, hwm)
        self.tree_peak = max(self.tree_peak, live)

    def rss(self) -> dict[str, Any]:
        """The largest VmHWM of one process, and the largest sum over the processes alive at
        one sample (short-lived work horses are not added up across samples)."""
        self.sample_rss(force=True)
        values = [mb for _, mb in self.peaks.values()]
        if not values:
            raise Failed("no worker process to read VmHWM from")
        return {"largest_process_mb": max(values), "tree_sum_mb": self.tree_peak,
                "processes_seen": len(values),
                "processes": [{"pid": pid, "name": name, "vmhwm_mb": mb}
                              for pid, (name, mb) in sorted(self.peaks.items())][:20]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its session: children too, nothing else
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._out.close()


# The peak RSS of a python that only imports asyncio and the peer's Redis client: what every
# worker on that client pays before its framework adds anything.
CLIENT_IMPORT = (
    "import asyncio, importlib, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "importlib.import_module(sys.argv[1] + '.asyncio') if sys.argv[1] == 'redis' else None\n"
    "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "print(int(status.split()[0]) / 1024.0)\n"
)


def above_client(figures: dict[str, Any], python: Path, client: str) -> dict[str, Any]:
    """The RSS figures with ``client_import_mb`` (the peer's client imported alone, the median
    of three runs) and ``above_client_mb``: what the framework adds to that. Peers pin
    different redis-py releases, whose import alone differs by up to 3 MB."""
    runs = []
    for _ in range(3):
        out = subprocess.run([str(python), "-c", CLIENT_IMPORT, client], capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            say(f"    (the {client} import alone failed: {short_reason(out.stderr)})")
            return figures
        runs.append(float(out.stdout.strip()))
    base = statistics.median(runs)
    return {**figures, "client_import_mb": base,
            "above_client_mb": figures["largest_process_mb"] - base}


def process_tree(root: int) -> list[int]:
    pids, seen = [root], {root}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in seen:
                    seen.add(child)
                    pids.append(child)
    return pids


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace")
                        for i, a in enumerate(argv[:4]) if a)[:120]
    except OSError:
        return "?"


# -- the scenarios --------------------------------------------------------------------------------


@dataclass
class PeerResult:
    name: str
    versions: dict[str, str] = field(default_factory=dict)
    python: str = ""
    freeze: list[str] = field(default_factory=list)
    # scenario -> figures, or {"failed": reason} / {"na": reason}
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    repository: dict[str, Any] | None = None  # qtasks rows: the code they ran on


def drain(runner: PeerRunner, worker: Worker, n: int, poll: float, timeout: float) -> dict[str, Any]:
    redis = runner.redis
    first: tuple[float, int] | None = None
    while True:
        at = time.perf_counter()
        done = redis.count("bench:done")
        if done and first is None:
            first = (at, done)
        if done >= n:
            break
        worker.check_alive()
        worker.sample_rss()
        if at - worker.started > timeout:
            if first is None or done <= first[1]:
                raise Failed(f"drain: {done}/{n} done after {timeout:.0f}s; worker log: "
                             f"{short_reason(tail(worker.log, 30)) or 'empty'}")
            first_at, first_done = first  # report the rate so far, marked partial
            return {"tasks": n, "startup_s": first_at - worker.started, "counted": done - first_done,
                    "seconds": at - first_at, "per_s": (done - first_done) / (at - first_at),
                    "partial": f"drain stopped after {timeout:.0f} s with {done}/{n} done; "
                               f"rate over those"}
        time.sleep(poll)
    assert first is not None
    first_at, first_done = first
    out = {"tasks": n, "startup_s": first_at - worker.started,
           "wall_s": at - worker.started, "wall_per_s": n / (at - worker.started)}
    if first_done < n and at > first_at:
        out.update(counted=n - first_done, seconds=at - first_at,
                   per_s=(n - first_done) / (at - first_at))
    else:  # all finished between two polls
        out.update(counted=n, seconds=out["wall_s"], per_s=out["wall_per_s"])
    return out


def naps(runner: PeerRunner, worker: Worker, n: int, timeout: float,
         naps_file: Path | None) -> dict[str, Any]:
    """The span of the naps, from the times ``nap()`` recorded in ``naps_file`` (complete
    lines only), or in ``bench:naps`` with no file."""
    client = runner.redis.client

    def recorded() -> list[str]:
        if naps_file is None:
            return [item if isinstance(item, str) else item.decode()
                    for item in client.call("LRANGE", "bench:naps", 0, -1)]
        if not naps_file.exists():
            return []
        return naps_file.read_text().split("\n")[:-1]  # a line still being written: not yet

    while True:
        lines = recorded()
        if len(lines) >= n:
            break
        worker.check_alive()
        if time.perf_counter() - worker.started > timeout:
            raise Failed(f"only {len(lines)}/{n} naps finished {timeout:.0f} s after the "
                         f"worker started")
        time.sleep(0.05)
    spans = [tuple(map(float, line.split())) for line in lines]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return {"tasks": n, "seconds": end - start, "ideal_s": 0.05 * n / 100,
            "wall_s": time.perf_counter() - worker.started}


def scenario(result: PeerResult, key: str, fn: Any) -> dict[str, Any] | None:
    """Run one scenario; record its figures, or why it is n/a or failed."""
    try:
        figures = fn()
    except NotAvailable as exc:
        result.scenarios[key] = {"na": str(exc)}
        say(f"    {key}: n/a ({exc})")
        return None
    except Failed as exc:
        result.scenarios[key] = {"failed": str(exc)}
        say(f"    {key}: FAILED: {exc}")
        return None
    except Exception as exc:
        result.scenarios[key] = {"failed": f"{type(exc).__name__}: {exc}"}
        say(f"    {key}: FAILED: {type(exc).__name__}: {exc}")
        return None
    result.scenarios[key] = figures
    say(f"    {key}: {brief(key, figures)}")
    return figures


def brief(key: str, figures: dict[str, Any]) -> str:
    if figures.get("partial"):
        return f"{brief(key, dict(figures, partial=None))} (partial: {figures['partial']})"
    if "per_s" in figures:
        return f"{figures['per_s']:,.0f}/s"
    if "p50_ms" in figures:
        return f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
    if key == "naps":
        return f"{figures['seconds']:.2f} s"
    if key == "naps_enqueue":
        return f"{figures['tasks']} enqueued in {figures['enqueue_seconds']:.2f} s"
    if key == "rss":
        return f"{figures['largest_process_mb']:.1f} MB (tree {figures['tree_sum_mb']:.1f} MB)"
    return json.dumps(figures)[:100]


def run_peer(spec: PeerSpec, redis: RedisServer, base: Path, args: argparse.Namespace,
             suite: Suite) -> PeerResult:
    result = PeerResult(spec.name)
    started = time.perf_counter()
    work = base / spec.name
    work.mkdir()
    say(f"{spec.name}:")
    try:
        python = ensure_venv(spec, base)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, Failed) else f"venv: {type(exc).__name__}: {exc}"
        for key in SCENARIO_KEYS:
            result.scenarios[key] = {"failed": reason}
        say(f"  FAILED: {reason}")
        return result
    runner = PeerRunner(spec, python, redis, work, args.timeout, suite)
    if spec.qtasks_row:  # the checkout may move during a long run: note it when the row starts
        result.repository = repo_state()
    try:
        result.versions = runner.produce("versions")
        result.python = result.versions.pop("python", "")
    except (Failed, NotAvailable) as exc:
        result.versions = {"error": str(exc)}
    if args.freeze:
        result.freeze = pip_freeze(python)
    n, batch, repeats = args.tasks, args.batch, args.repeats

    wanted = set(args.scenarios)

    suite.reset(runner)
    if "bulk" in wanted:
        scenario(result, "bulk", lambda: runner.produce("bulk", n=n, batch=batch))
        suite.reset(runner)
    single = None
    if wanted & {"single", "drain"}:  # the drain's backlog is the single enqueue's
        single = scenario(result, "single", lambda: runner.produce("single", n=n))
        if single is None:
            for key in ("drain", "rss", "rtt_side", "rtt_result"):
                result.scenarios[key] = {"failed": "no backlog: the single enqueue failed"}
    if (single is not None and "drain" in wanted) or "rtt" in wanted:
        worker: Worker | None = None
        try:
            if single is not None and "drain" in wanted:
                worker = Worker(runner, "drain", None)
                if scenario(result, "drain", lambda: drain(runner, worker, n, args.poll,
                                                            args.timeout)) is not None:
                    scenario(result, "rss", lambda: above_client(worker.rss(), python,
                                                                 spec.client))
                else:
                    result.scenarios["rss"] = {"failed": "the drain failed"}
                drained = result.scenarios["drain"]
                if drained.get("partial") or "failed" in drained:
                    # A backlog is left: round trips on a fresh worker over an empty Redis.
                    worker.stop()
                    worker = None
            if "rtt" in wanted:
                if worker is None:
                    suite.reset(runner)
                    worker = Worker(runner, "rtt", None)
                    time.sleep(2.0)
                time.sleep(args.idle)
                budget = int(args.timeout * 0.8)
                scenario(result, "rtt_side",
                         lambda: runner.produce("rtt-side", repeats=repeats, budget=budget))
                scenario(result, "rtt_result",
                         lambda: runner.produce("rtt-result", repeats=repeats, budget=budget))
        finally:
            if worker is not None:
                worker.stop()
    elif single is not None:
        suite.reset(runner)  # the single enqueue's backlog, never drained

    suite.reset(runner)
    if "naps" in wanted:
        if scenario(result, "naps_enqueue",
                    lambda: runner.produce("naps", n=args.naps)) is not None:
            naps_file = (runner.work / f"{runner.spec.name}-naps.txt"
                         if args.naps_record == "file" else None)
            if naps_file is not None:
                naps_file.unlink(missing_ok=True)
            worker = Worker(runner, "naps", 100, naps_file)
            try:
                scenario(result, "naps",
                         lambda: naps(runner, worker, args.naps, args.timeout, naps_file))
            finally:
                worker.stop()
        else:
            result.scenarios["naps"] = result.scenarios["naps_enqueue"]
        suite.reset(runner)
    if any("failed" in entry for entry in result.scenarios.values()):
        for log in runner.logs:
            text = tail(log, 40)
            if text:
                result.logs[log.name] = text
    result.seconds = time.perf_counter() - started
    return result


SCENARIO_KEYS = ["single", "bulk", "drain", "rtt_side", "rtt_result", "naps", "rss"]
SCENARIO_GROUPS = ["bulk", "single", "drain", "rtt", "naps"]  # what --scenarios names

# (label, scenario, figure, unit format, higher_is_better; None: no ratio rows)
ROWS = [
    ("1 single enqueue, tasks/s", "single", "per_s", "{:,.0f}", True),
    ("2 bulk enqueue, tasks/s", "bulk", "per_s", "{:,.0f}", True),
    ("3 drain, tasks/s", "drain", "per_s", "{:,.0f}", True),
    ("4a rtt side effect p50, ms", "rtt_side", "p50_ms", "{:.2f}", False),
    ("4a rtt side effect p99, ms", "rtt_side", "p99_ms", "{:.2f}", False),
    ("4b rtt result API p50, ms", "rtt_result", "p50_ms", "{:.2f}", False),
    ("4b rtt result API p99, ms", "rtt_result", "p99_ms", "{:.2f}", False),
    ("5 {naps} x 50ms sleep @100, s", "naps", "seconds", "{:.2f}", False),
    ("6 worker peak RSS, MB", "rss", "largest_process_mb", "{:.1f}", False),
    ("6 ... process tree sum, MB", "rss", "tree_sum_mb", "{:.1f}", False),
    ("6 ... its client's import alone, MB", "rss", "client_import_mb", "{:.1f}", None),
    ("6 ... above that import, MB", "rss", "above_client_mb", "{:.1f}", False),
]


# -- output -------------------------------------------------------------------------------------


def median_result(runs: list[PeerResult]) -> PeerResult:
    """One peer's rounds as one result: each figure is its median over the rounds that gave
    it; a scenario that some rounds could not measure says how many did."""
    first = runs[0]
    merged = PeerResult(first.name, first.versions, first.python, first.freeze,
                        seconds=sum(r.seconds for r in runs), repository=first.repository)
    for run in runs:
        merged.logs.update(run.logs)
    for key in dict.fromkeys(k for r in runs for k in r.scenarios):
        entries = [r.scenarios.get(key, {}) for r in runs]
        good = [e for e in entries if "failed" not in e and "na" not in e and e]
        if not good:
            merged.scenarios[key] = entries[0]
            continue
        combined: dict[str, Any] = {"rounds": len(good)}
        for name in good[0]:
            values = [e[name] for e in good if isinstance(e.get(name), (int, float))
                      and not isinstance(e.get(name), bool)]
            if values and len(values) == len(good):
                combined[name] = statistics.median(values)
        notes = []
        if len(good) < len(runs):
            lost = [e for e in entries if not any(e is g for g in good)]
            notes.append(f"{len(good)} of {len(runs)} rounds measured")
            notes += [str(e.get("failed") or e.get("na") or "no figure") for e in lost][:1]
        notes += [str(e["partial"]) for e in good if e.get("partial")][:1]
        if notes:
            combined["partial"] = "; ".join(notes)
        merged.scenarios[key] = combined
    return merged


def round_figures(rounds: list[list[PeerResult]]) -> str:
    """Each row's figure per round, round by round, for every peer (``--rounds`` above 1)."""
    out = []
    for label, key, name, fmt, _ in ROWS:
        cells = []
        for index, result in enumerate(rounds[0]):
            values = [figure(r[index], key, name) for r in rounds]
            cells.append(f"{result.name} " + " | ".join(
                "-" if v is None else fmt.format(v) for v in values))
        out.append(f"{label.format(naps='naps')}: " + "; ".join(cells))
    return "\n".join(out)


def figure(result: PeerResult, key: str, name: str) -> float | None:
    value = result.scenarios.get(key, {}).get(name)
    return value if isinstance(value, (int, float)) else None


def render_table(results: list[PeerResult], naps: int,
                 by_name: dict[str, PeerSpec]) -> tuple[str, list[str]]:
    notes: list[str] = []
    note_index: dict[str, int] = {}

    def note(text: str) -> int:
        if text not in note_index:
            notes.append(text)
            note_index[text] = len(notes)
        return note_index[text]

    refs = [r for r in results if by_name[r.name].qtasks_row
            and any(figure(r, k, f) is not None for _, k, f, _, _ in ROWS)]
    lines: list[list[str]] = [["scenario"] + [r.name for r in results]]
    for label, key, name, fmt, higher in ROWS:
        row = [label.format(naps=naps)]
        for r in results:
            entry = r.scenarios.get(key, {})
            value = figure(r, key, name)
            if value is not None and entry.get("partial"):
                row.append(fmt.format(value) + f" *[{note(r.name + ': ' + entry['partial'])}]")
            elif value is not None:
                row.append(fmt.format(value))
            elif "na" in entry:
                row.append(f"n/a [{note(r.name + ': ' + entry['na'])}]")
            elif "failed" in entry:
                row.append(f"failed [{note(r.name + ': ' + entry['failed'])}]")
            else:
                row.append("-")
        lines.append(row)
        for ref in refs if higher is not None else ():  # None: a figure to read, no ratio
            mine = figure(ref, key, name)
            ratio_row = [f"   ratio {ref.name}"]
            for r in results:
                theirs = figure(r, key, name)
                if r is ref or mine is None or theirs is None or not mine or not theirs:
                    ratio_row.append("")
                else:
                    ratio_row.append(f"{(mine / theirs) if higher else (theirs / mine):.2f}x")
            lines.append(ratio_row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for index, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out), notes


def repo_state() -> dict[str, Any]:
    """The commit the qtasks rows ran on, and the uncommitted paths under src/ (read-only git)."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return {"head": git("rev-parse", "HEAD"), "uncommitted_under_src": changed}


def environment(redis_version: str) -> dict[str, Any]:
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "redis_server": redis_version, "harness_python": platform.python_version(),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "machine": platform.machine(), "repository": repo_state()}


def print_report(results: list[PeerResult], env: dict[str, Any], args: argparse.Namespace,
                 total: float, suite: Suite) -> None:
    table, notes = render_table(results, args.naps, suite.by_name)
    print(f"\n{suite.describe() or 'Redis'} {env['redis_server']} (private, loopback, "
          "no persistence); "
          f"{env['cpus']} CPUs; harness Python {env['harness_python']}; "
          f"{args.tasks} tasks, {args.repeats} round trips, {args.naps} naps, "
          f"bulk batches of {args.batch}")
    print("ratio rows: qtasks/peer for tasks/s, peer/qtasks for ms, s and MB; >1x means "
          "qtasks is better")
    print()
    print(table)
    if notes:
        print()
        for i, text in enumerate(notes, 1):
            print(f"[{i}] {text}")
    print("\nversions:")
    for r in results:
        pins = ", ".join(f"{k} {v}" for k, v in r.versions.items())
        print(f"  {r.name}: {pins or '?'}; Python {r.python or '?'}")
    print("\nper peer:")
    for r in results:
        print(f"  {r.name}: {suite.by_name[r.name].note}")
    print(f"\nlogging: {suite.logging_note}")
    for r in results:
        if r.repository:
            dirty = r.repository["uncommitted_under_src"]
            print(f"{r.name} ran on commit {r.repository['head'][:12]}"
                  + (f" plus uncommitted {', '.join(dirty)}" if dirty else ""))
    print(f"(total {total:.0f} s)")


def main(argv: list[str] | None = None, suite: Suite | None = None,
         doc: str | None = None) -> int:
    suite = suite or REDIS_SUITE
    parser = argparse.ArgumentParser(description=(doc or __doc__ or "").split("\n\n")[0])
    parser.add_argument("--peers", default=",".join(p.name for p in suite.peers),
                        help="comma-separated peer names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the peers and exit")
    parser.add_argument("--tasks", type=int, help="tasks for scenarios 1-3 (default 10000)")
    parser.add_argument("--repeats", type=int, help="round trips per variant (default 200)")
    parser.add_argument("--naps", type=int, help="50 ms tasks in scenario 5 (default 1000)")
    parser.add_argument("--naps-record", choices=("file", "redis"), default="file",
                        help="where nap() records its times: a line appended to a file "
                             "(default), or RPUSH bench:naps with the peer's redis-py, as "
                             "before 2026-12-08 (see scenario 5)")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per bulk call")
    parser.add_argument("--scenarios", default=",".join(SCENARIO_GROUPS),
                        help="which scenarios to run, of " + ",".join(SCENARIO_GROUPS) +
                             " (default all; drain brings the single enqueue whose backlog it "
                             "drains, and the worker RSS; rtt is both round trips, on the "
                             "drain's worker or a fresh one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 300 tasks, 20 round trips, 200 naps (unless given)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this file")
    parser.add_argument("--poll", type=float, default=0.01, help="drain polling interval, s")
    parser.add_argument("--idle", type=float, default=1.0,
                        help="seconds the drained worker idles before the round trips")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="limit for each subprocess and each drain, s")
    parser.add_argument("--no-freeze", dest="freeze", action="store_false",
                        help="skip pip freeze of each venv in the JSON")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the worker/producer logs here")
    parser.add_argument("--redis-py", metavar="VERSION",
                        help="install this redis-py in every peer on redis-py that can take it "
                             "(its own venv, .bench-venvs/<venv>-redis<VERSION>), qtasks "
                             "included, so that they differ only in the queue; default: each "
                             "peer's pin, and the newest for qtasks")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every peer this many times, in the given order, then "
                             "reversed, and so on; the table shows each figure's median")
    args = parser.parse_args(argv)
    if args.redis_py:
        suite = replace(suite, peers=[with_redis_py(p, args.redis_py) for p in suite.peers])
    if args.list:
        for p in suite.peers:
            print(f"{p.name:16} venv {p.venv:10} pins {' '.join(p.pins)}")
        return 0
    small = args.quick
    args.tasks = args.tasks or (300 if small else 10_000)
    args.repeats = args.repeats or (20 if small else 200)
    args.naps = args.naps or (200 if small else 1000)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    strange = [s for s in args.scenarios if s not in SCENARIO_GROUPS]
    if strange or not args.scenarios:
        parser.error(f"unknown scenario(s): {', '.join(strange) or '(none given)'}; known: "
                     f"{', '.join(SCENARIO_GROUPS)}")
    names = [s.strip() for s in args.peers.split(",") if s.strip()]
    by_name = suite.by_name
    unknown = [s for s in names if s not in by_name]
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    if not Path(REDIS_SERVER).exists():
        parser.error(f"{REDIS_SERVER} not found")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the cleanups

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    VENVS.mkdir(exist_ok=True)
    rounds: list[list[PeerResult]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="redis-peers-") as tmp:
        base = Path(tmp)
        redis = RedisServer(base)
        try:
            env = environment(redis.version())
            say(f"redis-server {env['redis_server']} on 127.0.0.1:{redis.port}")
            for index in range(args.rounds):
                # The machine drifts, and a peer measured right after another can find the
                # servers busy with its leftovers: alternating the order spreads both.
                order = names if index % 2 == 0 else names[::-1]
                if args.rounds > 1:
                    say(f"round {index + 1} of {args.rounds}: {', '.join(order)}")
                where = base if args.rounds == 1 else base / f"round-{index + 1}"
                where.mkdir(exist_ok=True)
                got = {}
                for name in order:
                    redis.flush()
                    got[name] = run_peer(by_name[name], redis, where, args, suite)
                rounds.append([got[name] for name in names])
        finally:
            redis.close()
            if args.keep_logs:
                dest = Path(args.keep_logs)
                dest.mkdir(parents=True, exist_ok=True)
                for path in base.rglob("*.log"):
                    shutil.copy(path, dest / "-".join(path.relative_to(base).parts))
    total = time.perf_counter() - started
    results = (rounds[0] if len(rounds) == 1 else
               [median_result([r[i] for r in rounds]) for i in range(len(names))])
    print_report(results, env, args, total, suite)
    if len(rounds) > 1:
        print("\neach round (the table shows the medians; even rounds ran in reverse order):\n"
              + round_figures(rounds))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "list")}
        payload = {"environment": env, "settings": settings, "total_seconds": total,
                   "peers": {r.name: {"versions": r.versions, "python": r.python,
                                      "pins": list(by_name[r.name].pins),
                                      "seconds": r.seconds, "scenarios": r.scenarios,
                                      "repository": r.repository,
                                      "pip_freeze": r.freeze, "log_tails": r.logs}
                             for r in results}}
        if len(rounds) > 1:
            payload["rounds"] = [{r.name: {"scenarios": r.scenarios, "seconds": r.seconds,
                                           "repository": r.repository} for r in one}
                                 for one in rounds]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


REDIS_SUITE = Suite(
    "redis", PEERS,
    logging_note="WARNING via CLI flag for celery, rq, huey (-q), taskiq, arq "
                 "(--custom-log-dict), qtasks; dramatiq and saq defaults (no per-task lines); "
                 "streaq and QTasks 1.7.3 at their default INFO (per-task lines).")


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        raise SystemExit(130) from None
