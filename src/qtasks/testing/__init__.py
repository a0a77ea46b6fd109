"""Testing tools: eager mode, ``SyncTestCase`` / ``AsyncTestCase`` and pytest fixtures.

Everything here runs tasks through the real worker, in-process: the arguments are encoded and
decoded, the result is stored as JSON and read back, so a test meets the errors production
would (an argument JSON cannot carry, a result it cannot store, a task name the worker does not
know).

- **Eager mode**: ``app.config.eager = True`` (or ``QTASKS_EAGER=1``) makes ``add_task`` run
  the task at once on an in-process worker and return its final record.
- **Test cases** (the QTasks API): ``SyncTestCase(app)`` / ``AsyncTestCase(app)`` with
  ``settings(TestConfig...)``; see :class:`TestConfig` for what each mode means here.
- **pytest**: the fixtures ``qtasks_eager`` and ``qtasks_worker`` (plugin loaded
  automatically when qtasks is installed; see ``qtasks.testing.pytest_plugin``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from qtasks.backends.memory import MemoryBackend
from qtasks.core.record import Task
from qtasks.testing.eager import ensure_worker, stop_worker

log = logging.getLogger("qtasks.testing")


@dataclass
class TestConfig:
    """Which real parts a test case keeps. True keeps the part; False replaces it.

    - ``broker`` (with ``storage``): the app's own backend. False: a private in-memory one.
    - ``worker``: tasks are executed, by an in-process worker on a thread. False: nothing
      runs the tasks (unless a worker runs elsewhere against the real backend).
    - ``global_config`` and ``plugins`` are accepted for QTasks compatibility.

    With neither a broker nor a worker, ``add_task`` logs a warning and returns ``None``
    (QTasks' behaviour).
    """

    __test__ = False  # not a pytest test class

    worker: bool = False
    broker: bool = False
    storage: bool = False
    global_config: bool = False
    plugins: bool = False

    @classmethod
    def full(cls) -> TestConfig:
        return cls(worker=True, broker=True, storage=True, global_config=True, plugins=True)

    @classmethod
    def only_worker(cls, plugins: bool = False) -> TestConfig:
        return cls(worker=True, plugins=plugins)

    @classmethod
    def only_broker(cls, plugins: bool = False) -> TestConfig:
        return cls(broker=True, plugins=plugins)

    @classmethod
    def full_broker(cls) -> TestConfig:
        return cls(broker=True, storage=True, global_config=True, plugins=True)


class _TestCase:
    def stop(self) -> None:  # each flavour documents its own
        self._stop()

    def __init__(self, app: Any, name: str | None = None) -> None:
        self.app = app
        self.name = name or app.name
        self.config = app.config
        self.test_config = TestConfig()
        self._saved: tuple[Any, Any, Any] | None = None

    def settings(self, test_config: TestConfig | None = None, awaiting: bool = False) -> None:
        """Choose the real parts (``awaiting`` is accepted for QTasks compatibility).

        Unlike QTasks this is undone by ``stop()``: the app gets its own backend back.
        """
        self.stop()
        self.test_config = test_config or TestConfig()
        if not (self.test_config.broker or self.test_config.storage):
            app = self.app
            self._saved = app._swap_backend(MemoryBackend(f"memory://test-{id(self)}",
                                                          name=app.name))
        if self.test_config.worker:
            self.start_in_background()

    def _usable(self) -> bool:
        if self.test_config.broker or self.test_config.worker:
            return True
        log.warning("test case of %r: neither a broker nor a worker is enabled "
                    "(settings(TestConfig...)); add_task returns None", self.name)
        return False

    def start_in_background(self, concurrency: int | None = None) -> None:
        """Run the app's worker in this process, on a thread."""
        ensure_worker(self.app, concurrency)

    def start(self) -> None:
        """Run the app's worker in the foreground until SIGTERM/SIGINT."""
        self.app.run_forever()

    def _stop(self) -> None:
        stop_worker(self.app)
        if self._saved is not None:
            app = self.app
            app._restore_backend(self._saved)
            self._saved = None


class SyncTestCase(_TestCase):
    """Test case for the sync API."""

    def add_task(self, task_name: str, *args: Any, priority: int | None = None,
                 timeout: float | None = None, **kwargs: Any) -> Task | None:
        if not self._usable():
            return None
        return self.app._add_task_sync(task_name, args, kwargs, priority, timeout)

    def get(self, uuid: UUID | str) -> Task | None:
        return self.app.get_sync(uuid)

    def stop(self) -> None:
        """Stop the in-process worker and give the app its own backend back."""
        self._stop()


class AsyncTestCase(_TestCase):
    """Test case for the async API."""

    async def add_task(self, task_name: str, *args: Any, priority: int | None = None,
                       timeout: float | None = None, **kwargs: Any) -> Task | None:
        if not self._usable():
            return None
        return await self.app._add_task_async(task_name, args, kwargs, priority, timeout)

    async def get(self, uuid: UUID | str) -> Task | None:
        return await self.app.get_async(uuid)

    def stop(self) -> None:
        """Stop the in-process worker and give the app its own backend back."""
        self._stop()


__all__ = ["AsyncTestCase", "SyncTestCase", "TestConfig"]
