"""The threads that run plain (sync) task functions for the worker's event loop.

``loop.run_in_executor`` costs a sync task about 25 us of hand-over on this project's machines:
a ``concurrent.futures.Future``, its asyncio twin, and one ``call_soon_threadsafe`` (a write to
the loop's wake-up pipe and a loop iteration) per task. ``TaskThreads.run`` hands a call to an
idle thread through a ``SimpleQueue`` and returns an asyncio future; finished calls are put on a
list, and the loop is woken once for all the calls that finish before it gets to them. About 5
us a task, and a loop that is woken once per burst instead of once per task.

It is also a ``concurrent.futures.Executor`` (``submit``), for code that is handed the
worker's pool (integrations, ``ctx.pool``). Threads are made on demand, up to ``max_workers``,
and stay; a call that is still running when its awaiting side gave up (``max_time``) keeps its
thread until it returns, and its result is dropped; one whose awaiting side gave up while it
was still queued never runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import Empty, SimpleQueue
from typing import Any

_STOP = object()

log = logging.getLogger("qtasks.worker")


class TaskThreads(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str = "qtasks-task") -> None:
        self.max_workers = max(1, max_workers)
        self.prefix = thread_name_prefix
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._finished: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._wake_pending = False
        self._shut = False

    # -- the worker's loop ------------------------------------------------------------------

    def run(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``call()`` in a thread; the returned future (of the running loop) gets its
        result or exception."""
        future = asyncio.get_running_loop().create_future()
        self._put((call, future))
        return future

    def _deliver(self) -> None:
        """On the loop: settle the futures of every call finished since the last wake-up."""
        with self._lock:
            finished, self._finished = self._finished, []
            self._wake_pending = False
        for future, ok, value in finished:
            if future.done():  # its waiter gave up (max_time) or was cancelled
                continue
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except Exception as exc:  # one bad value must not strand the others of the burst
                log.exception("a task thread's result could not be handed over")
                future.set_exception(RuntimeError(f"the task's result could not be handed "
                                                  f"over: {exc!r}"))

    # -- concurrent.futures.Executor ----------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._put((lambda: fn(*args, **kwargs), future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is not _STOP:
                    item[1].cancel()
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

    # -- the threads ---------------------------------------------------------------------------

    def _put(self, item: tuple[Callable[[], Any], Any]) -> None:
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot run a task after the worker's threads shut down")
            spawn = self._idle == 0 and len(self._threads) < self.max_workers
            if spawn:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.prefix}_{len(self._threads)}")
                self._threads.append(thread)
            elif self._idle:  # an idle thread takes it (with none, it waits its turn)
                self._idle -= 1
        self._queue.put(item)
        if spawn:
            thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            call, future = item
            if isinstance(future, Future):
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        future.set_exception(exc)
            elif future.done():
                pass  # its waiter gave up while it was queued (max_time, a stop): never run it
            else:
                try:
                    result: tuple[bool, Any] = (True, call())
                except StopIteration as exc:  # a future cannot carry it (as asyncio does)
                    result = (False, RuntimeError(f"the task raised StopIteration: {exc!r}"))
                except BaseException as exc:  # handed to the awaiting task, as a pool would
                    result = (False, exc)
                self._finish(future, result)
            with self._lock:
                self._idle += 1

    def _finish(self, future: asyncio.Future[Any], result: tuple[bool, Any]) -> None:
        loop = future.get_loop()
        with self._lock:
            self._finished.append((future, *result))
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody awaits this result any more
            with self._lock:
                self._wake_pending = False
