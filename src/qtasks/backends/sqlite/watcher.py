"""Noticing that another process changed the database, as cheaply as SQLite allows.

SQLite has no notifications between processes. ``PRAGMA data_version`` is the cheapest signal
it offers: it reads a counter from the WAL index in shared memory, with no disk I/O, and the
counter moves whenever another connection commits. One watcher thread per database and process
polls it, only while somebody waits: from ``MIN_INTERVAL`` backing off to ``max_interval`` while
things happen, and after ``HOT_SECONDS`` without any change further, to ``idle_interval``, so an
idle worker costs almost nothing (every wake-up of a thread costs tens of microseconds of CPU).
Every waiter in the process wakes on a change. A new waiter restarts the backoff, and commits
made through this process call :meth:`ChangeWatcher.poke`, which wakes waiters at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable

MIN_INTERVAL = 0.0002
HOT_SECONDS = 1.0


class ChangeWatcher:
    """Wakes sync and async waiters when the database changes."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], max_interval: float,
                 idle_interval: float) -> None:
        self._connect = connect
        self.max_interval = max(max_interval, MIN_INTERVAL)
        self.idle_interval = max(idle_interval, self.max_interval)
        self._last_change = time.monotonic()
        self._cond = threading.Condition()
        self._generation = 0
        self._waiters = 0
        self._interval = MIN_INTERVAL
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        return self._generation

    def poke(self) -> None:
        """Tell waiters that this process just committed a change."""
        with self._cond:
            self._bump()

    def _bump(self) -> None:
        # caller holds self._cond
        self._generation += 1
        self._cond.notify_all()
        futures, self._futures = self._futures, set()
        for loop, future in futures:
            loop.call_soon_threadsafe(_resolve, future)

    def _enter(self, eager: bool) -> None:
        # caller holds self._cond. An eager waiter (someone waiting for a result) wants a fast
        # answer, so the backoff restarts; a worker re-arming its idle wait does not.
        self._waiters += 1
        if eager:
            self._interval = MIN_INTERVAL
            self._last_change = time.monotonic()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qtasks-sqlite-watch",
                                            daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def wait(self, since: int, timeout: float, eager: bool = True) -> int:
        """Block until the generation passes ``since`` or ``timeout`` elapses; return it."""
        with self._cond:
            if self._generation != since:
                return self._generation
            self._enter(eager)
            try:
                self._cond.wait_for(lambda: self._generation != since, timeout)
            finally:
                self._waiters -= 1
            return self._generation

    async def wait_async(self, since: int, timeout: float, eager: bool = True) -> int:
        """Await a change after generation ``since`` or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._generation != since:
                return self._generation
            self._futures.add((loop, future))
            self._enter(eager)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as
            # the future completes, and the cancelled caller would then go on waiting.
            await asyncio.wait((future,), timeout=timeout)
        finally:
            with self._cond:
                self._futures.discard((loop, future))
                self._waiters -= 1
        return self._generation

    def _run(self) -> None:
        conn = self._connect()
        last = conn.execute("PRAGMA data_version").fetchone()[0]
        # A change committed between a waiter's read and this first baseline would never be
        # reported: wake the first waiters once so that they read again.
        with self._cond:
            self._bump()
        while True:
            with self._cond:
                while self._waiters <= 0:
                    self._cond.wait()
                interval = self._interval
                hot = time.monotonic() - self._last_change < HOT_SECONDS
                ceiling = self.max_interval if hot else self.idle_interval
                self._interval = min(self._interval * 1.5, ceiling)
            current = conn.execute("PRAGMA data_version").fetchone()[0]
            if current != last:
                last = current
                with self._cond:
                    self._bump()
                    self._interval = MIN_INTERVAL
                    self._last_change = time.monotonic()
            # Sleep outside the lock; a new waiter resets the interval for the next round.
            time.sleep(interval)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
