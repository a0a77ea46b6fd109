"""qtasks vs Huey on an embedded SQLite file: enqueue rate, drain rate, idle round-trip latency.

Run from the repository root with the project's virtualenv (Huey must be installed)::

    .venv/bin/python benchmarks/embedded.py [--tasks N] [--rtt N] [--json]

Both systems are measured the same way, one after the other, in a fresh temporary directory each:

1. enqueue: N no-op tasks enqueued from this process, one call (one transaction) per task, with no
   consumer running;
2. drain: one consumer process (10 threads) is started on that backlog; a separate read-only
   SQLite connection counts finished tasks every ``--poll`` seconds. The drain rate is
   ``(N - done at the first sample that saw progress) / (time of the last sample - time of that
   first sample)``, so interpreter start-up and import time are excluded; they are reported
   separately as ``startup`` (spawn until the first finished task was seen);
3. round trip: with the consumer idle, ``--rtt`` sequential "enqueue one no-op and block until
   its result is stored" calls; p50/p99 in milliseconds.

See benchmarks/README.md for what exactly is counted and why.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

QTASKS_MODULE = '''\
from qtasks import QueueTasks

app = QueueTasks(name="bench", broker_url={url!r})


@app.task(name="noop")
def noop():
    return None
'''

# store_none=True: Huey only stores a result for a task that returned something unless told
# otherwise; without it a no-op task could not be waited for, and Huey would skip the per-task
# result write that qtasks always makes (its task record).
HUEY_MODULE = '''\
from huey import SqliteHuey
from huey.storage import SqliteStorage

SYNCHRONOUS = {synchronous!r}


class BenchStorage(SqliteStorage):
    def _create_connection(self):
        conn = super()._create_connection()
        if SYNCHRONOUS:
            conn.execute("PRAGMA synchronous=" + SYNCHRONOUS)
        return conn


huey = SqliteHuey("bench", filename={path!r}, store_none=True, storage_class=BenchStorage)


@huey.task()
def noop():
    return None
'''

QTASKS_DONE_SQL = "SELECT count(*) FROM records WHERE status IN ('success', 'error', 'cancel')"
QTASKS_ERRORS_SQL = "SELECT count(*) FROM records WHERE status != 'success'"
HUEY_DONE_SQL = "SELECT count(*) FROM kv WHERE queue = 'bench'"


# -- small helpers -----------------------------------------------------------------------------


class Progress:
    """One line on stderr, rewritten in place on a terminal, throttled elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            sys.stderr.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r" + text.ljust(self._width) + "\n")
            self._width = 0
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


PROGRESS = Progress()


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class Consumer:
    """A worker/consumer subprocess in its own session; always stopped by ``close``."""

    def __init__(self, argv: list[str], cwd: Path, stop_signal: int) -> None:
        self.log_path = cwd / "consumer.log"
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])]))
        for key in [k for k in env if k.startswith("QTASKS_")]:
            del env[key]  # the benchmark's settings are in the generated module, nothing else
        self.stop_signal = stop_signal
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the consumer process (all threads) so far; Linux only."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state is fields[0]
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"the consumer exited early with code {code}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        # Its own session: take down anything it started as well (only this process group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def consumer(argv: list[str], cwd: Path, stop_signal: int) -> Iterator[Consumer]:
    proc = Consumer(argv, cwd, stop_signal)
    try:
        yield proc
    finally:
        proc.close()


def import_fresh(name: str, folder: Path) -> Any:
    """Import the generated module ``name`` from ``folder`` (the consumer imports the same file)."""
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


# -- the three measurements, identical for both systems ------------------------------------------


@dataclass
class Result:
    system: str
    tasks: int
    enqueue_seconds: float = 0.0
    enqueue_per_s: float = 0.0
    bulk_enqueue_per_s: float = 0.0
    startup_seconds: float = 0.0
    drain_seconds: float = 0.0
    drain_per_s: float = 0.0
    drain_wall_seconds: float = 0.0
    drain_wall_per_s: float = 0.0
    drain_counted_tasks: int = 0
    drain_cpu_ms_per_1k: float | None = None
    failed_tasks: int = 0
    rtt_samples: int = 0
    rtt_p50_ms: float = 0.0
    rtt_p99_ms: float = 0.0
    rtt_mean_ms: float = 0.0
    rtt_max_ms: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def measure_enqueue(result: Result, label: str, enqueue_one: Callable[[], object]) -> None:
    n = result.tasks
    start = time.perf_counter()
    for i in range(n):
        enqueue_one()
        if i % 500 == 0:
            PROGRESS.show(f"  {label}: enqueue {i}/{n}")
    elapsed = time.perf_counter() - start
    result.enqueue_seconds = elapsed
    result.enqueue_per_s = n / elapsed
    PROGRESS.done(f"  {label}: enqueued {n} in {elapsed:.2f}s ({n / elapsed:,.0f}/s)")


def measure_bulk(result: Result, label: str, enqueue_many: Callable[[int], object],
                 batch: int) -> None:
    """Enqueue ``result.tasks`` tasks ``batch`` at a time (one transaction per batch)."""
    n = result.tasks
    start = time.perf_counter()
    for done in range(0, n, batch):
        enqueue_many(min(batch, n - done))
        PROGRESS.show(f"  {label}: bulk enqueue {done}/{n}")
    elapsed = time.perf_counter() - start
    result.bulk_enqueue_per_s = n / elapsed
    PROGRESS.done(f"  {label}: bulk-enqueued {n} in {elapsed:.2f}s ({n / elapsed:,.0f}/s, "
                  f"batches of {batch})")


def measure_drain(result: Result, label: str, db_path: Path, done_sql: str, proc: Consumer,
                  poll: float, timeout: float) -> None:
    """Count finished tasks from a read-only connection every ``poll`` seconds until all are."""
    n = result.tasks
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)
    try:
        first: tuple[float, int, float | None] | None = None
        while True:
            at = time.perf_counter()  # the read snapshot is taken when the query starts
            done = conn.execute(done_sql).fetchone()[0]
            if done and first is None:
                first = (at, done, proc.cpu_seconds())
            if done >= n:
                last_cpu = proc.cpu_seconds()
                break
            proc.check_alive()
            if at - proc.started > timeout:
                raise RuntimeError(f"{label}: drain not finished after {timeout:.0f}s "
                                   f"({done}/{n} done):\n{proc.log_tail()}")
            PROGRESS.show(f"  {label}: drain {done}/{n}")
            time.sleep(poll)
    finally:
        conn.close()
    assert first is not None
    first_at, first_done, first_cpu = first
    result.startup_seconds = first_at - proc.started
    result.drain_wall_seconds = at - proc.started
    result.drain_wall_per_s = n / result.drain_wall_seconds
    if first_done < n and at > first_at:
        result.drain_counted_tasks = n - first_done
        result.drain_seconds = at - first_at
    else:  # everything finished between two samples: fall back to the wall time
        result.drain_counted_tasks = n
        result.drain_seconds = result.drain_wall_seconds
    result.drain_per_s = result.drain_counted_tasks / result.drain_seconds
    if first_cpu is not None and last_cpu is not None and first_done < n:
        result.drain_cpu_ms_per_1k = (last_cpu - first_cpu) * 1e6 / (n - first_done)
    PROGRESS.done(f"  {label}: drained {n} in {result.drain_wall_seconds:.2f}s wall; "
                  f"{result.drain_per_s:,.0f}/s after startup ({result.startup_seconds:.2f}s)")


def measure_rtt(label: str, samples: int, round_trip: Callable[[], None],
                proc: Consumer) -> dict[str, float]:
    times: list[float] = []
    for i in range(samples):
        start = time.perf_counter()
        round_trip()
        times.append(time.perf_counter() - start)
        if i % 25 == 0:
            proc.check_alive()
            PROGRESS.show(f"  {label}: {i}/{samples}")
    ms = [t * 1000.0 for t in times]
    out = {"samples": samples, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
           "mean_ms": statistics.fmean(ms), "max_ms": max(ms)}
    PROGRESS.done(f"  {label}: p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms")
    return out


def store_rtt(result: Result, rtt: dict[str, float]) -> None:
    result.rtt_samples = int(rtt["samples"])
    result.rtt_p50_ms, result.rtt_p99_ms = rtt["p50_ms"], rtt["p99_ms"]
    result.rtt_mean_ms, result.rtt_max_ms = rtt["mean_ms"], rtt["max_ms"]


def count_huey_errors(huey: Any, db: Path) -> int:
    """How many stored Huey results are errors (a task that raised stores an ``Error``)."""
    from huey.utils import Error

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        values = conn.execute("SELECT value FROM kv WHERE queue = 'bench'").fetchall()
    finally:
        conn.close()
    return sum(isinstance(huey.serializer.deserialize(bytes(v)), Error) for (v,) in values)


# -- the systems -------------------------------------------------------------------------------


def run_qtasks(args: argparse.Namespace, base: Path) -> Result:
    result = Result("qtasks", args.tasks)
    with tempfile.TemporaryDirectory(prefix="qtasks-bench-", dir=base) as tmp:
        folder = Path(tmp)
        db = folder / "q.sqlite3"
        module_name = "bench_qtasks_tasks"
        (folder / f"{module_name}.py").write_text(QTASKS_MODULE.format(url=f"sqlite:///{db}"))
        bulk_name = "bench_qtasks_bulk"
        (folder / f"{bulk_name}.py").write_text(
            QTASKS_MODULE.format(url=f"sqlite:///{folder / 'bulk.sqlite3'}"))
        bulk = import_fresh(bulk_name, folder).app
        try:
            measure_bulk(result, "qtasks", lambda k: bulk.add_tasks([("noop", ())] * k),
                         args.batch)
        finally:
            bulk.client.close()
            sys.modules.pop(bulk_name, None)
        module = import_fresh(module_name, folder)
        app = module.app
        try:
            measure_enqueue(result, "qtasks", lambda: app.add_task("noop"))
            argv = [sys.executable, "-m", "qtasks", "-A", f"{module_name}:app", "run",
                    "--concurrency", str(args.concurrency), "--grace", "5"]
            with consumer(argv, folder, signal.SIGTERM) as proc:
                measure_drain(result, "qtasks", db, QTASKS_DONE_SQL, proc, args.poll,
                              args.timeout)
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    result.failed_tasks = conn.execute(QTASKS_ERRORS_SQL).fetchone()[0]
                finally:
                    conn.close()
                time.sleep(args.idle)  # let the worker go idle (its polling backs off)

                def round_trip() -> None:
                    record = app.add_task("noop", timeout=10)
                    if record is None or record.status != "success":
                        raise RuntimeError(f"qtasks round trip failed: {record!r}")

                store_rtt(result, measure_rtt("qtasks rtt", args.rtt, round_trip, proc))
        finally:
            app.client.close()
            sys.modules.pop(module_name, None)
    return result


def run_huey(args: argparse.Namespace, base: Path) -> Result:
    import huey as huey_pkg
    from huey.exceptions import ResultTimeout

    result = Result("huey", args.tasks)
    sync = "" if args.huey_synchronous == "default" else args.huey_synchronous.upper()
    result.notes = {"huey_version": huey_pkg.__version__, "synchronous": sync or "sqlite default",
                    "consumer_delay": args.huey_delay, "consumer_max_delay": args.huey_max_delay}
    with tempfile.TemporaryDirectory(prefix="huey-bench-", dir=base) as tmp:
        folder = Path(tmp)
        db = folder / "h.sqlite3"
        module_name = "bench_huey_tasks"
        (folder / f"{module_name}.py").write_text(HUEY_MODULE.format(path=str(db), synchronous=sync))
        module = import_fresh(module_name, folder)
        huey, noop = module.huey, module.noop
        try:
            measure_enqueue(result, "huey", noop)
            argv = [sys.executable, "-m", "huey.bin.huey_consumer", f"{module_name}.huey",
                    "-w", str(args.concurrency), "-k", "thread",
                    "-d", str(args.huey_delay), "-m", str(args.huey_max_delay)]
            with consumer(argv, folder, signal.SIGINT) as proc:
                measure_drain(result, "huey", db, HUEY_DONE_SQL, proc, args.poll, args.timeout)
                result.failed_tasks = count_huey_errors(huey, db)
                time.sleep(args.idle)

                def round_trip(**get_options: Any) -> None:
                    try:
                        noop().get(blocking=True, timeout=10, **get_options)
                    except ResultTimeout:
                        raise RuntimeError("huey round trip timed out") from None

                store_rtt(result, measure_rtt("huey rtt", args.rtt, round_trip, proc))
                if args.huey_fast_get:
                    time.sleep(args.idle)
                    fast = measure_rtt("huey rtt, get(max_delay=0.001)", args.rtt,
                                       lambda: round_trip(max_delay=0.001), proc)
                    result.notes["rtt_fast_get"] = fast
        finally:
            with contextlib.suppress(Exception):
                huey.storage.close()
            sys.modules.pop(module_name, None)
    return result


# -- output ------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import qtasks

    return {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "qtasks": qtasks.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count()}


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    env = environment()
    print(f"\n{args.tasks} no-op tasks, concurrency {args.concurrency}, {args.rtt} round trips; "
          f"Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs")
    header = (f"{'system':<8} {'enqueue/s':>10} {'bulk/s':>10} {'drain/s':>10} "
              f"{'rtt p50 ms':>11} {'rtt p99 ms':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        bulk = f"{r.bulk_enqueue_per_s:>10,.0f}" if r.bulk_enqueue_per_s else f"{'-':>10}"
        print(f"{r.system:<8} {r.enqueue_per_s:>10,.0f} {bulk} {r.drain_per_s:>10,.0f} "
              f"{r.rtt_p50_ms:>11.2f} {r.rtt_p99_ms:>11.2f}")
    by_name = {r.system: r for r in results}
    print()
    for r in results:
        cpu = "" if r.drain_cpu_ms_per_1k is None else (
            f", consumer CPU {r.drain_cpu_ms_per_1k:,.0f} ms per 1000 tasks")
        print(f"{r.system}: startup {r.startup_seconds:.2f}s, drain wall {r.drain_wall_seconds:.2f}s "
              f"({r.drain_wall_per_s:,.0f}/s incl. startup){cpu}, failed tasks {r.failed_tasks}")
    huey = by_name.get("huey")
    if huey is not None and "rtt_fast_get" in huey.notes:
        fast = huey.notes["rtt_fast_get"]
        print(f"huey with get(blocking=True, timeout=10, max_delay=0.001): "
              f"rtt p50 {fast['p50_ms']:.2f} ms, p99 {fast['p99_ms']:.2f} ms")
    if "qtasks" in by_name and huey is not None:
        q = by_name["qtasks"]
        print(f"qtasks/huey: drain {q.drain_per_s / huey.drain_per_s:.2f}x, "
              f"enqueue {q.enqueue_per_s / huey.enqueue_per_s:.2f}x, "
              f"qtasks bulk enqueue / huey enqueue {q.bulk_enqueue_per_s / huey.enqueue_per_s:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to enqueue and drain")
    parser.add_argument("--rtt", type=int, default=500, help="sequential round trips to time")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="worker threads of the one consumer process (default 10)")
    parser.add_argument("--batch", type=int, default=500, help="tasks per add_tasks call")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--systems", default="qtasks,huey", help="comma separated (qtasks,huey)")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between two counts of finished tasks during the drain")
    parser.add_argument("--idle", type=float, default=1.0,
                        help="seconds the consumer sits idle before the round trips")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up a drain after this")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary databases go")
    parser.add_argument("--huey-delay", type=float, default=0.001,
                        help="huey_consumer -d: initial polling interval (Huey default 0.1)")
    parser.add_argument("--huey-max-delay", type=float, default=0.01,
                        help="huey_consumer -m: longest polling interval (Huey default 10)")
    parser.add_argument("--huey-synchronous", choices=["normal", "full", "off", "default"],
                        default="normal",
                        help="PRAGMA synchronous of Huey's connections; qtasks uses NORMAL")
    parser.add_argument("--no-huey-fast-get", dest="huey_fast_get", action="store_false",
                        help="skip the extra Huey round trips with get(max_delay=0.001)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.rtt < 1:
        parser.error("--tasks and --rtt must be positive")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    runners = {"qtasks": run_qtasks, "huey": run_huey}
    unknown = [s for s in systems if s not in runners]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}")

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the cleanups (consumers, temp dirs)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    base = Path(args.tmp_dir) if args.tmp_dir else None
    results = []
    started = time.perf_counter()
    for name in systems:
        PROGRESS.done(f"{name}:")
        results.append(runners[name](args, base))
    total = time.perf_counter() - started
    if args.json:
        print(json.dumps({"environment": environment(), "total_seconds": total,
                          "settings": {k: v for k, v in vars(args).items() if k != "json"},
                          "results": [asdict(r) for r in results]}, indent=2))
    else:
        print_table(results, args)
        print(f"(total {total:.0f}s)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # consumers and temp dirs were cleaned up while unwinding
        sys.stderr.write("\ninterrupted\n")
        raise SystemExit(130) from None
