"""Timers: enqueue a task on an APScheduler trigger (``pip install 'qtasks[timers]'``).

``timer.add_task(*args, task_name=..., trigger=CronTrigger(...), **kwargs)`` enqueues an
ordinary task each time the trigger fires; workers run it like any other. A timer runs

- on its own: ``timer.run_forever()`` (blocks until SIGTERM/SIGINT), beside the workers;
- inside a worker process: ``qtasks -A mod:app run --timers`` (or
  ``app.run_forever(timers=True)``) starts every timer created for the app in that process.
  Run timers in exactly one process, or each firing is enqueued once per process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

try:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.schedulers.background import BackgroundScheduler
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "qtasks.timers needs APScheduler 3: pip install 'qtasks[timers]'"
    ) from exc

log = logging.getLogger("qtasks.timers")


class _Timer:
    """What both timer flavours share; each supplies ``_scheduler`` and ``_fire``."""

    _scheduler: Callable[[], Any]
    _fire: Callable[..., Any]

    def __init__(self, app: Any, log: Any = None, config: Any = None) -> None:
        self.app = app
        self.config = config or app.config
        self.tasks: dict[str, Any] = {}
        self._jobs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.scheduler: Any = None
        timers = getattr(app, "_timers", None)
        if timers is not None:
            timers.append(self)

    def add_task(self, *args: Any, task_name: str, priority: int | None = None,
                 timeout: float | None = None, trigger: Any, **kwargs: Any) -> Any:
        """Enqueue ``task_name(*args, **kwargs)`` whenever ``trigger`` fires; returns the Job.

        ``timeout`` is accepted for QTasks compatibility: a timer never waits for results.
        """
        if not isinstance(task_name, str) or not task_name:
            raise ValueError("task_name= is required: timer.add_task(..., task_name='name')")
        self.tasks[task_name] = trigger
        return self._scheduler().add_job(self._fire, trigger, args=(task_name, args, kwargs,
                                                                     priority),
                                         name=task_name)

    def _log(self, task_name: str, task: Any) -> None:
        log.info("timer enqueued %s as %s", task_name, task.uuid)


class SyncTimer(_Timer):
    """A timer on a background thread; jobs enqueue with blocking calls."""

    def _scheduler(self) -> Any:
        if self.scheduler is None:
            self.scheduler = BackgroundScheduler()
        return self.scheduler

    def _fire(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              priority: int | None) -> None:
        self._log(task_name, self.app._add_task_sync(task_name, args, kwargs, priority, None))

    def start(self) -> None:
        self._scheduler().start()

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_forever(self) -> None:
        """Run the timer until SIGTERM/SIGINT."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()


class AsyncTimer(_Timer):
    """A timer on an asyncio loop; jobs enqueue with awaits."""

    def _scheduler(self) -> Any:
        if self.scheduler is None:
            self.scheduler = AsyncIOScheduler()
        return self.scheduler

    async def _fire(self, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    priority: int | None) -> None:
        task = await self.app._add_task_async(task_name, args, kwargs, priority, None)
        self._log(task_name, task)

    def start(self) -> None:
        """Start on the running event loop."""
        scheduler = self._scheduler()
        scheduler.configure(event_loop=asyncio.get_running_loop())
        scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_forever(self) -> None:
        """Run the timer until SIGTERM/SIGINT."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            self.start()
            try:
                await stop.wait()
            finally:
                self.stop()

        asyncio.run(main())


__all__ = ["AsyncTimer", "SyncTimer"]
