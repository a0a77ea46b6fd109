"""Capture mode: tasks enqueued in a block are recorded instead of sent, for tests to check
and to run on demand, in the test's own thread.

```text
with capture_tasks(app) as captured:
    signup(request)                                   # code that enqueues
captured.assert_enqueued("send_welcome", args=("ada@example.org",))
records = captured.run()                              # final records, in enqueue order
```

Running a captured task goes through the worker's executor, so its arguments are decoded and
its result encoded exactly as in production, but inline: a plain function runs in the calling
thread, so under Django's ``TestCase`` it sees the test's open transaction (with asgiref
installed, as it is with Django, the call is routed the way Django routes sync code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

from qtasks.backends.base import Delivery, NewTask, Outcome
from qtasks.core.codec import loads
from qtasks.core.hooks import Enqueue
from qtasks.core.record import Task


class _Inline(Executor):
    """An executor that runs each call at once, in the submitting thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting executor, as a pool would
            future.set_exception(exc)
        return future


class _ThreadSensitive(Executor):
    """Runs each call in the thread that started the run, through asgiref (as Django does).

    With Django, a plain function must not run on an event loop's thread (the ORM refuses),
    and must run in the test's thread to share its transaction: ``run()`` enters through
    ``async_to_sync``, and each call comes back to that thread through ``sync_to_async``.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        from asgiref.sync import sync_to_async

        call = sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(call, asyncio.get_running_loop())


def _bridge() -> bool:
    try:
        import asgiref.sync  # noqa: F401
    except ImportError:
        return False
    return True


class Captured:
    """The tasks enqueued while capturing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks: list[NewTask] = []

    def __len__(self) -> int:
        return len(self.tasks)

    def named(self, task_name: str) -> list[NewTask]:
        return [t for t in self.tasks if t.task_name == task_name]

    def assert_enqueued(self, task_name: str, args: tuple[Any, ...] | None = None,
                        kwargs: dict[str, Any] | None = None, count: int | None = None) -> None:
        """``AssertionError`` unless ``task_name`` was enqueued (with these arguments, so often)."""
        matching = [t for t in self.named(task_name)
                    if (args is None or loads(t.args_json) == list(args))
                    and (kwargs is None or loads(t.kwargs_json) == kwargs)]
        wanted = "" if args is None and kwargs is None else f" with args={args} kwargs={kwargs}"
        if count is None and not matching:
            seen = [(t.task_name, loads(t.args_json), loads(t.kwargs_json)) for t in self.tasks]
            raise AssertionError(f"{task_name!r} was not enqueued{wanted}; enqueued: {seen}")
        if count is not None and len(matching) != count:
            raise AssertionError(f"{task_name!r} was enqueued {len(matching)} times{wanted}, "
                                 f"expected {count}")

    def assert_nothing_enqueued(self) -> None:
        if self.tasks:
            raise AssertionError(f"{len(self.tasks)} tasks were enqueued: "
                                 f"{[t.task_name for t in self.tasks]}")

    def run(self) -> list[Task]:
        """Run every captured task inline, in order; return their final records."""
        if _bridge():
            from asgiref.sync import async_to_sync

            return async_to_sync(self.arun)()
        return asyncio.run(self.arun())

    async def arun(self) -> list[Task]:
        """``run`` for async tests."""
        from qtasks.worker.executor import execute

        records = []
        pool = _ThreadSensitive() if _bridge() else _Inline()
        pending, self.tasks = self.tasks, []
        for new in pending:
            delivery = Delivery(tag=None, uuid=new.uuid, payload=new.envelope, deliveries=0,
                                priority=new.priority)
            outcome = await execute(self.app, delivery, pool)
            records.append(self._record(new, outcome))
        return records

    def _record(self, new: NewTask, outcome: Outcome) -> Task:
        record = self.app._new_record(new, tuple(loads(new.args_json)), loads(new.kwargs_json))
        record.status = outcome.status
        record.returning = loads(outcome.returning_json) if outcome.returning_json else None
        record.traceback = outcome.traceback
        record.extra = loads(outcome.extra_json) if outcome.extra_json else {}
        return record


@contextmanager
def capture_tasks(app: Any) -> Iterator[Captured]:
    """Inside the block, ``app``'s enqueues are captured (not sent, not run).

    Capture is a layer of ``app``'s ``enqueue`` hook for the block; an inner block captures
    what is enqueued inside it.
    """
    captured = Captured(app)

    def capture(ctx: Enqueue, call_next: Callable[[], Any]) -> Task:
        captured.tasks.append(ctx.new)
        return ctx.app._new_record(ctx.new, ctx.args, ctx.kwargs)

    app.hooks.add("enqueue", capture)
    try:
        yield captured
    finally:
        app.hooks.remove("enqueue", capture)


def run_inline(ctx: Enqueue, call_next: Callable[[], Any]) -> Any:
    """``enqueue`` layer of immediate mode: the task runs now, inline; its final record is what
    ``add_task`` returns (awaitable in the async app)."""
    captured = Captured(ctx.app)
    captured.tasks.append(ctx.new)
    if ctx.awaiting:
        return _first(captured.arun())
    return captured.run()[0]


async def _first(records: Any) -> Task:
    return (await records)[0]


def set_immediate(app: Any, on: bool = True) -> None:
    """Immediate mode for ``app``: each ``add_task`` runs its task inline, at once, and returns
    its final record (Django's ``QTASKS_IMMEDIATE``). A capture block still wins inside it."""
    if on:
        # under any capture layer added later, which is outside it
        app.hooks.add("enqueue", run_inline)
    else:
        app.hooks.remove("enqueue", run_inline)


def is_immediate(app: Any) -> bool:
    return bool(app.hooks.has("enqueue", run_inline))
