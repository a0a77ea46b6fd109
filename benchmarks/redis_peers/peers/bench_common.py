"""Shared by the peer adapters (``bench_<peer>.py``); runs inside each peer's own virtualenv.

An adapter defines its framework's app and the four benchmark tasks, and ``PEER``, an instance
of a ``Peer`` subclass that knows how to enqueue them, wait for them and start a worker.
``run_peer.py <adapter> <command>`` imports the adapter and calls ``main(PEER)``, which turns
the command line into one measurement and prints its outcome as one line, ``BENCH_RESULT {json}``,
on stdout. The harness (``benchmarks/redis_peers.py``) runs one such process per measurement.

Commands: ``versions``, ``single``, ``bulk``, ``naps``, ``rtt-side``, ``rtt-result``, ``worker``.

The tasks, identical in every adapter (only sync/async differs):

- ``bump()``: ``INCR bench:done`` (the drain counts finished tasks through this key);
- ``noop()``: returns ``None`` (the result-API round trip);
- ``side(key)``: ``RPUSH key 1`` (the side-effect round trip: the producer ``BLPOP``\\ s it);
- ``nap()``: sleeps 50 ms, then records ``"<start> <end>"`` (``time.time()``): a line appended
  to the file ``BENCH_NAPS_FILE`` names, or, with that unset, ``RPUSH bench:naps``.

Environment: ``BENCH_REDIS_URL`` (required), ``BENCH_CONCURRENCY`` (worker only; unset means
the peer's default), ``BENCH_NAPS_FILE`` (worker only: where ``nap()`` records its times),
``BENCH_VARIANT`` (adapters with two configurations), ``BENCH_PG_URL``
(the PostgreSQL peers of ``benchmarks/postgres_peers.py``: an empty database of their own,
made afresh before each group of scenarios; the ``install`` command creates the peer's tables
in it). The tasks' side effects stay in Redis for every peer, so the counters cost the same.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
PG_URL = os.environ.get("BENCH_PG_URL", "")
CONCURRENCY = int(os.environ["BENCH_CONCURRENCY"]) if os.environ.get("BENCH_CONCURRENCY") else None
VARIANT = os.environ.get("BENCH_VARIANT", "")
DONE_KEY = "bench:done"
NAPS_KEY = "bench:naps"
NAPS_FILE = os.environ.get("BENCH_NAPS_FILE", "")
SIDE_PREFIX = "bench:side:"  # one key per round trip, so a late push cannot be mistaken
NAP_SECONDS = 0.05
WAIT_TIMEOUT = 5.0  # seconds a round trip waits; one that times out is counted as such
WARMUP = 3  # untimed round trips before the timed ones (connection set-up, first imports)


class NotAvailable(Exception):
    """The peer has no such feature; the table shows "n/a: <reason>"."""


def bin_path(name: str) -> str:
    """A console script of this virtualenv (next to its python)."""
    return str(Path(sys.executable).parent / name)


# -- task bodies over redis-py, one client per process (redis-py pools are fork-aware) --------

_sync_client = None
_async_clients: dict[int, Any] = {}


def sync_redis() -> Any:
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(URL)
    return _sync_client


def async_redis() -> Any:
    """A redis.asyncio client for the running event loop (created on first use in it)."""
    import redis.asyncio

    loop = id(asyncio.get_running_loop())
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(URL)
    return client


def bump_sync() -> None:
    sync_redis().incr(DONE_KEY)


def side_sync(key: str) -> None:
    sync_redis().rpush(key, 1)


# Where nap() records its times. A line appended to a file costs every peer the same system
# call. An RPUSH does not: the first wave of 100 naps opens 100 connections of the client's
# pool, which took 7-22 ms with redis-py 5.3.1 and 85-116 ms with 7.4.1 and 8.2.0 (100 pushes
# at once on a new client, measured here): the client version in the peer's venv, not the
# peer's scheduling.
_naps_fd: int | None = None


def record_nap(start: float, end: float) -> bool:
    """Append ``start end`` to ``NAPS_FILE``; ``False`` when the times go to Redis instead.
    One ``write`` with ``O_APPEND`` per line, so lines from threads never interleave."""
    global _naps_fd
    if not NAPS_FILE:
        return False
    if _naps_fd is None:
        _naps_fd = os.open(NAPS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_naps_fd, f"{start} {end}\n".encode())
    return True


def nap_sync() -> None:
    start = time.time()
    time.sleep(NAP_SECONDS)
    end = time.time()
    if not record_nap(start, end):
        sync_redis().rpush(NAPS_KEY, f"{start} {end}")


async def bump_async() -> None:
    await async_redis().incr(DONE_KEY)


async def side_async(key: str) -> None:
    await async_redis().rpush(key, 1)


async def nap_async() -> None:
    start = time.time()
    await asyncio.sleep(NAP_SECONDS)
    end = time.time()
    if not record_nap(start, end):
        await async_redis().rpush(NAPS_KEY, f"{start} {end}")


# -- the adapter interface -----------------------------------------------------------------


class Peer:
    """Base of the adapters of sync frameworks (``AsyncPeer``: the same, as coroutines).

    ``bulk`` and ``check_naps`` may raise ``NotAvailable``."""

    packages: list[str] = []  # distributions whose versions are reported

    def setup(self) -> Any: ...
    def teardown(self) -> Any: ...

    def install(self) -> Any:
        """Create the peer's tables in the empty database ``PG_URL`` (PostgreSQL peers)."""

    def single(self) -> Any:
        """Enqueue one ``bump()``."""
        raise NotImplementedError

    def bulk(self, k: int) -> Any:
        """Enqueue ``k`` ``bump()`` with the peer's bulk API."""
        raise NotAvailable("no bulk enqueue API")

    def nap(self) -> Any:
        """Enqueue one ``nap()``."""
        raise NotImplementedError

    def side(self, key: str) -> Any:
        """Enqueue one ``side(key)``."""
        raise NotImplementedError

    def wait_side(self, key: str) -> Any:
        """Block until the ``side`` task's push to ``key`` arrives (``BLPOP``); False if it
        did not within ``WAIT_TIMEOUT``."""
        return sync_redis().blpop([key], timeout=WAIT_TIMEOUT) is not None

    def result(self) -> Any:
        """Enqueue one ``noop()`` and wait for it through the framework's result API, at most
        ``WAIT_TIMEOUT``; raise if it failed or did not finish in time."""
        raise NotImplementedError

    def check_naps(self) -> None:
        """Raise ``NotAvailable`` if one worker process cannot run tasks concurrently."""

    def worker(self) -> Any:
        """Become the worker: ``os.execv`` the peer's CLI, or run it in this process."""
        raise NotImplementedError


class AsyncPeer(Peer):
    """Base of the adapters of async frameworks: the same methods, as coroutine functions."""

    async def setup(self) -> Any: ...
    async def teardown(self) -> Any: ...

    async def wait_side(self, key: str) -> Any:
        return await async_redis().blpop([key], timeout=WAIT_TIMEOUT) is not None


def exec_worker(argv: list[str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


# -- measurements ----------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _latency(ms: list[float]) -> dict[str, Any]:
    ordered = sorted(ms)
    return {"samples": len(ms), "p50_ms": _percentile(ordered, 50),
            "p99_ms": _percentile(ordered, 99), "mean_ms": sum(ms) / len(ms),
            "min_ms": ordered[0], "max_ms": ordered[-1]}


class _RoundTrips:
    """``WARMUP`` untimed round trips, then ``--repeats`` timed ones, stopping early (and
    saying so) once ``--budget`` seconds have gone by. A round trip that ends in a timeout
    (``WAIT_TIMEOUT``) is counted with the time it took; all of them timing out is a failure."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.side = args.command == "rtt-side"
        self.repeats, self.budget = args.repeats, args.budget
        self.ms: list[float] = []
        self.timeouts = 0
        self.started = time.perf_counter()

    def __iter__(self) -> Any:
        for i in range(WARMUP + self.repeats):
            if self.ms and time.perf_counter() - self.started > self.budget:
                return
            yield i

    def add(self, i: int, seconds: float, arrived: bool) -> None:
        if i < WARMUP:
            return
        self.ms.append(seconds * 1000.0)
        self.timeouts += not arrived

    def summary(self) -> dict[str, Any]:
        if not self.ms or self.timeouts == len(self.ms):
            raise RuntimeError(f"every round trip timed out (> {WAIT_TIMEOUT:.0f} s)")
        out = _latency(self.ms)
        out["timeouts"] = self.timeouts
        if len(self.ms) < self.repeats:
            out["partial"] = (f"{len(self.ms)} of {self.repeats} round trips within the "
                              f"{self.budget:.0f} s budget")
        if self.timeouts:
            out["partial"] = "; ".join(filter(None, [out.get("partial"), (
                f"{self.timeouts} timed out at {WAIT_TIMEOUT:.0f} s, counted with their time")]))
        return out


def _sync_measure(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """One command for an adapter with plain methods (no event loop runs meanwhile)."""
    clock = time.perf_counter
    if args.command == "single":
        start = clock()
        for _ in range(args.n):
            peer.single()
        elapsed = clock() - start
        return {"tasks": args.n, "seconds": elapsed, "per_s": args.n / elapsed}
    if args.command == "bulk":
        start = clock()
        for done in range(0, args.n, args.batch):
            peer.bulk(min(args.batch, args.n - done))
        elapsed = clock() - start
        return {"tasks": args.n, "batch": args.batch, "seconds": elapsed,
                "per_s": args.n / elapsed}
    if args.command == "naps":
        peer.check_naps()
        start = clock()
        for _ in range(args.n):
            peer.nap()
        return {"tasks": args.n, "enqueue_seconds": clock() - start}
    if args.command in ("rtt-side", "rtt-result"):
        rtt = _RoundTrips(args)
        for i in rtt:
            start = clock()
            try:
                if rtt.side:
                    peer.side(SIDE_PREFIX + str(i))
                    arrived = peer.wait_side(SIDE_PREFIX + str(i))
                else:
                    peer.result()
                    arrived = True
            except Exception:
                if clock() - start < 0.9 * WAIT_TIMEOUT:
                    raise
                arrived = False  # the framework's own timeout: counted, with its time
            rtt.add(i, clock() - start, arrived)
        return rtt.summary()
    raise SystemExit(f"unknown command {args.command!r}")


async def _async_measure(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """The same, for an adapter with coroutine methods, inside one event loop."""
    clock = time.perf_counter
    if args.command == "single":
        start = clock()
        for _ in range(args.n):
            await peer.single()
        elapsed = clock() - start
        return {"tasks": args.n, "seconds": elapsed, "per_s": args.n / elapsed}
    if args.command == "bulk":
        start = clock()
        for done in range(0, args.n, args.batch):
            await peer.bulk(min(args.batch, args.n - done))
        elapsed = clock() - start
        return {"tasks": args.n, "batch": args.batch, "seconds": elapsed,
                "per_s": args.n / elapsed}
    if args.command == "naps":
        peer.check_naps()
        start = clock()
        for _ in range(args.n):
            await peer.nap()
        return {"tasks": args.n, "enqueue_seconds": clock() - start}
    if args.command in ("rtt-side", "rtt-result"):
        rtt = _RoundTrips(args)
        for i in rtt:
            start = clock()
            try:
                if rtt.side:
                    await peer.side(SIDE_PREFIX + str(i))
                    arrived = await peer.wait_side(SIDE_PREFIX + str(i))
                else:
                    await peer.result()
                    arrived = True
            except Exception:
                if clock() - start < 0.9 * WAIT_TIMEOUT:
                    raise
                arrived = False
            rtt.add(i, clock() - start, arrived)
        return rtt.summary()
    raise SystemExit(f"unknown command {args.command!r}")


def versions(packages: list[str]) -> dict[str, str]:
    # imported here: importlib.metadata brings email, csv and zipfile, about 2 MB that would
    # otherwise sit in every peer's worker (each imports its adapter, and so this module)
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write("BENCH_RESULT " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(peer: Peer, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--budget", type=float, default=240.0)
    args = parser.parse_args(argv)
    if args.command == "versions":
        emit(versions(peer.packages))
        return
    if args.command == "install":
        out = peer.install()
        if inspect.isawaitable(out):
            asyncio.run(out)
        emit({"installed": True})
        return
    if args.command == "worker":
        out = peer.worker()
        if inspect.isawaitable(out):
            asyncio.run(out)
        return

    try:
        if inspect.iscoroutinefunction(peer.single):
            async def run() -> dict[str, Any]:
                await peer.setup()
                try:
                    return await _async_measure(peer, args)
                finally:
                    try:
                        await peer.teardown()
                    except Exception:
                        traceback.print_exc()

            emit(asyncio.run(run()))
        else:
            peer.setup()
            try:
                emit(_sync_measure(peer, args))
            finally:
                try:
                    peer.teardown()
                except Exception:
                    traceback.print_exc()
    except NotAvailable as exc:
        emit({"na": str(exc)})
