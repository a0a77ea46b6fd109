"""pytest fixtures for testing code that uses qtasks (loaded automatically by pytest).

- ``qtasks_eager(app)``: for the rest of the test, ``app`` stores in a private in-memory
  backend and runs every task at once, in-process, through the real worker;
  ``add_task`` returns the final record. Undone after the test.
- ``qtasks_worker(app, concurrency=None)``: runs a real worker for ``app`` (its own backend)
  on a thread for the rest of the test; stopped after it.
- ``qtasks_capture(app)``: for the rest of the test, ``app``'s enqueues are captured; returns
  the ``Captured`` (``assert_enqueued``, ``run()``), see ``qtasks.testing.capture``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def qtasks_eager() -> Iterator[Callable[[Any], Any]]:
    from qtasks.backends.memory import MemoryBackend
    from qtasks.testing.eager import stop_worker

    undo: list[Callable[[], None]] = []

    def make_eager(app: Any) -> Any:
        saved = app._swap_backend(MemoryBackend(f"memory://eager-{id(app)}-{len(undo)}",
                                                name=app.name))
        was_eager, app.config.eager = app.config.eager, True

        def restore() -> None:
            stop_worker(app)
            app._restore_backend(saved)
            app.config.eager = was_eager

        undo.append(restore)
        return app

    yield make_eager
    for restore in reversed(undo):
        restore()


@pytest.fixture
def qtasks_worker() -> Iterator[Callable[..., Any]]:
    from qtasks.testing.eager import ensure_worker, stop_worker

    started: list[Any] = []

    def start(app: Any, concurrency: int | None = None) -> Any:
        started.append(app)
        return ensure_worker(app, concurrency)

    yield start
    for app in started:
        stop_worker(app)


@pytest.fixture
def qtasks_capture() -> Iterator[Callable[[Any], Any]]:
    from qtasks.testing.capture import capture_tasks

    blocks: list[Any] = []

    def start(app: Any) -> Any:
        block = capture_tasks(app)
        blocks.append(block)
        return block.__enter__()

    yield start
    for block in reversed(blocks):
        block.__exit__(None, None, None)
