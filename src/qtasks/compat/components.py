"""QTasks' worker and starter objects, as settings for the one qtasks worker.

QTasks builds an app from components (``QueueTasks(worker=AsyncWorker(...))``,
``app.run_forever(starter=AsyncStarter(...))``). qtasks has one worker
(``qtasks.worker.Worker``), so these objects carry what the user set on them to it:

- a worker's ``config.max_tasks_process`` (tasks run at once) when it was given a config;
- a worker's ``task_executor``: a class other than the default runs every task without an
  ``executor=`` of its own;
- a worker's ``broker``, when the app was given none;
- plugins added to a worker, registered on the app's worker triggers;
- ``start()`` / ``stop()`` of workers and starters run and stop the app's worker.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qtasks.core import apps as _state
from qtasks.core.config import QueueConfig
from qtasks.worker.task_executor import AsyncTaskExecutor, SyncTaskExecutor


def _app_of(component: Any, missing: str) -> Any:
    """The app ``component`` was given to, else the latest app; ``RuntimeError`` (saying
    ``missing``) when there is none."""
    app = component._app or _state.app_main
    if app is None:
        raise RuntimeError(f"{type(component).__name__} {missing}")
    return app


class _WorkerObject:
    """What ``AsyncWorker`` and ``SyncThreadWorker`` share."""

    default_executor: type = AsyncTaskExecutor

    def __init__(self, name: str = "QueueTasks", broker: Any = None, log: Any = None,
                 config: QueueConfig | None = None, events: Any = None) -> None:
        self.name = name
        self.broker = broker
        self.log = log
        self._own_config = config is not None
        self.config = config if config is not None else QueueConfig()
        self.events = events
        self.task_executor: type = self.default_executor
        self.plugins: dict[str, list[Any]] = {}
        self._app: Any = None
        self._pending: list[tuple[Any, list[str] | None]] = []

    # read by the app and its worker
    @property
    def custom_executor(self) -> type | None:
        """``task_executor`` when the user replaced the default class, else ``None``."""
        executor = self.task_executor
        return None if executor in (AsyncTaskExecutor, SyncTaskExecutor) else executor

    @property
    def max_tasks_process(self) -> int | None:
        """Tasks run at once: the worker's own config's, if it was given one."""
        return self.config.max_tasks_process if self._own_config else None

    def bind(self, app: Any) -> None:
        """Called by the app this worker object was given to."""
        self._app = app
        for plugin, names in self._pending:
            app.add_plugin(plugin, names, component="worker")
        self._pending.clear()

    def add_plugin(self, plugin: Any, trigger_names: list[str] | None = None) -> None:
        """Register ``plugin`` on the app's worker triggers (once the app exists)."""
        for name in trigger_names or ["Globals"]:
            self.plugins.setdefault(name, []).append(plugin)
        if self._app is not None:
            self._app.add_plugin(plugin, trigger_names, component="worker")
        else:
            self._pending.append((plugin, trigger_names))

    def update_config(self, config: QueueConfig) -> None:
        self.config = config
        self._own_config = True

    def _bound_app(self) -> Any:
        return _app_of(self, "is not part of an app: pass it as QueueTasks(worker=...) first")

    def _request_stop(self) -> None:
        self._bound_app()._stop_worker()


class AsyncWorker(_WorkerObject):
    """QTasks' asyncio worker object: ``add`` and ``stop`` are coroutines."""

    async def add(self, name: str, uuid: Any = None, priority: int = 0, created_at: Any = None,
                  args: Any = (), kwargs: Any = None) -> Any:
        """Enqueue task ``name`` through the app (qtasks' worker takes it from the queue);
        ``uuid`` and ``created_at`` are chosen by qtasks."""
        return await self._bound_app()._add_task_async(
            name, tuple(args or ()), dict(kwargs or {}), priority, None, None)

    async def start(self, num_workers: int | None = None) -> None:
        """Run the app's worker on this loop until it is stopped."""
        from qtasks.worker import Worker

        app = self._bound_app()
        worker = Worker(app, concurrency=self.max_tasks_process)
        app._worker = worker
        try:
            await worker.run()
        finally:
            app._worker = None

    async def stop(self) -> None:
        self._request_stop()


class SyncThreadWorker(_WorkerObject):
    """QTasks' thread worker object: ``add``, ``start`` and ``stop`` block."""

    default_executor = SyncTaskExecutor

    def add(self, name: str, uuid: Any = None, priority: int = 0, created_at: Any = None,
            args: Any = (), kwargs: Any = None) -> Any:
        """Enqueue task ``name`` through the app; see :meth:`AsyncWorker.add`."""
        return self._bound_app()._add_task_sync(
            name, tuple(args or ()), dict(kwargs or {}), priority, None, None)

    def start(self, num_workers: int | None = None) -> None:
        """Run the app's worker in this thread until it is stopped (blocking)."""
        from qtasks.worker import run_worker

        run_worker(self._bound_app(), concurrency=self.max_tasks_process)

    def stop(self) -> None:
        self._request_stop()


def default_worker(app: Any) -> _WorkerObject:
    """The worker object of an app given none: of the app's flavour, sharing its config (so
    it sets nothing of its own)."""
    worker = (AsyncWorker if app._flavour == "async" else SyncThreadWorker)(app.name)
    worker.config = app.config  # not its own (max_tasks_process stays the app's)
    return worker


class _StarterObject:
    def __init__(self, name: str | None = None, broker: Any = None, worker: Any = None,
                 log: Any = None, config: QueueConfig | None = None, events: Any = None) -> None:
        self.name, self.broker, self.worker = name, broker, worker
        self.log, self.config, self.events = log, config, events
        self.plugins: dict[str, list[Any]] = {}
        self._app: Any = None
        self._options: dict[str, Any] = {}  # run_forever's own arguments, passed on

    def _bound_app(self) -> Any:
        app = _app_of(self, "has no app: create the QueueTasks app first, or pass this "
                            "starter to app.run_forever(starter=...)")
        if self.worker is not None and app.worker is not self.worker:
            app.worker = self.worker
            app._attach_worker(self.worker)
        return app

    def add_plugin(self, plugin: Any, trigger_names: list[str] | None = None) -> None:
        """Register ``plugin`` for the starter's triggers (``starter_start``, ...) and, like
        every plugin of a running app, start and stop it with the worker."""
        for name in trigger_names or ["Globals"]:
            self.plugins.setdefault(name, []).append(plugin)
        self._bound_app().add_plugin(plugin, trigger_names, component="worker")

    def update_config(self, config: QueueConfig) -> None:
        """Copy ``config``'s settings into the app's config, which every part shares."""
        self.config = config
        shared = self._bound_app().config
        for field in dataclasses.fields(config):
            setattr(shared, field.name, getattr(config, field.name))

    def start(self, loop: Any = None, num_workers: int | None = None, reset_config: bool = True,
              plugins: Any = None) -> None:
        """Run the app's worker until it is stopped (blocking). ``plugins`` (QTasks' trigger
        name -> plugins) are added to the app first."""
        from qtasks.worker import run_worker

        app = self._bound_app()
        for name, listed in (plugins or {}).items():
            for plugin in listed:
                app.add_plugin(plugin, None if name == "Globals" else [name],
                               component="worker")
        app.starter = self
        run_worker(app, **self._options)


class AsyncStarter(_StarterObject):
    """QTasks' asyncio starter: ``start`` blocks, ``stop`` is a coroutine."""

    async def stop(self) -> None:
        self._bound_app()._stop_worker()


class SyncStarter(_StarterObject):
    """QTasks' blocking starter."""

    def stop(self) -> None:
        self._bound_app()._stop_worker()


__all__ = ["AsyncStarter", "AsyncWorker", "SyncStarter", "SyncThreadWorker"]
