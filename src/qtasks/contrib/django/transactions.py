"""Enqueue when the surrounding database transaction commits.

``handle.add_task_on_commit(...)`` prepares the task at once (its uuid is known, its arguments
checked) and returns its record, but puts it in the queue only when the transaction commits, so
a worker never runs a task for a row that another connection cannot see yet, or that a rollback
removed. Outside a transaction it is enqueued at once, as Django's ``on_commit`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections, transaction

log = logging.getLogger("qtasks.contrib.django")


def enqueue_on_commit(app: Any, task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                      priority: int | None, when: float | None, using: str | None,
                      queue: str | None = None, extra: dict[str, Any] | None = None,
                      then: Callable[[Any], None] | None = None) -> Any:
    """Register the enqueue with the transaction of ``using``; return the ``new`` record.

    ``then(record)`` is called right after the task is enqueued (at the commit), with its
    final record in immediate mode, where the commit runs it inline.
    """
    new = app._prepare(task_name, args, kwargs, priority, when, queue, extra)
    record = app._new_record(new, args, kwargs)

    def enqueue() -> None:
        # add_task's own steps (plugins, capture and immediate modes), under the same uuid
        steps = app._add_task_steps(task_name, args, kwargs, priority, None, when, queue, extra,
                                    uuid=new.uuid_obj)
        done = app._steps_sync(steps)[1]
        if then is not None:
            then(done)

    transaction.on_commit(enqueue, using=using)
    return record


async def aenqueue_on_commit(app: Any, task_name: str, args: tuple[Any, ...],
                             kwargs: dict[str, Any], priority: int | None, when: float | None,
                             using: str | None, queue: str | None = None,
                             extra: dict[str, Any] | None = None,
                             then: Callable[[Any], None] | None = None) -> Any:
    from asgiref.sync import sync_to_async

    # transactions live in asgiref's ORM thread; register there
    return await sync_to_async(enqueue_on_commit)(app, task_name, args, kwargs, priority, when,
                                                  using, queue, extra, then)


def warn_if_in_transaction(task_name: str) -> None:
    """DEBUG only: a plain add_task inside atomic() may run before its data is committed."""
    if not settings.DEBUG:
        return
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            log.warning(
                "add_task(%r) inside a transaction (database %r): a worker may run it before "
                "the transaction commits, or after a rollback. Use add_task_on_commit(...) to "
                "enqueue when it commits (django.tasks: the backend option "
                "ENQUEUE_ON_COMMIT).", task_name, connection.alias)
            return
