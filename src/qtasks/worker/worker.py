"""The async worker: claim, run, record; drain on SIGTERM.

One fetch loop keeps up to ``concurrency`` tasks running and up to ``prefetch`` more claimed in
a local buffer (sorted by priority). Finished tasks leave their outcome in ``_done`` and wake the
loop, which writes those outcomes and claims the next batch in one round trip to the backend
(``transport.claim(..., finished=...)``): one transaction per batch, not two. A heartbeat extends
every lease this worker holds, so a long task is not handed to another worker while this one is
alive.

Stopping: the first SIGTERM/SIGINT stops claiming, hands the buffered (never started) tasks back
at once, and gives running tasks ``grace`` seconds, writing their outcomes as they finish; a
second signal, or the end of the grace period, hands the unfinished ones back too (their
delivery counts) and returns.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from uuid import uuid4

from qtasks.backends.base import Delivery, Outcome
from qtasks.injection import Scope
from qtasks.plugins.runner import trigger_async
from qtasks.worker.executor import execute
from qtasks.worker.lending import MAX_LENT, current_lender

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

log = logging.getLogger("qtasks.worker")

IDLE_RECHECK = 1.0  # seconds; also how soon an expired lease of a dead worker is noticed


class Worker:
    """Runs the tasks of ``app``. ``await Worker(app).run()`` returns after a stop and drain."""

    def __init__(self, app: BaseQueueTasks, *, concurrency: int | None = None,
                 grace: float | None = None, install_signals: bool = True,
                 timers: bool = False, queues: list[str] | None = None) -> None:
        self.app = app
        self.timers = timers
        config = app.config
        self.queues = tuple(queues or config.worker_queues or ["default"])
        self.concurrency = max(1, concurrency or config.max_tasks_process)
        self.prefetch = config.prefetch(self.concurrency)
        self.grace = config.worker_shutdown_grace if grace is None else grace
        self.lease = config.visibility_timeout
        self.install_signals = install_signals
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.started_at = time.time()
        self.abandoned = 0
        self._buffer: list[Delivery] = []
        self._running: dict[asyncio.Task[None], Delivery] = {}
        self._done: list[Outcome] = []
        self._stopping = asyncio.Event()
        self._hard = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._backoff = 0.5
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shared_scope = Scope()  # dependencies with a scope wider than one task
        self.db = _database_hygiene()  # Django's connection clean-up, when Django is set up
        self._lent = 0  # slots lent back by tasks that wait for other tasks (see lending.py)
        self._lent_lock = threading.Lock()

    def request_stop(self) -> None:
        """``stop()`` from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stop)

    def lend(self) -> bool:
        """A running task waits for another: let one more task start (any thread)."""
        with self._lent_lock:
            if self._lent >= MAX_LENT:
                return False
            self._lent += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        return True

    def take_back(self) -> None:
        with self._lent_lock:
            self._lent -= 1

    def stop(self) -> None:
        """Begin a graceful stop (what the first SIGTERM does); a second call stops hard."""
        if self._stopping.is_set():
            self._hard.set()
            log.warning("worker %s: second stop request, stopping now", self.id)
        else:
            log.info("worker %s: stopping; %d running get %.0fs to finish", self.id,
                     len(self._running), self.grace)
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        transport = self.app.transport
        signals = self.install_signals and threading.current_thread() is threading.main_thread()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if self.app.config.delete_finished_tasks:
            removed = await transport.delete_finished()
            log.info("deleted %d finished task records", removed)
        await transport.heartbeat(self.id, self.lease, self._info())
        # Threads are made on demand; the headroom serves tasks that lent their slot while they
        # wait, and threads that max_time stopped waiting for.
        pool = ThreadPoolExecutor(self.concurrency + MAX_LENT, thread_name_prefix="qtasks-task")
        heartbeat = asyncio.create_task(self._heartbeat())
        timers = list(self.app._timers) if self.timers else []
        for timer in timers:
            timer.start()
        plugins = self.app._plugins
        for plugin in plugins.plugins:
            await _maybe_await(plugin.start())
        backend = self.app.backend
        for name, extra in (("starter_start", {"starter": None}),
                            ("storage_start", {"storage": backend}),
                            ("global_config_start", {"global_config": None}),
                            ("broker_start", {"broker": backend, "worker": self}),
                            ("worker_start", {"worker": self}),
                            ("broker_listen_start", {"broker": backend, "worker": self})):
            await trigger_async(plugins, name, **extra)
        events = self.app.events
        await events.fire("starting", starter=None, worker=self, broker=self.app.backend)
        await events.fire("worker_running", worker=self, number=0)
        if self.timers:
            log.info("running %d timers in this worker", len(timers))
        log.info("worker %s ready: app %r, %s, concurrency %d, queues %s", self.id,
                 self.app.name, self.app.backend.describe(), self.concurrency,
                 ",".join(self.queues))
        try:
            await self._fetch(pool)
        finally:
            for timer in timers:
                timer.stop()
            await self._drain()
            await events.fire("worker_stopping", worker=self, number=0)
            try:
                await self.shared_scope.close()
            except Exception:
                log.exception("closing worker-scoped dependencies failed")
            await events.fire("stopping", starter=None, worker=self, broker=self.app.backend)
            for name, extra in (("worker_stop", {"worker": self}),
                                ("broker_stop", {"broker": backend}),
                                ("storage_stop", {"storage": backend}),
                                ("global_config_stop", {"global_config": None}),
                                ("starter_stop", {"starter": None})):
                await trigger_async(plugins, name, **extra)
            for plugin in plugins.plugins:
                try:
                    await _maybe_await(plugin.stop())
                except Exception:
                    log.exception("plugin %r failed to stop", plugin)
            heartbeat.cancel()
            await transport.unregister(self.id)
            if self.db is not None:
                await loop.run_in_executor(None, self.db.close_in_pool, pool)
                await self.db.close_async()
            pool.shutdown(wait=False, cancel_futures=True)
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker %s stopped", self.id)

    def _info(self) -> dict[str, float | int]:
        return {"concurrency": self.concurrency, "started_at": self.started_at}

    async def _fetch(self, pool: ThreadPoolExecutor) -> None:
        while not self._stopping.is_set():
            slots = self.concurrency + self._lent
            while self._buffer and len(self._running) < slots:
                self._start(self._buffer.pop(0), pool)
            room = slots + self.prefetch - len(self._running) - len(self._buffer)
            if room > 0 or self._done:
                claimed = await self._exchange(max(room, 0))
                if claimed:
                    self._buffer.extend(claimed)
                    self._buffer.sort(key=lambda d: d.priority)
                if claimed or self._done:
                    continue
            self._wakeup.clear()
            if room > 0:
                await self._first(self.app.transport.wait_for_work(await self._idle_wait()),
                                  self._wakeup.wait())
            else:
                await self._wakeup.wait()

    async def _exchange(self, room: int) -> list[Delivery]:
        """Write finished outcomes and claim up to ``room`` more, in one backend round trip."""
        finished, self._done = self._done, []
        try:
            claimed = await self.app.transport.claim(self.id, room, self.lease, finished,
                                                     self.queues)
        except Exception:
            # The store is unavailable (locked, disk full, restarting): keep the outcomes and the
            # worker; the leases are still ours while the heartbeat runs.
            self._done[:0] = finished
            log.exception("could not reach the backend; retrying in %.1fs", self._backoff)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, 10.0)
            return []
        self._backoff = 0.5
        return claimed

    async def _idle_wait(self) -> float:
        """How long to sleep when nothing is ready: until the next delayed task is due."""
        try:
            due = await self.app.transport.next_due(self.queues)
        except Exception:
            log.exception("could not read the next due time")
            return IDLE_RECHECK
        return IDLE_RECHECK if due is None else max(0.0, min(IDLE_RECHECK, due - time.time()))

    @staticmethod
    async def _first(*aws: object) -> None:
        tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    def _start(self, delivery: Delivery, pool: ThreadPoolExecutor) -> None:
        task = asyncio.create_task(self._run_one(delivery, pool))
        self._running[task] = delivery

    async def _run_one(self, delivery: Delivery, pool: ThreadPoolExecutor) -> None:
        current_lender.set(self)  # this asyncio task's own context, copied into its thread
        try:
            outcome = await execute(self.app, delivery, pool, self)
            # appended after the await: _exchange swaps the list out while tasks run
            self._done.append(outcome)
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._wakeup.set()

    async def _heartbeat(self) -> None:
        transport = self.app.transport
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await transport.heartbeat(self.id, self.lease, self._info())
            except Exception:
                log.exception("heartbeat failed; leases may expire")

    async def _flush(self, until: float) -> None:
        """Write every pending outcome, retrying until the backend takes them or time is up.

        Outcomes that cannot be written by then are not lost: their messages stay leased to
        this worker, and run again once the lease expires.
        """
        while self._done and not self._hard.is_set() and time.monotonic() < until:
            await self._exchange(0)
        if self._done:
            log.error("could not record %d task results before stopping; those tasks will run "
                      "again when their lease expires", len(self._done))

    async def _drain(self) -> None:
        transport = self.app.transport
        if self._buffer:
            unstarted, self._buffer = self._buffer, []
            await transport.release(self.id, unstarted, counted=False)
            log.info("handed back %d tasks that had not started", len(unstarted))
        pending = set(self._running)
        until = time.monotonic() + self.grace
        deadline = asyncio.create_task(asyncio.sleep(self.grace))
        hard = asyncio.create_task(self._hard.wait())
        while pending and not deadline.done() and not hard.done():
            _, pending = await asyncio.wait(pending | {deadline, hard},
                                            return_when=asyncio.FIRST_COMPLETED)
            pending -= {deadline, hard}
            await self._flush(until)  # record results as they come, not at the end
        deadline.cancel()
        hard.cancel()
        unfinished = [self._running[t] for t in pending if t in self._running]
        for task in pending:
            task.cancel()
        await self._flush(max(until, time.monotonic() + 5.0))
        if unfinished:
            self.abandoned = len(unfinished)
            await transport.release(self.id, unfinished, counted=True)
            log.warning("handed back %d tasks still running at the end of the grace period",
                        len(unfinished))


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


def _database_hygiene() -> object | None:
    if "django" not in sys.modules:  # never import Django into a process that does not use it
        return None
    from qtasks.contrib.django.db import django_ready

    if not django_ready():
        return None
    from qtasks.contrib.django.db import DatabaseHygiene

    log.info("Django is set up: database connections are cleaned up around every task")
    return DatabaseHygiene()
