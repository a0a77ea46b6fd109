"""The async worker: claim, run, record; drain on SIGTERM.

One fetch loop keeps up to ``concurrency`` tasks running and up to ``prefetch`` more fetched in
a local buffer (sorted by priority). Finished tasks leave their outcome in ``_done`` and wake
the loop, which writes those outcomes, marks the buffered tasks it is about to start as started,
and fetches the next batch, in one round trip (``transport.exchange``); before it, tasks still
running get up to ``GATHER`` (1 ms) to finish, so that their outcomes share that round trip. A
task is counted as delivered only once it starts, and its start is recorded before it runs, so a
task that kills its worker is counted and the prefetched tasks beside it are not. What a count
means (run, run alone, set aside) is decided in ``qtasks.core.delivery``. A heartbeat extends
every lease this worker holds in one call, so a long task is not handed to another worker while
this one is alive; an outcome written after a lease was lost to another worker is rejected by
the backend, counted in ``rejected`` and logged.

Short tasks (a run shorter than a round trip) would leave the worker waiting on the backend
with ``concurrency`` tasks per round trip at most. For them it also starts, in the same round
trip, up to a *lane* of tasks beyond its free slots (about two round trips' worth): their
start is recorded, and each runs as soon as a slot frees, with no round trip in between
(``_lane``). A task in the lane counts as started: if the worker dies, it comes back in
quarantine like the tasks that were running.

Longer tasks use the lane too, for a moment before they end: a few round trips before a
running task is expected to end (the typical run time of its task name after it began,
``_due``), a buffered task's start is recorded, so that it takes the slot the moment that one
ends, instead of one round trip later. Tasks that all end together (a wave of I/O waits) are
followed by the next wave at once.

Stopping: the first SIGTERM/SIGINT stops claiming, hands the buffered (never started) tasks back
at once, and gives running tasks (and those of the lane) ``grace`` seconds, writing their
outcomes as they finish; a second signal, or the end of the grace period, hands the unfinished
ones back too (their delivery counts) and returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from qtasks.backends.base import Delivery, Exchange, Outcome, WorkerInfo
from qtasks.backends.transport import worker_info
from qtasks.core.codec import dumps
from qtasks.core.delivery import (
    Verdict,
    class_path,
    stale_reason,
    unstorable_reason,
    verdict,
    worker_lost_reason,
)
from qtasks.core.hooks import TaskDone, notify, stacked
from qtasks.core.injection import Scope
from qtasks.exceptions import BackendConnectionError, ResultStorageError, WorkerLostError
from qtasks.integrations import activate as activate_integrations
from qtasks.plugins.runner import trigger_async
from qtasks.worker.executor import execute, set_aside
from qtasks.worker.lending import MAX_LENT, current_lender
from qtasks.worker.threads import TaskThreads

if TYPE_CHECKING:
    from qtasks.app import BaseQueueTasks

_FAILED = frozenset({"error", "retry"})
log = logging.getLogger("qtasks.worker")

GATHER = 0.001  # seconds a round trip may wait for running tasks to finish (see _gather)
IDLE_BLOCK = 10.0  # seconds an idle worker's fetch waits in the backend (a task or stop wakes it)
LANE_MAX = 100  # tasks started per round trip at most (slots and lane together)
LANE_TRIPS = 2  # the lane holds the tasks of this many round trips: the next batch comes
#                 back before the worker runs dry, though each batch varies in size
AHEAD_TRIPS = 4  # a longer task's successor is started this many round trips before its end
AHEAD_MIN = 0.005  # ... and at least this many seconds before it, or a quarter of its run
AHEAD_MAX = 1.0  # ... but never more than this many seconds
TYPICAL_MAX = 1000  # task names whose typical run time is kept


class Run:
    """A running task as the lane sees it: when it began and, once its message is decoded, the
    name of its task (``execute`` sets it); and the asyncio task that runs it."""

    __slots__ = ("began", "name", "task")

    def __init__(self) -> None:
        self.began = 0.0  # set when its task takes its first step
        self.name = ""
        self.task: asyncio.Task[None] | None = None


class Worker:
    """Runs the tasks of ``app``. ``await Worker(app).run()`` returns after a stop and drain."""

    def __init__(self, app: BaseQueueTasks, *, concurrency: int | None = None,
                 grace: float | None = None, install_signals: bool = True,
                 timers: bool = False, queues: list[str] | None = None) -> None:
        self.app = app
        self.timers = timers
        config = app.config
        self.queues = tuple(queues or config.worker_queues or ["default"])
        self.concurrency = max(1, concurrency or app._concurrency)
        self.prefetch = config.prefetch(self.concurrency)
        self.grace = config.worker_shutdown_grace if grace is None else grace
        self.lease = config.visibility_timeout
        self.install_signals = install_signals
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.started_at = time.time()
        self.loop_name = "asyncio"  # which event loop runs it (run_worker sets it)
        self.abandoned = 0
        self.rejected = 0  # outcomes not stored: the lease had been lost to another worker
        # running totals, reported with each heartbeat (the dashboard's charts use them)
        self.finished = 0
        self.failed = 0  # of them, outcomes "error" and "retry"
        self.busy_seconds = 0.0
        self.max_deliveries = config.max_deliveries
        self._alone: Delivery | None = None  # a task in quarantine, running alone
        self._quarantined = False  # a task in quarantine waits in the buffer for the others
        self._replaced: set[object] = set()  # deliveries whose outcome was stored as an error
        self._buffer: list[Delivery] = []
        self._lane: collections.deque[Delivery] = collections.deque()  # started, waiting a slot
        self._feeding = True  # a task that ends starts the next one of the lane
        self._unstepped = False  # a task was started since the fetch loop last yielded
        self._running: dict[asyncio.Task[None], Delivery] = {}
        self._runs: dict[asyncio.Task[None], Run] = {}  # when each running task began, and what
        self._typical: dict[str, float] = {}  # recent run time of each task name, seconds
        self._done: list[Outcome] = []
        self._stopping = asyncio.Event()
        self._hard = asyncio.Event()
        self._wakeup = asyncio.Event()  # set by ``_wake``
        self._idle_wait: asyncio.Future[None] | None = None  # an idle exchange's wait (see _first_of)
        self._idle = asyncio.Event()  # set when the last running task finishes
        self._backoff = 0.5
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shared_scope = Scope()  # dependencies with a scope wider than one task
        self.extensions: dict[str, Any] = {}  # what integrations keep per worker (hooks)
        self.pool: TaskThreads | None = None  # the thread pool of plain functions
        self._lent = 0  # slots lent back by tasks that wait for other tasks (see lending.py)
        self._task_time = 0.0  # recent run time of a task, seconds (moving average)
        self._trip_time = 0.0  # recent duration of a writing round trip, seconds
        self._lent_lock = threading.Lock()
        self._task_done: tuple[Any, ...] = ()  # the task_done hook's layers (set at start)

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
            self._loop.call_soon_threadsafe(self._wake)
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
        self._wake()

    def _wake(self) -> None:
        """Something for the fetch loop: a task ended, a slot was lent, or a stop. Ends the
        loop's idle wait at once, if it is in one."""
        self._wakeup.set()
        if self._idle_wait is not None:
            _end_wait(self._idle_wait)

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
        await transport.heartbeat(self._info(), [], self.lease)
        # Threads are made on demand; the headroom serves tasks that lent their slot while they
        # wait, and threads that max_time stopped waiting for.
        pool = TaskThreads(self.concurrency + MAX_LENT, thread_name_prefix="qtasks-task")
        self.pool = pool
        activate_integrations()
        self._task_done = stacked("task_done", self.app.hooks)
        await notify("worker_started", self, self.app.hooks)
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
        log.info("worker %s ready: app %r, %s, concurrency %d, queues %s, %s loop", self.id,
                 self.app.name, self.app.backend.describe(), self.concurrency,
                 ",".join(self.queues), self.loop_name)
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
            try:
                await notify("worker_stopping", self, self.app.hooks)
            except Exception:
                log.exception("an integration failed at the worker's stop")
            pool.shutdown(wait=False, cancel_futures=True)
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker %s stopped", self.id)

    def _info(self) -> WorkerInfo:
        return worker_info(self.id, self.started_at, self.concurrency, self.queues,
                           running=len(self._buffer) + len(self._lane) + len(self._running),
                           totals=(self.finished, self.failed, self.busy_seconds))

    def _held(self) -> list[Delivery]:
        """Every delivery whose lease this worker holds."""
        return [*self._buffer, *self._lane, *self._running.values()]

    def _due(self, now: float) -> tuple[int, float | None]:
        """How many running tasks are expected to end within a few round trips (each may have
        a successor waiting in the lane), and when the next one comes that close (``None``:
        nothing to wait for). A task is expected to end the typical run time of its name after
        it began. Only for names that run longer than a round trip; a task that runs well past
        its typical time is left out, since nobody can tell when it will end."""
        trip, typical = self._trip_time, self._typical
        if self._alone is not None or not typical:
            return 0, None
        due, later = 0, []
        # per task name: (typical run time, margin, now + margin, now - margin), or None for
        # names without a typical time or shorter than a round trip. Worked out once per name:
        # this loop runs over every running task on each turn of the fetch loop, and a wave
        # of 100 ends wakes that loop about once per end.
        spans: dict[str, tuple[float, float, float, float] | None] = {}
        for run in self._runs.values():
            try:
                span = spans[run.name]
            except KeyError:
                span = spans[run.name] = _span(typical.get(run.name), trip, now)
            if span is None:
                continue
            task, margin, soon, late = span
            end = run.began + task
            if end <= soon:
                if end >= late:  # not late already
                    due += 1
            else:
                later.append(end - margin)
        # the next task to come due whose successor does not wait in the lane already
        after = max(0, len(self._lane) - due)
        if not self._buffer or after >= len(later):
            return due, None
        return due, sorted(later)[after]

    def _lane_size(self, slots: int) -> int:
        """How many tasks may wait in the lane: none unless tasks end faster than a round
        trip, and about as many as end in ``LANE_TRIPS`` round trips (measured: one trip's
        worth left the slots empty for part of each round trip, 2 is 30 % faster, 3 and 4
        no better)."""
        task, trip = self._task_time, self._trip_time
        if self._alone is not None or task <= 0:
            return 0
        return max(0, min(LANE_MAX - slots, int(LANE_TRIPS * slots * trip / task) - slots))

    async def _fetch(self, pool: TaskThreads) -> None:
        fresh = False  # the last round trip only started tasks (see `first` below)
        while not self._stopping.is_set():
            # Cleared before looking at the state, so that a wake-up arriving while this
            # iteration awaits the backend is seen by the next wait (it does not sleep).
            self._wakeup.clear()
            slots = self.concurrency + self._lent
            # Tasks that end much faster than a round trip (a lane as large as the slots) go
            # out at once: outcomes pile up while the round trip runs, and waiting would only
            # idle the worker. Otherwise gather a little, so that outcomes share a round trip.
            quick = self._lane_size(slots) >= slots
            if self._done and self._running and not fresh and not quick:
                await self._gather()
                self._wakeup.clear()
            after_starts, fresh = fresh, False
            self._feed(pool, slots)  # slots lent meanwhile
            due, wake_at = self._due(time.perf_counter())
            to_start, free = self._pick(slots, due)
            occupants = len(self._running) + len(to_start) + len(self._lane)
            # While a task in quarantine waits for the worker to empty, or runs, fetch nothing.
            alone = self._alone is not None or self._quarantined
            # With a lane open, it holds what the prefetch buffer would: tasks fetched ready
            # to run. Those are started in the fetch itself (one write less per task than a
            # start in the next round trip), so nothing more is prefetched. Otherwise the lane
            # holds only the successors of tasks about to end (the slots' next occupants), and
            # the buffer keeps its prefetch beside them.
            lane = self._lane_size(slots)
            if lane:
                ahead, held = lane, occupants + len(self._buffer)
            else:
                ahead, held = self.prefetch, min(slots, occupants) + len(self._buffer)
            room = 0 if alone else max(0, slots + ahead - held)
            if not (room or self._done or to_start):
                await self._nap(wake_at)
                continue
            writing = bool(self._done or to_start)
            if not writing and self._running:
                # A task started a moment ago may end at once (it has not had a turn yet): give
                # the running ones GATHER before blocking in the backend, so that an outcome goes
                # out now rather than after a wait that is begun and abandoned at once.
                if not self._wakeup.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(GATHER):
                            await self._wakeup.wait()
                if self._wakeup.is_set():
                    continue
            # Buffered tasks run only once their start is recorded: when this round trip would
            # also write outcomes and claim more, their starts go first, alone (a short call),
            # and the rest follows in the next round trip while they run. That pays when tasks
            # run at least as long as a round trip takes (sync tasks in threads, I/O); for
            # tasks that end at once the second call only adds work, so it is not made then.
            # Never twice in a row, so outcomes wait for one round trip at most; and never for
            # a task in quarantine: the outcomes of the others are written before it starts,
            # in case it is the one that kills the worker.
            first = (bool(to_start) and bool(self._done or room) and not after_starts
                     and self._alone is None and self._task_time >= self._trip_time)
            if first:
                call = self._exchange(0, to_start, 0, 0.0, write=False)
                fresh = True
            elif writing:
                call = self._exchange(room, to_start, 0 if alone else free, 0.0)
            else:  # a blocking fetch may last long: what it starts goes to free slots only
                call = self._exchange(room, to_start,
                                      0 if alone else max(0, min(free, self._free(slots))),
                                      IDLE_BLOCK)
            if writing:
                while self._unstepped:
                    # Tasks started since this loop last yielded have not taken a step yet:
                    # let them, so that their own I/O goes out ahead of this round trip. A
                    # task body that calls the same Redis would otherwise wait behind the
                    # exchange's script, and the worker with it (measured in a drain of INCR
                    # tasks: about 20 % more tasks/s, and a quarter fewer round trips). Again
                    # while a task that ended in that step started its successor.
                    self._unstepped = False
                    await asyncio.sleep(0)
                result = await call
            else:  # idle: wait on the backend for work, or on a task/stop for us, or until
                # a successor is due (a backend's own timeout may fire much later than asked)
                result = await self._first_of(call, wake_at)
            if result is None:
                continue
            refused = {id(d) for d in result.refused}
            for delivery in to_start:
                if id(delivery) in refused:
                    if delivery is self._alone:
                        self._alone = None
                else:
                    self._start_or_queue(delivery, pool, slots)
            for delivery in result.deliveries:
                if delivery.started and self._alone is None:
                    self._start_or_queue(delivery, pool, slots)
                else:
                    self._buffer.append(delivery)
            self._buffer.sort(key=lambda d: d.priority)
            if not writing and self._running:
                # Woken from idle: let the tasks just started take their first step before
                # this loop looks at the state again. A task that ends in that step (most do,
                # on an idle worker's round trip) is then written at once, instead of after
                # this loop has set up its GATHER wait and been woken from it.
                self._unstepped = False
                await asyncio.sleep(0)

    async def _nap(self, until: float | None) -> None:
        """Wait for a wake-up, or until ``until`` (``time.perf_counter()``) if given."""
        if until is None:
            await self._wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until - time.perf_counter())):
                await self._wakeup.wait()

    async def _gather(self) -> None:
        """Some tasks finished and others still run: give those up to ``GATHER`` seconds to
        finish too, so that one round trip carries all their outcomes (and the starts of the
        tasks that take their slots) instead of one round trip per handful. Short tasks then
        travel in full batches; a long task's result waits at most ``GATHER`` more."""
        self._idle.clear()
        if not self._running:
            return
        waiter = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({waiter}, timeout=GATHER)
        finally:
            waiter.cancel()

    def _feed(self, pool: TaskThreads, slots: int) -> None:
        """Start tasks of the lane while slots are free."""
        while self._lane and len(self._running) < slots:
            self._start(self._lane.popleft(), pool)

    def _start_or_queue(self, delivery: Delivery, pool: TaskThreads, slots: int) -> None:
        """A delivery whose start is recorded runs now if a slot is free, else in the lane."""
        if len(self._running) < slots and not self._lane:
            self._start(delivery, pool)
        else:
            self._lane.append(delivery)

    def _free(self, slots: int, due: int = 0) -> int:
        """How many more tasks may start now: into free slots, and into the lane (the quick
        tasks' lane, or the successors of ``due`` tasks about to end)."""
        return (slots - len(self._running) + max(self._lane_size(slots), due)
                - len(self._lane))

    def _pick(self, slots: int, due: int = 0) -> tuple[list[Delivery], int]:
        """Buffered deliveries to start now (into free slots and the lane), and how many more
        fetched deliveries may start in the same round trip. ``due``: running tasks about to
        end, whose successors may wait in the lane (see ``_due``).

        Applies the delivery policy (``qtasks.core.delivery``): a task set aside is recorded
        without running; a task in quarantine starts only when nothing else runs, and then
        alone.
        """
        self._quarantined = False
        if self._alone is not None:
            return [], 0
        free = self._free(slots, due)
        picked: list[Delivery] = []
        index = 0
        while index < len(self._buffer) and free > 0:
            delivery = self._buffer[index]
            decision = verdict(delivery.deliveries, self.max_deliveries)
            if decision is Verdict.SET_ASIDE:
                del self._buffer[index]
                outcome = self._set_aside(delivery)
                self._done.append(outcome)
                if self._task_done:
                    self._tell_done(delivery, outcome, 0.0)
                continue
            if decision is Verdict.QUARANTINE:
                if self._running or self._lane or picked:
                    self._quarantined = True  # it waits until it can run alone
                    if self._running:
                        break  # start nothing new, so that the worker empties
                    index += 1
                    continue
                del self._buffer[index]
                log.warning("task %s was running when its worker stopped without finishing it "
                            "(%d times); running it alone", delivery.uuid, delivery.deliveries)
                self._alone = delivery
                return [delivery], 0
            del self._buffer[index]
            picked.append(delivery)
            free -= 1
        return picked, max(0, free)

    def _set_aside(self, delivery: Delivery) -> Outcome:
        reason = worker_lost_reason(delivery.deliveries, self.max_deliveries)
        log.error("task %s: %s", delivery.uuid, reason)
        return set_aside(delivery, reason, WorkerLostError, self.app)

    async def _exchange(self, room: int, to_start: list[Delivery], start: int,
                        block: float, write: bool = True) -> Exchange | None:
        """Write finished outcomes (unless not ``write``), start ``to_start``, fetch up to
        ``room``: one round trip.

        A blocking (idle) exchange writes nothing, so cancelling it can lose nothing.
        """
        finished: list[Outcome] = []
        if write and not block:
            finished, self._done = self._done, []
        began = time.perf_counter()
        try:
            result = await self.app.transport.exchange(
                self.id, self.queues, limit=room, lease=self.lease, block=block,
                finished=finished, started=to_start, start=start)
            if not block:
                took = time.perf_counter() - began
                self._trip_time += (took - self._trip_time) * (0.1 if self._trip_time else 1.0)
        except BackendConnectionError as exc:
            # The backend is down or busy: keep the outcomes and the deliveries; the leases
            # are still ours while the heartbeat can reach it.
            self._done[:0] = finished
            self._buffer[:0] = to_start
            if self._alone in to_start:
                self._alone = None
            log.warning("cannot reach the backend (%s); retrying in %.1fs", exc, self._backoff)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, 10.0)
            return None
        except BaseException:
            self._done[:0] = finished
            self._buffer[:0] = to_start
            if self._alone in to_start:
                self._alone = None
            raise
        self._backoff = 0.5
        for outcome in result.rejected:
            self.rejected += 1
            log.warning(stale_reason(outcome.task_name, outcome.uuid))
        for outcome, problem in result.unstorable:
            if outcome.delivery.tag in self._replaced:
                log.error("task %s: not even its error record could be stored (%s); its "
                          "message stays queued", outcome.uuid, problem)
                continue
            self._replaced.add(outcome.delivery.tag)
            reason = unstorable_reason(problem)
            log.error("task %s: %s", outcome.uuid, reason)
            self._done.append(replace(
                outcome, status="error", returning_json=None, traceback=reason,
                extra_json=dumps({"exception": class_path(ResultStorageError)}),
                dead_letter=reason, args_json=None, kwargs_json=None, follow_up=None))
        return result

    async def _first_of(self, call: Any, until: float | None) -> Exchange | None:
        """Await ``call``, unless the loop is woken first (``_wake``) or ``until``
        (``time.perf_counter()``) comes; then ``call`` is cancelled (the transport keeps
        whatever it had already taken for the next exchange).

        ``call`` ends the wait from inside its own last step (``_ending``), and ``_wake`` ends
        it directly: this loop then resumes one step of the event loop sooner than through
        ``asyncio.wait``, which is told by a done callback, and no task waits on the wake-up
        event beside the call. An idle worker's claim is on every round trip's path."""
        if self._wakeup.is_set():  # woken since the loop looked: no wait to begin
            call.close()  # never started (an idle exchange writes nothing)
            return None
        loop = asyncio.get_running_loop()
        either: asyncio.Future[None] = loop.create_future()
        first = asyncio.ensure_future(_ending(call, either))
        timer = None
        if until is not None:
            timer = loop.call_later(max(0.0, until - time.perf_counter()), _end_wait, either)
        self._idle_wait = either
        try:
            await either
        finally:
            self._idle_wait = None
            if timer is not None:
                timer.cancel()
            if not first.done():
                first.cancel()
        try:
            return await first
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return None

    def _start(self, delivery: Delivery, pool: TaskThreads) -> None:
        run = Run()  # told its task here: asyncio.current_task() is a Python call in 3.11
        task = run.task = asyncio.create_task(self._run_one(delivery, pool, run))
        self._running[task] = delivery
        self._unstepped = True

    async def _run_one(self, delivery: Delivery, pool: TaskThreads, run: Run) -> None:
        current_lender.set(self)  # this asyncio task's own context, copied into its thread
        me: asyncio.Task[None] = run.task  # type: ignore[assignment]
        began = run.began = time.perf_counter()
        self._runs[me] = run
        try:
            outcome = await execute(self.app, delivery, pool, self, run)
            took = time.perf_counter() - began
            self._task_time += (took - self._task_time) * (0.1 if self._task_time else 1.0)
            if run.name:  # not a message set aside before its task was known
                typical = self._typical
                known = typical.get(run.name)
                if known is None and len(typical) >= TYPICAL_MAX:
                    typical.clear()  # more names than an app has: start over
                typical[run.name] = took if known is None else known + (took - known) * 0.1
            self.finished += 1
            self.busy_seconds += took
            if outcome.status in _FAILED:
                self.failed += 1
            if self._task_done:
                self._tell_done(delivery, outcome, took)
            # appended after the await: _exchange swaps the list out while tasks run
            self._done.append(outcome)
        finally:
            self._running.pop(me, None)
            self._runs.pop(me, None)
            if self._lane and self._feeding and \
                    len(self._running) < self.concurrency + self._lent:
                self._start(self._lane.popleft(), pool)  # its slot, with no round trip
            if not self._running:
                self._idle.set()
            if self._alone is delivery:
                self._alone = None
            self._wake()

    def _tell_done(self, delivery: Delivery, outcome: Outcome, took: float) -> None:
        done = TaskDone(self, outcome, delivery.queue, delivery.deliveries, time.time() - took,
                        took)
        for layer in self._task_done:
            try:
                layer(done)
            except Exception:
                log.exception("a task_done hook failed")

    async def _heartbeat(self) -> None:
        transport = self.app.transport
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                lost = await transport.heartbeat(self._info(), self._held(), self.lease)
            except BackendConnectionError as exc:
                log.warning("heartbeat failed (%s); leases may expire", exc)
                continue
            except Exception:
                log.exception("heartbeat failed; leases may expire")
                continue
            if lost:
                gone = {id(d) for d in lost}
                self._buffer = [d for d in self._buffer if id(d) not in gone]
                self._lane = collections.deque(d for d in self._lane if id(d) not in gone)
                log.warning("lost the lease of %d tasks (another worker may run them)",
                            len(lost))

    async def _flush(self, until: float) -> None:
        """Write every pending outcome, retrying until the backend takes them or time is up.

        Outcomes that cannot be written by then are not lost: their messages stay leased to
        this worker, and run again once the lease expires.
        """
        while self._done and not self._hard.is_set() and time.monotonic() < until:
            try:
                await self._exchange(0, [], 0, 0.0)
            except Exception:
                log.exception("could not record task results")
                await asyncio.sleep(0.5)
        if self._done:
            log.error("could not record %d task results before stopping; those tasks will run "
                      "again when their lease expires", len(self._done))

    async def _drain(self) -> None:
        transport = self.app.transport
        try:  # what a fetch cancelled by the stop had already taken goes back too
            leftover = await transport.exchange(self.id, self.queues, limit=0, lease=self.lease)
            self._buffer.extend(leftover.deliveries)
        except Exception:
            log.exception("could not collect the last fetch; its tasks run again when their "
                          "lease expires")
        if self._buffer:
            unstarted, self._buffer = self._buffer, []
            try:
                await transport.release(unstarted)
                log.info("handed back %d tasks that had not started", len(unstarted))
            except Exception:
                log.exception("could not hand back %d unstarted tasks; they run again when "
                              "their lease expires", len(unstarted))
        # The lane's tasks have started (their count is recorded): they run in the grace
        # period like the running ones, each taking the slot of one that ends.
        if self.pool is not None:
            self._feed(self.pool, self.concurrency + self._lent)
        until = time.monotonic() + self.grace
        deadline = asyncio.create_task(asyncio.sleep(self.grace))
        hard = asyncio.create_task(self._hard.wait())
        while self._running and not deadline.done() and not hard.done():
            await asyncio.wait({*self._running, deadline, hard},
                               return_when=asyncio.FIRST_COMPLETED)
            await self._flush(until)  # record results as they come, not at the end
        deadline.cancel()
        hard.cancel()
        self._feeding = False
        pending = list(self._running)
        unfinished = [*self._running.values(), *self._lane]
        self._lane.clear()
        for task in pending:
            task.cancel()
        await self._flush(max(until, time.monotonic() + 5.0))
        if unfinished:
            self.abandoned = len(unfinished)
            try:
                await transport.release(unfinished)
            except Exception:
                log.exception("could not hand back %d running tasks; they run again when "
                              "their lease expires", len(unfinished))
            log.warning("handed back %d tasks still running at the end of the grace period",
                        len(unfinished))


def _span(task: float | None, trip: float,
          now: float) -> tuple[float, float, float, float] | None:
    """For ``Worker._due``: a task name's typical run time, how long before its expected end a
    successor is started (the margin), and the window ``now`` ± margin; ``None`` if the name
    has no typical time yet or runs shorter than a round trip."""
    if task is None or task < trip:
        return None
    margin = min(task / 2, AHEAD_MAX, max(AHEAD_TRIPS * trip, AHEAD_MIN, task / 4))
    return task, margin, now + margin, now - margin


async def _ending(call: Any, either: asyncio.Future[None]) -> Any:
    """Await ``call``; however it ends, set ``either`` (see ``Worker._first_of``)."""
    try:
        return await call
    finally:
        _end_wait(either)


def _end_wait(either: asyncio.Future[None], _: object = None) -> None:
    if not either.done():
        either.set_result(None)


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value
