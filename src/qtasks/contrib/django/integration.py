"""qtasks' Django integration, plugged into the hooks of ``qtasks.core.hooks``.

``qtasks.integrations`` installs it once Django has been imported in the process. It adds:

- ``enqueue``: with DEBUG on, a warning for a plain ``add_task`` inside ``atomic()``;
- ``worker_started`` / ``task_call`` / ``task_run`` / ``worker_stopping``: the database
  connection clean-up around every task of a worker in a configured Django project (see
  ``qtasks.contrib.django.db``);
- ``commit``: ``add_task_on_commit``, enqueueing at the commit of the caller's transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

from qtasks.core.hooks import Enqueue, Hooks

_KEY = "django.db"  # the worker's DatabaseHygiene, in worker.extensions


def install(hooks: Hooks) -> None:
    hooks.add("enqueue", warn_in_transaction)
    hooks.add("worker_started", start_hygiene)
    hooks.add("task_call", clean_around_call)
    hooks.add("task_run", clean_around_run)
    hooks.add("worker_stopping", close_connections)
    hooks.provide("commit", on_commit)


def warn_in_transaction(ctx: Enqueue, call_next: Any) -> Any:
    from django.apps import apps

    # A sync app on PostgreSQL in the same database enqueues through Django's connection,
    # inside the transaction: nothing to warn about.
    joins = getattr(ctx.app.backend, "joins_django_transaction", None)
    if apps.ready and not (not ctx.awaiting and joins is not None
                           and joins(waits=ctx.timeout is not None)):
        from qtasks.contrib.django.transactions import warn_if_in_transaction

        warn_if_in_transaction(ctx.new.task_name)
    return call_next()


def start_hygiene(worker: Any) -> None:
    from qtasks.contrib.django.db import DatabaseHygiene, django_ready, log

    if django_ready():
        log.info("Django is set up: database connections are cleaned up around every task")
        worker.extensions[_KEY] = DatabaseHygiene()


def _hygiene(run: Any) -> Any:
    worker = run.worker
    return worker.extensions.get(_KEY) if worker is not None else None


def clean_around_call(run: Any, call_next: Any) -> Any:
    """A plain function: stale connections of its pool thread closed before and after it."""
    hygiene = _hygiene(run)
    if hygiene is None:
        return call_next()
    return hygiene.wrap(call_next)()


async def clean_around_run(run: Any, call_next: Any) -> Any:
    """An ``async def`` task: the same, in asgiref's ORM thread."""
    hygiene = _hygiene(run)
    definition = run.task_func
    if hygiene is None or not (definition.awaiting or definition.generating == "async"):
        return await call_next()
    await hygiene.before_async()
    try:
        return await call_next()
    finally:
        await hygiene.after_async()


async def close_connections(worker: Any) -> None:
    hygiene = worker.extensions.pop(_KEY, None)
    if hygiene is None:
        return
    await asyncio.get_running_loop().run_in_executor(None, hygiene.close_in_pool, worker.pool)
    await hygiene.close_async()


def on_commit(app: Any, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              priority: int | None, when: float | None, using: str | None,
              awaiting: bool = False) -> Any:
    from qtasks.contrib.django.transactions import aenqueue_on_commit, enqueue_on_commit

    call = aenqueue_on_commit if awaiting else enqueue_on_commit
    return call(app, task_name, args, kwargs, priority, when, using)
